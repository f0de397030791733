"""Stage `quantize`: NNCF INT8 quantization of the pruned student — PTQ on the calibration set,
then QAT with the distillation loss (optionally with joint magnitude sparsity) — exported as a
real INT8 ONNX model (int8 weight initializers, QDQ format) that ONNX Runtime runs as is.
Also a PTQ-only INT8 teacher (NNCF's ONNX backend) for the evaluation to compare against."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import nncf
import numpy as np
import onnx
import torch
from torch import nn

from stages import atomic
from stages.baseline import TEACHER_ONNX
from stages.benchmark import compare_onnx_latency, ort_session
from stages.config import (
    BenchmarkParams,
    ComputeParams,
    DataParams,
    DistillParams,
    QuantizeParams,
    load,
)
from stages.data import (
    DatasetInfo,
    load_info,
    load_split,
    make_loader,
    normalize,
    normalized_dataset,
    train_augmentation,
    training_dataset,
)
from stages.distill import distill_finetune, load_teacher
from stages.errors import PipelineError, run_stage
from stages.int8_onnx import (
    compact,
    fold_weight_quantizers,
    inline_constant_identities,
    quantize_biases,
    weight_initializer_types,
)
from stages.models import fold_batchnorm, load_model, read_checkpoint
from stages.onnx_export import export_onnx, load_onnx
from stages.prune import PRUNED_CHECKPOINT, PRUNED_ONNX
from stages.quantization import (
    apply_sparsity,
    bake_sparsity_masks,
    measured_sparsity,
    post_training_quantize,
    quantized_layers,
    resolve_keep_fp32,
    save_qat_checkpoint,
)
from stages.training import accuracy, resolve_device, seed_everything

log = logging.getLogger("stages.quantize")

QUANTIZED_ONNX = Path("models/quantized.onnx")
QAT_CHECKPOINT = Path("models/quantized.pt")
TEACHER_INT8_ONNX = Path("models/teacher_int8.onnx")
METRICS_FILE = Path("metrics/quantize.json")


def checked_calibration(info: DatasetInfo, samples: int) -> torch.Tensor:
    """The calibration split, normalized: at least 10 samples and every class, or an error."""
    images, labels = load_split("calibration")
    missing = sorted(set(range(info.num_classes)) - set(labels.tolist()))
    if len(labels) < 10 or missing:
        raise PipelineError(
            f"The calibration set 'data/prepared/calibration.pt' has {len(labels)} samples"
            f"{f' and misses classes {missing}' if missing else ''}; INT8 calibration needs at least 10 "
            "samples covering every class. Raise data.calibration_size and run `dvc repro prepare`."
        )
    return normalize(images[:samples], info)


def onnx_accuracy(
    path: Path, images: np.ndarray, labels: np.ndarray, threads: int
) -> tuple[float, np.ndarray]:
    session = ort_session(path, threads)
    predictions = session.run(None, {session.get_inputs()[0].name: images})[0].argmax(axis=1)
    return float(np.mean(predictions == labels)), predictions


def export_int8(model: nn.Module, input_shape: tuple[int, int, int], path: Path) -> int:
    """strip(NATIVE) -> ONNX with fake-quantized fp32 weights -> weights folded into int8
    initializers. Returns the number of int8 weight tensors."""
    example = torch.zeros(1, *input_shape)
    stripped = nncf.strip(
        model, do_copy=True, strip_format=nncf.StripFormat.NATIVE, example_input=example
    )
    export_onnx(stripped, input_shape, path)
    graph, folded = fold_weight_quantizers(inline_constant_identities(onnx.load(str(path))))
    graph, _ = quantize_biases(graph)
    graph = compact(graph)
    if any(node.op_type == "FakeQuantize" for node in graph.graph.node):
        raise RuntimeError(f"'{path}' still holds FakeQuantize ops that ONNX Runtime cannot run.")
    atomic.write_with(path, lambda tmp: onnx.save(graph, str(tmp)))
    load_onnx(path)
    return folded


def quantize_teacher_onnx(calibration: torch.Tensor) -> None:
    """PTQ-only INT8 teacher with NNCF's ONNX backend (no training)."""
    teacher = load_onnx(TEACHER_ONNX)
    input_name = teacher.graph.input[0].name
    batches = [
        {input_name: calibration[i : i + 50].numpy()} for i in range(0, len(calibration), 50)
    ]
    quantized = nncf.quantize(
        teacher,
        nncf.Dataset(batches),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(batches),
    )
    atomic.write_with(TEACHER_INT8_ONNX, lambda tmp: onnx.save(quantized, str(tmp)))


def quantize(
    params: QuantizeParams,
    distill_params: DistillParams,
    augment_padding: int,
    augment_flip: bool,
    bench: BenchmarkParams,
    device: str = "cpu",
) -> dict:
    started = time.perf_counter()
    info = load_info()
    calibration = checked_calibration(info, params.calibration_samples)
    read_checkpoint(PRUNED_CHECKPOINT)
    load_onnx(PRUNED_ONNX)
    teacher = load_teacher()
    model, source = load_model(PRUNED_CHECKPOINT)
    keep_fp32 = resolve_keep_fp32(model, params.keep_fp32, info.num_classes)
    seed_everything(params.seed)

    val_loader = make_loader(normalized_dataset("val", info), 256, shuffle=False)
    test_set = normalized_dataset("test", info)
    test_loader = make_loader(test_set, 256, shuffle=False)
    fp32_accuracy = accuracy(model, test_loader)
    fold_batchnorm(model)

    log.info(
        "PTQ on %d calibration samples; kept in FP32: %s", len(calibration), ", ".join(keep_fp32)
    )
    quantized = post_training_quantize(model, calibration, keep_fp32)
    ptq_accuracy = accuracy(quantized, test_loader)
    ptq_drop = fp32_accuracy - ptq_accuracy
    run_qat = params.qat.mode == "always" or (
        params.qat.mode == "auto" and ptq_drop > params.qat.max_ptq_drop
    )
    if params.sparsity.ratio > 0:
        quantized = apply_sparsity(quantized, params.sparsity.ratio, calibration[:1], keep_fp32)
    if run_qat or params.sparsity.ratio > 0:
        for module in quantized.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
        train_set = training_dataset(
            info, train_augmentation(augment_padding, augment_flip, info.image_size)
        )
        distill_finetune(
            quantized,
            teacher,
            info.input_shape,
            distill_params,
            make_loader(train_set, distill_params.batch_size, shuffle=True, seed=params.seed),
            val_loader,
            params.qat.epochs,
            distill_params.lr * params.qat.lr_scale,
            "QAT",
            device,
            params.qat.max_grad_norm,
        )
    masked_layers = bake_sparsity_masks(quantized)
    qat_accuracy = accuracy(quantized, test_loader)

    save_qat_checkpoint(QAT_CHECKPOINT, quantized, source, info.input_shape)
    int8_weights = export_int8(quantized, info.input_shape, QUANTIZED_ONNX)
    images, labels = test_set.tensors[0].numpy(), test_set.tensors[1].numpy()
    int8_onnx_accuracy, onnx_predictions = onnx_accuracy(
        QUANTIZED_ONNX, images, labels, bench.intra_op_threads
    )
    with torch.no_grad():
        torch_predictions = quantized(test_set.tensors[0]).argmax(dim=1).numpy()
    if abs(int8_onnx_accuracy - qat_accuracy) > params.max_onnx_accuracy_gap:
        raise PipelineError(
            f"The exported '{QUANTIZED_ONNX}' reaches {int8_onnx_accuracy:.4f} test accuracy in ONNX Runtime "
            f"but the fake-quantized torch model {qat_accuracy:.4f}: more than "
            f"quantize.max_onnx_accuracy_gap={params.max_onnx_accuracy_gap} apart; the export is not faithful."
        )
    quantize_teacher_onnx(calibration)
    int8_layers, fp32_layers = quantized_layers(quantized)
    stripped = nncf.strip(
        quantized, do_copy=True, strip_format=nncf.StripFormat.NATIVE, example_input=calibration[:1]
    )
    latency = compare_onnx_latency(
        {"fp32": PRUNED_ONNX, "int8": QUANTIZED_ONNX},
        info.input_shape,
        [1, 32],
        bench.warmup_runs,
        bench.timed_runs,
        bench.intra_op_threads,
    )
    sizes = {"fp32_onnx": PRUNED_ONNX.stat().st_size, "int8_onnx": QUANTIZED_ONNX.stat().st_size}
    pruned_onnx_accuracy, _ = onnx_accuracy(PRUNED_ONNX, images, labels, bench.intra_op_threads)
    metrics = {
        "accuracy": {
            "fp32_torch": fp32_accuracy,
            "ptq_torch": ptq_accuracy,
            "qat_torch": qat_accuracy,
            "fp32_onnxruntime": pruned_onnx_accuracy,
            "int8_onnxruntime": int8_onnx_accuracy,
            "onnx_torch_agreement": float(np.mean(onnx_predictions == torch_predictions)),
        },
        "qat_ran": run_qat or params.sparsity.ratio > 0,
        "ptq_drop_points": round(ptq_drop * 100, 2),
        "size_bytes": sizes
        | {
            "teacher_fp32_onnx": TEACHER_ONNX.stat().st_size,
            "teacher_int8_onnx": TEACHER_INT8_ONNX.stat().st_size,
        },
        "size_ratio_int8_vs_fp32": round(sizes["int8_onnx"] / sizes["fp32_onnx"], 4),
        "int8_weight_tensors": int8_weights,
        "initializer_types": weight_initializer_types(onnx.load(str(QUANTIZED_ONNX))),
        "sparsity": {
            "requested": params.sparsity.ratio,
            "measured": round(measured_sparsity(stripped, masked_layers), 4)
            if masked_layers
            else 0.0,
            "layers": len(masked_layers),
        },
        "layers": {"int8": int8_layers, "fp32": fp32_layers},
        "latency_p50_ms": {
            name: {b: v["p50_ms"] for b, v in figures.items()} for name, figures in latency.items()
        },
        "latency_ratio_int8_vs_fp32": {
            batch: round(latency["int8"][batch]["p50_ms"] / latency["fp32"][batch]["p50_ms"], 4)
            for batch in ("batch_1", "batch_32")
        },
        "wall_seconds": 0.0,
    }
    metrics["wall_seconds"] = round(time.perf_counter() - started, 2)
    atomic.write_json(METRICS_FILE, metrics)
    log.info(
        "INT8: ORT acc %.4f (fp32 %.4f, PTQ %.4f, QAT %.4f), size x%.3f, p50 batch 32 x%.3f of fp32",
        int8_onnx_accuracy,
        pruned_onnx_accuracy,
        ptq_accuracy,
        qat_accuracy,
        metrics["size_ratio_int8_vs_fp32"],
        metrics["latency_ratio_int8_vs_fp32"]["batch_32"],
    )
    return metrics


def main() -> None:
    params = load("quantize", QuantizeParams)
    data = load("data", DataParams)
    quantize(
        params,
        load("distill", DistillParams),
        data.augment.crop_padding,
        data.augment.horizontal_flip,
        load("benchmark", BenchmarkParams),
        resolve_device(load("compute", ComputeParams).device),
    )


if __name__ == "__main__":
    run_stage(main)
