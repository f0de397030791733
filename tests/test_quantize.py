"""NNCF quantization: a real INT8 ONNX export, faithful to the fake-quantized torch model, and
the quantize stage on real digits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from onnx import numpy_helper

from compress.compression.quantization import (
    export_int8,
    load_qat_checkpoint,
    post_training_quantize,
    resolve_keep_fp32,
)
from compress.config.benchmark import BenchmarkParams
from compress.config.data import AugmentParams
from compress.config.distill import DistillParams
from compress.config.params import load_params
from compress.config.prune import PruneParams
from compress.config.quantize import QATParams, QuantizeParams, SparsityParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.loaders import load_info, load_split, normalize_tensor
from compress.models.builders import build_model, fold_batchnorm
from compress.models.checkpoints import load_model
from compress.models.onnx_export import export_onnx
from compress.steps.distill import distill
from compress.steps.prune import prune
from compress.steps.quantize import quantize
from tests.conftest import labelled_test_split, onnx_logits

TINY_BENCH = BenchmarkParams(batch_sizes=[1, 32], warmup_runs=1, timed_runs=5, intra_op_threads=2)
SHAPE = (1, 8, 8)
NO_FLIP = AugmentParams(crop_padding=1, horizontal_flip=False)


@pytest.fixture(scope="module")
def resnet_int8(baseline_artifacts: Artifacts, tmp_path_factory) -> dict:
    """The two-epoch resnet18 teacher, PTQ-quantized on the real calibration split and exported
    both ways. A trained network, not a random one: a random network's logits are near-ties, so
    agreement between runtimes would measure float rounding on this CPU, not the export."""
    folder = tmp_path_factory.mktemp("int8")
    prepared = baseline_artifacts.prepared_dir
    info = load_info(prepared)
    calibration = normalize_tensor(load_split("calibration", prepared)[0], info)
    test = normalize_tensor(load_split("test", prepared)[0], info)[:200]
    model, _ = load_model(baseline_artifacts.teacher_pt)
    model.eval()
    export_onnx(model, SHAPE, folder / "fp32.onnx")
    keep = resolve_keep_fp32(model, ["first_conv", "classifier"], 10)
    fold_batchnorm(model)
    quantized = post_training_quantize(model, calibration, keep)
    export_int8(quantized, SHAPE, folder / "int8.onnx")
    return {"folder": folder, "quantized": quantized, "test": test, "keep": keep}


def test_int8_export_has_int8_weights_no_fakequantize_and_is_small(resnet_int8) -> None:
    folder = resnet_int8["folder"]
    graph = onnx.load(str(folder / "int8.onnx"))
    assert not [node for node in graph.graph.node if node.op_type == "FakeQuantize"]
    int8 = [
        t
        for t in graph.graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4
    ]
    assert len(int8) >= 15
    consumers = {node.input[0]: node.op_type for node in graph.graph.node}
    assert all(consumers[t.name] == "DequantizeLinear" for t in int8)
    ort.InferenceSession(str(folder / "int8.onnx"), providers=["CPUExecutionProvider"])
    assert (folder / "int8.onnx").stat().st_size <= 0.35 * (folder / "fp32.onnx").stat().st_size


def test_onnxruntime_computes_what_torch_fake_quantized_computes(resnet_int8) -> None:
    """Compared on logits, not only on the top class: ONNX Runtime accumulates in integers and
    rounds once per layer where torch simulates the rounding in float, so a prediction whose
    two best logits are nearly tied may flip (3 of 200 on CI's AVX2 machine, none on an
    AVX-512 VNNI one); a wrong scale, zero point or layout errs by the logits' own size."""
    session = ort.InferenceSession(
        str(resnet_int8["folder"] / "int8.onnx"), providers=["CPUExecutionProvider"]
    )
    onnx_logits = session.run(None, {"input": resnet_int8["test"].numpy()})[0]
    with torch.no_grad():
        torch_logits = resnet_int8["quantized"](resnet_int8["test"]).numpy()
    error = np.abs(onnx_logits - torch_logits) / torch_logits.std()
    print(f"relative logit error: median {np.median(error):.4f}, max {error.max():.4f}")
    assert np.median(error) < 0.05 and error.max() < 0.5
    flipped = onnx_logits.argmax(axis=1) != torch_logits.argmax(axis=1)
    assert flipped.mean() <= 0.05


def test_keep_fp32_layers_are_not_quantized_in_the_export(resnet_int8) -> None:
    graph = onnx.load(str(resnet_int8["folder"] / "int8.onnx")).graph
    producers = {output: node for node in graph.node for output in node.output}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    compute = [node for node in graph.node if node.op_type in ("Conv", "Gemm")]
    first_conv, classifier = compute[0], compute[-1]  # resnet18's conv1 and fc
    for node in (first_conv, classifier):
        weight = initializers[node.input[1]]
        assert weight.data_type == onnx.TensorProto.FLOAT and node.input[1] not in producers
    for node in compute[1:-1]:
        assert producers[node.input[1]].op_type == "DequantizeLinear"
    assert resnet_int8["keep"] == ["conv1", "fc"]


def test_onnxruntime_fuses_every_quantized_convolution(resnet_int8, tmp_path: Path) -> None:
    """Shared scales (Identity nodes), float biases or a BN between conv and quantizer would
    each leave a convolution in float; only the fp32-kept first convolution may stay."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(
        str(resnet_int8["folder"] / "int8.onnx"), options, providers=["CPUExecutionProvider"]
    )
    ops = [node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("QLinearConv") == 19  # resnet18: 20 convolutions, conv1 kept in fp32
    assert ops.count("Conv") + ops.count("FusedConv") == 1


class DepthwiseBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.depthwise = torch.nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
        self.bn = torch.nn.BatchNorm2d(4)
        self.pointwise = torch.nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(torch.relu(self.bn(self.depthwise(x))))


def test_dead_batchnorm_channels_do_not_ruin_quantization() -> None:
    """A channel whose input is always zero has a BN running variance of ~0; folded the usual
    way its weights grow by gamma/sqrt(eps) and NNCF's per-channel scale floor then rounds
    every live channel of the layer to zero (seen on a distilled MobileNetV2: PTQ 99 % -> 15 %)."""
    torch.manual_seed(0)
    block = DepthwiseBlock().eval()
    with torch.no_grad():
        block.bn.running_mean.zero_()
        block.bn.running_var.copy_(torch.tensor([1e-20, 1.0, 1.0, 1.0]))
        block.bn.weight.fill_(2.0)
    inputs = torch.randn(64, 4, 8, 8)
    inputs[:, 0] = 0.0  # channel 0 is dead
    with torch.no_grad():
        reference = block(inputs)
    shift = block.bn.bias[0].item()
    assert fold_batchnorm(block) == 1
    assert block.depthwise.weight[0].abs().max() == 0.0
    assert block.depthwise.bias[0] == pytest.approx(shift)
    quantized = post_training_quantize(block, inputs, keep_fp32=[])
    with torch.no_grad():
        error = (quantized(inputs) - reference).norm() / reference.norm()
    assert error < 0.05


def test_unknown_keep_fp32_name_lists_the_layers() -> None:
    model = build_model("resnet18", 10, 1, 8)
    with pytest.raises(PipelineError, match=r"keep_fp32 names 'layer9'.*conv1, layer1.0.conv1"):
        resolve_keep_fp32(model, ["layer9"], 10)


@pytest.fixture(scope="module")
def quantized_stage(baseline_artifacts: Artifacts, tmp_path_factory) -> Artifacts:
    """distill -> prune -> quantize (QAT with 50 % sparsity) on real digits, short schedules."""
    artifacts = Artifacts(tmp_path_factory.mktemp("quantize"))
    shutil.copytree(baseline_artifacts.root / "data", artifacts.root / "data")
    shutil.copytree(baseline_artifacts.root / "models", artifacts.root / "models")
    distill_params = DistillParams(student="mobilenet_v3_small", epochs=1, control=False)
    distill(distill_params, NO_FLIP, artifacts)
    prune(PruneParams(rounds=1, finetune_epochs=1), distill_params, NO_FLIP, TINY_BENCH, artifacts)
    teacher_before = torch.load(artifacts.teacher_pt, weights_only=True)["state_dict"]
    params = QuantizeParams(
        keep_fp32=["first_conv", "classifier"],
        sensitivity=False,  # tests/test_sensitivity.py measures it on a small model
        qat=QATParams(epochs=1),
        sparsity=SparsityParams(ratio=0.5),
    )
    quantize(params, distill_params, NO_FLIP, TINY_BENCH, artifacts)
    teacher_after = torch.load(artifacts.teacher_pt, weights_only=True)["state_dict"]
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher_after.items())
    return artifacts


def test_stage_metrics_and_outputs(quantized_stage: Artifacts) -> None:
    metrics = json.loads(quantized_stage.quantize_metrics.read_text())
    assert metrics["qat_ran"]
    assert metrics["sparsity"]["measured"] >= 0.95 * 0.5
    assert (
        "features.0.0" in metrics["layers"]["fp32"] and "classifier.3" in metrics["layers"]["fp32"]
    )
    assert (
        quantized_stage.teacher_int8_onnx.stat().st_size
        < 0.35 * quantized_stage.teacher_onnx.stat().st_size
    )


def test_accuracies_are_the_written_files_and_checkpoint(quantized_stage: Artifacts) -> None:
    """The INT8 and fp32 files run in plain ONNX Runtime sessions and the QAT checkpoint
    reloaded from disk, on the test split: the written accuracies and agreement are theirs, and
    the file is faithful to the checkpoint by figures the stage did not compute."""
    accuracy = json.loads(quantized_stage.quantize_metrics.read_text())["accuracy"]
    images, labels = labelled_test_split(quantized_stage)
    int8 = onnx_logits(quantized_stage.quantized_onnx, images).argmax(axis=1)
    fp32 = onnx_logits(quantized_stage.pruned_onnx, images).argmax(axis=1)
    with torch.no_grad():
        qat = load_qat_checkpoint(quantized_stage.quantized_pt)(torch.from_numpy(images))
    qat = qat.argmax(dim=1).numpy()
    assert accuracy["int8_onnxruntime"] == np.mean(int8 == labels)  # ONNX Runtime both times
    assert accuracy["fp32_onnxruntime"] == np.mean(fp32 == labels)
    one_image = 1 / len(labels)
    assert accuracy["qat_torch"] == pytest.approx(np.mean(qat == labels), abs=one_image)
    agreement = np.mean(int8 == qat)
    assert accuracy["onnx_torch_agreement"] == pytest.approx(agreement, abs=one_image)
    assert agreement >= 0.99 and abs(np.mean(int8 == labels) - np.mean(qat == labels)) <= 0.01


def test_int8_file_holds_sparse_int8_weights_and_is_small(quantized_stage: Artifacts) -> None:
    """Read from quantized.onnx itself: every INT8 layer's weight is an int8 initializer behind
    a DequantizeLinear, the fp32-kept layers have float weights, about half of the int8 weights
    are zero (sparsity 0.5 baked in), and the file shrank by what its int8 weights save."""
    metrics = json.loads(quantized_stage.quantize_metrics.read_text())
    graph = onnx.load(str(quantized_stage.quantized_onnx)).graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    weight_types = []
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            producer = producers.get(node.input[1])
            if producer is not None and producer.op_type == "DequantizeLinear":
                weight_types.append(initializers[producer.input[0]].data_type)
            else:
                weight_types.append(initializers[node.input[1]].data_type)
    assert weight_types.count(onnx.TensorProto.INT8) == len(metrics["layers"]["int8"])
    assert weight_types.count(onnx.TensorProto.FLOAT) == len(metrics["layers"]["fp32"])
    int8_weights = [
        numpy_helper.to_array(t)
        for t in graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2
    ]
    assert len(int8_weights) == metrics["initializer_types"]["int8"]
    int8_elements = sum(w.size for w in int8_weights)
    zeros = sum(int((w == 0).sum()) for w in int8_weights) / int8_elements
    assert zeros >= max(0.95 * 0.5, metrics["sparsity"]["measured"] - 0.01), zeros
    sizes = metrics["size_bytes"]
    assert sizes["int8_onnx"] == quantized_stage.quantized_onnx.stat().st_size
    assert sizes["fp32_onnx"] == quantized_stage.pruned_onnx.stat().st_size
    # each int8 weight saves 3 of its 4 bytes; scales, int32 biases and the Q/DQ nodes give
    # a little back (the SE blocks' convolutions stay float, so no fixed ratio to the fp32 file)
    saved = sizes["fp32_onnx"] - sizes["int8_onnx"]
    assert 0.9 * 3 * int8_elements <= saved <= 3 * int8_elements, (saved, int8_elements)


def test_latency_figures_are_consistent(quantized_stage: Artifacts) -> None:
    """Both files are timed at both batch sizes, and the reported INT8/fp32 ratios are those of
    the reported latencies (which is faster is a benchmark's question, not a unit test's)."""
    metrics = json.loads(quantized_stage.quantize_metrics.read_text())
    latency = metrics["latency_p50_ms"]
    for name in ("fp32", "int8"):
        assert all(latency[name][batch] > 0 for batch in ("batch_1", "batch_32")), name
    for batch in ("batch_1", "batch_32"):
        ratio = latency["int8"][batch] / latency["fp32"][batch]
        assert metrics["latency_ratio_int8_vs_fp32"][batch] == pytest.approx(ratio, abs=1e-4)


def test_qat_checkpoint_reloads_in_a_fresh_process(quantized_stage: Artifacts) -> None:
    checkpoint = quantized_stage.quantized_pt
    torch.load(checkpoint, weights_only=True)
    images = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.save(images, quantized_stage.root / "images.pt")
    code = (
        "import sys, torch\n"
        "from compress.compression.quantization import load_qat_checkpoint\n"
        "model = load_qat_checkpoint(sys.argv[1])\n"
        "with torch.no_grad():\n"
        "    torch.save(model(torch.load(sys.argv[2], weights_only=True)), sys.argv[3])\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(checkpoint),
            str(quantized_stage.root / "images.pt"),
            str(quantized_stage.root / "logits.pt"),
        ],
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    reloaded = torch.load(quantized_stage.root / "logits.pt", weights_only=True)
    with torch.no_grad():
        assert torch.allclose(load_qat_checkpoint(checkpoint)(images), reloaded)


def test_missing_pruned_artifact_is_a_clear_error(baseline_copy: Artifacts) -> None:
    with pytest.raises(PipelineError, match="Checkpoint '.*models/pruned.pt' not found"):
        quantize(QuantizeParams(), DistillParams(), NO_FLIP, TINY_BENCH, baseline_copy)


@pytest.mark.parametrize(
    "changes, culprit",
    [
        ({"qat": {"lr_scale": 0}}, "quantize.qat.lr_scale"),
        ({"sparsity": {"ratio": 1.0}}, "quantize.sparsity.ratio"),
        ({"calibration_samples": 5}, "quantize.calibration_samples"),
    ],
)
def test_bad_quantize_params_name_the_key(tmp_path: Path, changes: dict, culprit: str) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"quantize": changes}))
    with pytest.raises(PipelineError, match=f"`{culprit}`"):
        load_params(params_file)
