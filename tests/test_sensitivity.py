"""Per-layer INT8 sensitivity and `keep_fp32: auto` on a small network trained on real digits,
with one layer made fragile on purpose: one channel of its input scaled up 1000x (by the batch
norm before it) and its weights on that channel scaled down 1000x leave the float model as it
was (ReLU is positively homogeneous), but that channel then spans the per-tensor INT8 range of
the layer's input, so the other channels lose their resolution."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from compress.compression.float_layers import choose_fp32_layers, float_layers
from compress.compression.quantization import post_training_quantize
from compress.compression.sensitivity import PROXY_IMAGES, error_growth, layer_sensitivity
from compress.config.benchmark import BenchmarkParams
from compress.config.data import AugmentParams
from compress.config.distill import DistillParams
from compress.config.quantize import QATParams, QuantizeParams
from compress.core.artifacts import Artifacts
from compress.data.loaders import (
    eval_loader,
    load_info,
    load_split,
    make_loader,
    normalize_tensor,
    training_dataset,
)
from compress.models.builders import build_model, fold_batchnorm
from compress.models.checkpoints import save_checkpoint
from compress.models.onnx_export import export_onnx
from compress.steps.quantize import quantize
from compress.train.loop import (
    Schedule,
    accuracy,
    cross_entropy_objective,
    fit,
    seed_everything,
)
from tests.conftest import onnx_accuracy

FRAGILE = "features.3"  # tiny_cnn's second convolution
BENCH = BenchmarkParams(batch_sizes=[1], warmup_runs=1, timed_runs=3, intra_op_threads=2)


@pytest.fixture(scope="module")
def trained_model(prepared_artifacts: Artifacts) -> torch.nn.Module:
    """tiny_cnn trained for 8 epochs: an ordinary network, which INT8 barely changes."""
    info = load_info(prepared_artifacts.prepared_dir)
    seed_everything(0)
    model = build_model("tests.factories:tiny_cnn", info.num_classes, info.channels, 8)
    train = training_dataset(
        info, AugmentParams(crop_padding=1, horizontal_flip=False), prepared_artifacts.prepared_dir
    )
    val = eval_loader("val", info, prepared_artifacts.prepared_dir)
    schedule = Schedule(epochs=8, lr=0.2, weight_decay=5e-4)
    fit(model, cross_entropy_objective, make_loader(train, 64, True), val, schedule, "tiny")
    return model.eval()


@pytest.fixture(scope="module")
def fragile_model(trained_model: torch.nn.Module, prepared_artifacts: Artifacts) -> torch.nn.Module:
    """The trained tiny_cnn made fragile in FRAGILE (float outputs unchanged)."""
    info = load_info(prepared_artifacts.prepared_dir)
    val = eval_loader("val", info, prepared_artifacts.prepared_dir)
    model = copy.deepcopy(trained_model)
    before = accuracy(model, val)
    with torch.no_grad():
        model.features[1].weight[0] *= 1000  # channel 0 into FRAGILE: 1000x larger
        model.features[1].bias[0] *= 1000
        model.features[3].weight[:, 0] /= 1000  # and 1000x less weight on it
    assert accuracy(model, val) == before
    return model


def _auto(
    model: torch.nn.Module, prepared: Artifacts, tmp_path, budget: float, **params
) -> tuple[list, dict]:
    """`keep_fp32: auto`'s choice for a copy of `model` (batch norms folded, as quantize does)."""
    info = load_info(prepared.prepared_dir)
    calibration = normalize_tensor(load_split("calibration", prepared.prepared_dir)[0], info)
    val = eval_loader("val", info, prepared.prepared_dir)
    model = copy.deepcopy(model)
    fold_batchnorm(model)
    quantize_params = QuantizeParams(keep_fp32="auto", max_int8_drop=budget, **params)
    _, keep, record = float_layers(
        model, quantize_params, info.num_classes, calibration, val, Artifacts(tmp_path)
    )
    return keep, record


def test_auto_ranks_no_layer_when_every_layer_int8_meets_the_budget(
    trained_model: torch.nn.Module, prepared_artifacts: Artifacts, tmp_path
) -> None:
    """A budget the all-INT8 model meets (this tiny CNN loses a few points in INT8)."""
    keep, record = _auto(trained_model, prepared_artifacts, tmp_path, budget=0.1)
    assert record["ptq_val_drop_points"]["before"] <= 10.0
    assert (keep, record["layers_ranked"], record["layers_measured_by_ptq"]) == ([], 0, 0)
    written = json.loads(Artifacts(tmp_path).sensitivity_metrics.read_text())
    assert written["ranking"] == [] and written["measured"] is False


def test_auto_ranks_when_int8_misses_and_the_proxy_finds_the_fragile_layer(
    fragile_model: torch.nn.Module, prepared_artifacts: Artifacts, tmp_path
) -> None:
    """Only the proxy's first two layers are measured by PTQ; the fragile one is among them
    (on the digits validation split by content hash the proxy puts the head first and the
    fragile layer second), PTQ ranks it first and auto keeps it alone."""
    keep, record = _auto(fragile_model, prepared_artifacts, tmp_path, 0.1, sensitivity_top=2)
    assert record["ptq_val_drop_points"]["before"] > 30
    assert keep == [FRAGILE] and record["ptq_val_drop_points"]["after"] <= 10.0
    assert record["layers_measured_by_ptq"] == 2 < record["layers_ranked"]
    ranking = json.loads(Artifacts(tmp_path).sensitivity_metrics.read_text())["ranking"]
    assert ranking[0]["layer"] == FRAGILE and ranking[0]["accuracy_recovered"] > 0.3
    assert all(entry["accuracy_recovered"] is None for entry in ranking[2:])


def test_the_fragile_layer_ranks_first_and_auto_keeps_it(
    fragile_model: torch.nn.Module, prepared_artifacts: Artifacts
) -> None:
    prepared = prepared_artifacts.prepared_dir
    info = load_info(prepared)
    calibration = normalize_tensor(load_split("calibration", prepared)[0], info)
    val = eval_loader("val", info, prepared)
    model = copy.deepcopy(fragile_model)
    fold_batchnorm(model)  # as quantize does before PTQ
    fp32, all_int8, ranking = layer_sensitivity(model, calibration, val, [])
    assert fp32.accuracy > 0.8
    assert fp32.accuracy - all_int8.accuracy > 0.3  # the outliers wreck INT8
    assert [entry.layer for entry in ranking][0] == FRAGILE
    assert ranking[0].accuracy_recovered > 0.3
    assert ranking[0].float_bytes == 3 * model.features[3].weight.numel()

    keep, steps = choose_fp32_layers(
        model, calibration, val, [], ranking, 0.02, fp32.accuracy, all_int8
    )
    assert keep[0] == FRAGILE
    assert fp32.accuracy - steps[-1]["accuracy"] <= 0.02
    assert steps[0]["kept"] == [] and steps[-1]["kept"] == keep


def _as_pruned(model: torch.nn.Module, baseline: Artifacts, folder: Path) -> Artifacts:
    """A folder with the baseline's data and teacher, and `model` as the pruned student that
    the quantize stage reads."""
    artifacts = Artifacts(folder)
    shutil.copytree(baseline.root / "data", folder / "data")
    shutil.copytree(baseline.root / "models", folder / "models")
    info = load_info(artifacts.prepared_dir)
    save_checkpoint(artifacts.pruned_pt, model, "tests.factories:tiny_cnn", (1, 8, 8), 10)
    export_onnx(model, (1, 8, 8), artifacts.pruned_onnx, info.contract())
    return artifacts


def test_quantize_stage_with_auto_meets_its_budget_and_writes_the_ranking(
    fragile_model: torch.nn.Module, baseline_artifacts: Artifacts, tmp_path
) -> None:
    artifacts = _as_pruned(fragile_model, baseline_artifacts, tmp_path)
    params = QuantizeParams(keep_fp32="auto", max_int8_drop=0.02, qat=QATParams(mode="never"))
    metrics = quantize(params, DistillParams(), AugmentParams(), BENCH, artifacts)

    chosen = metrics["fp32_layers"]
    assert chosen["mode"] == "auto" and FRAGILE in chosen["layers"]
    assert chosen["ptq_val_drop_points"]["before"] > 30
    assert chosen["ptq_val_drop_points"]["after"] <= 2.0
    # the measured growth of the file is the float copy of the layer: 3 more bytes a weight
    float_bytes = 3 * fragile_model.features[3].weight.numel()
    assert chosen["cost"]["extra_bytes"] == pytest.approx(float_bytes, rel=0.05)
    assert FRAGILE in metrics["layers"]["fp32"]
    int8_accuracy = onnx_accuracy(artifacts.quantized_onnx, artifacts)  # from the file itself
    assert metrics["accuracy"]["int8_onnxruntime"] == int8_accuracy > 0.8
    ranking = json.loads(artifacts.sensitivity_metrics.read_text())["ranking"]
    assert ranking[0]["layer"] == FRAGILE
    assert artifacts.sensitivity_plot.read_text().splitlines()[1].startswith(FRAGILE)
    assert Image.open(artifacts.sensitivity_png).size[0] > 500


def test_the_proxy_puts_the_fragile_layer_first_among_the_convolutions(
    fragile_model: torch.nn.Module, prepared_artifacts: Artifacts
) -> None:
    """The one-pass proxy (error growth per layer) on the fragile model. Among convolutions
    the fragile one grows the INT8 error most, by a wide margin, on any split; the classifier
    is not compared: the error every layer before it passes on is amplified in its small,
    near-cancelling logits, so its growth varies with the images (it came first on the digits
    split by content hash, second on the old split), which is why `auto` measures the proxy's
    first layers by PTQ instead of trusting the proxy's order."""
    prepared = prepared_artifacts.prepared_dir
    info = load_info(prepared)
    calibration = normalize_tensor(load_split("calibration", prepared)[0], info)
    model = copy.deepcopy(fragile_model)
    fold_batchnorm(model)
    convolutions = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    quantized = post_training_quantize(model, calibration, [])
    growth = error_growth(model, quantized, calibration[:PROXY_IMAGES], convolutions)
    others = [growth[name] for name in convolutions if name != FRAGILE]
    assert growth[FRAGILE] > 3 * max(others)  # measured: 1.22 against 0.20


@pytest.mark.parametrize(
    ("model_name", "runs"),
    [("fragile_model", True), ("trained_model", False)],
)
def test_qat_auto_runs_only_when_ptq_misses_on_validation(
    model_name: str, runs: bool, baseline_artifacts: Artifacts, tmp_path, request
) -> None:
    """`qat.mode: auto` with every layer INT8 and a 10 pt PTQ budget: the fragile model's PTQ
    loses over 30 pt on validation, so QAT runs; the ordinary model's
    loses a few points, so QAT is skipped and the INT8 file is the PTQ model."""
    model = request.getfixturevalue(model_name)
    artifacts = _as_pruned(model, baseline_artifacts, tmp_path)
    qat = QATParams(mode="auto", max_ptq_drop=0.1, epochs=1)
    params = QuantizeParams(keep_fp32=[], qat=qat)
    metrics = quantize(params, DistillParams(), AugmentParams(), BENCH, artifacts)

    drop = metrics["fp32_layers"]["ptq_val_drop_points"]["before"]
    assert (drop > 10.0) is runs, drop
    assert metrics["qat_ran"] is runs
    if not runs:  # the INT8 file is the PTQ model itself
        assert metrics["accuracy"]["qat_torch"] == metrics["accuracy"]["ptq_torch"]
