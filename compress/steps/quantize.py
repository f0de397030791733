"""Step `quantize`: NNCF INT8 quantization of the pruned student — PTQ on the calibration set,
then QAT with the distillation loss (optionally with joint magnitude sparsity) — exported as a
real INT8 ONNX model (int8 weight initializers, QDQ format) that ONNX Runtime runs as is.
Also a PTQ-only INT8 teacher (NNCF's ONNX backend) for the evaluation to compare against."""

from __future__ import annotations

import logging
import time

import nncf
import onnx
import torch
from torch import nn
from torch.utils.data import DataLoader

from compress.compression.export_check import write_checked_export
from compress.compression.float_layers import float_layer_costs, float_layers
from compress.compression.int8_onnx import weight_initializer_types
from compress.compression.quantization import (
    apply_sparsity,
    bake_sparsity_masks,
    measured_sparsity,
    post_training_quantize,
    quantize_onnx_ptq,
    quantized_layers,
    resolve_keep_fp32,
)
from compress.config.benchmark import BenchmarkParams
from compress.config.data import AugmentParams
from compress.config.distill import DistillParams
from compress.config.quantize import QuantizeParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.loaders import (
    DatasetInfo,
    eval_loader,
    load_info,
    load_split,
    make_loader,
    normalize_tensor,
)
from compress.evaluation.benchmark import compare_onnx_latency
from compress.models.builders import fold_batchnorm
from compress.models.checkpoints import load_model, read_checkpoint
from compress.models.onnx_export import load_onnx
from compress.train.distillation import (
    distillation_dataset,
    distillation_objective,
    load_teacher,
)
from compress.train.loop import CPU, Compute, Schedule, accuracy, fit, seed_everything

log = logging.getLogger(__name__)


def checked_calibration(info: DatasetInfo, samples: int, artifacts: Artifacts) -> torch.Tensor:
    """The calibration split, normalized: at least 10 samples and every class, or an error."""
    images, labels = load_split("calibration", artifacts.prepared_dir)
    missing = sorted(set(range(info.num_classes)) - set(labels.tolist()))
    if len(labels) < 10 or missing:
        raise PipelineError(
            f"The calibration split in '{artifacts.prepared_dir}' has {len(labels)} samples"
            f"{f' and misses classes {missing}' if missing else ''}; INT8 calibration needs at least 10 "
            "samples covering every class. Raise data.calibration_size and run `dvc repro prepare`."
        )
    return normalize_tensor(images[:samples], info)


def quantize(
    params: QuantizeParams,
    distill_params: DistillParams,
    augment: AugmentParams,
    bench: BenchmarkParams,
    artifacts: Artifacts,
    compute: Compute = CPU,
) -> dict:
    started = time.perf_counter()
    info = load_info(artifacts.prepared_dir)
    calibration = checked_calibration(info, params.calibration_samples, artifacts)
    read_checkpoint(artifacts.pruned_pt)
    load_onnx(artifacts.pruned_onnx)
    teacher = load_teacher(artifacts, distill_params)
    model, source = load_model(artifacts.pruned_pt)
    if params.keep_fp32 != "auto":
        resolve_keep_fp32(model, params.keep_fp32, info.num_classes)  # bad names: before work
    seed_everything(params.seed)
    val_loader = eval_loader("val", info, artifacts.prepared_dir)
    test_loader = eval_loader("test", info, artifacts.prepared_dir)
    accuracies = {"fp32_torch": accuracy(model, test_loader)}
    fold_batchnorm(model)
    base_fp32, keep_fp32, float_record = float_layers(
        model, params, info.num_classes, calibration, val_loader, artifacts
    )
    log.info(
        "PTQ on %d calibration samples; kept in FP32: %s", len(calibration), ", ".join(keep_fp32)
    )
    quantized = post_training_quantize(model, calibration, keep_fp32)
    accuracies["ptq_torch"] = accuracy(quantized, test_loader)
    if params.sparsity.ratio > 0:
        quantized = apply_sparsity(quantized, params.sparsity.ratio, calibration[:1], keep_fp32)
    ptq_drop = accuracies["fp32_torch"] - accuracies["ptq_torch"]
    if qat_ran := needs_qat(params, float_record["ptq_val_drop"]):
        train_qat(
            quantized,
            teacher,
            params,
            distill_params,
            augment,
            info,
            val_loader,
            artifacts,
            compute,
        )
    masked_layers = bake_sparsity_masks(quantized)
    int8_weights, export_accuracies = write_checked_export(
        quantized, source, info, test_loader, params, bench, artifacts
    )
    accuracies |= export_accuracies
    if keep_fp32 != base_fp32:
        float_record["cost"] = float_layer_costs(
            model, base_fp32, calibration, info.input_shape, bench, artifacts.quantized_onnx
        )
    quantize_onnx_ptq(artifacts.teacher_onnx, calibration, artifacts.teacher_int8_onnx)
    metrics = {
        "accuracy": accuracies,
        "fp32_layers": float_record,
        "qat_ran": qat_ran,
        "qat_decided_on": "val",  # qat.mode auto compares the validation PTQ drop (fp32_layers)
        "ptq_drop_points": round(ptq_drop * 100, 2),
        **int8_costs(quantized, masked_layers, calibration[:1], info, params, bench, artifacts),
        "int8_weight_tensors": int8_weights,
    }
    metrics["wall_seconds"] = round(time.perf_counter() - started, 2)
    atomic.write_json(artifacts.quantize_metrics, metrics)
    log.info(
        "INT8: ORT acc %.4f (fp32 %.4f, PTQ %.4f, QAT %.4f), size x%.3f, p50 batch 32 x%.3f of fp32",
        accuracies["int8_onnxruntime"],
        accuracies["fp32_onnxruntime"],
        accuracies["ptq_torch"],
        accuracies["qat_torch"],
        metrics["size_ratio_int8_vs_fp32"],
        metrics["latency_ratio_int8_vs_fp32"]["batch_32"],
    )
    return metrics


def needs_qat(params: QuantizeParams, ptq_drop: float) -> bool:
    """`qat.mode` always, or auto with PTQ too far from float on validation (`ptq_val_drop`:
    the test split confirms, it does not choose); sparsity is applied in QAT."""
    auto = params.qat.mode == "auto" and ptq_drop > params.qat.max_ptq_drop
    return params.qat.mode == "always" or auto or params.sparsity.ratio > 0


def train_qat(
    quantized: nn.Module,
    teacher: nn.Module,
    params: QuantizeParams,
    distill_params: DistillParams,
    augment: AugmentParams,
    info: DatasetInfo,
    val_loader: DataLoader,
    artifacts: Artifacts,
    compute: Compute,
) -> None:
    """QAT with the distillation loss, dropout off (its noise on top of the quantizers' stalls
    the short fine-tuning) and the gradient norm clipped."""
    for module in quantized.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    train_set = distillation_dataset(info, augment, distill_params, artifacts)
    train_loader = make_loader(
        train_set, distill_params.batch_size, True, params.seed, compute.loader_workers
    )
    schedule = Schedule(
        params.qat.epochs,
        distill_params.lr * params.qat.lr_scale,
        distill_params.weight_decay,
        max_grad_norm=params.qat.max_grad_norm,
    )
    with distillation_objective(teacher, quantized, info.input_shape, distill_params) as kd:
        fit(quantized, kd, train_loader, val_loader, schedule, "QAT", compute)


def int8_costs(
    quantized: nn.Module,
    masked_layers: list[str],
    example: torch.Tensor,
    info: DatasetInfo,
    params: QuantizeParams,
    bench: BenchmarkParams,
    artifacts: Artifacts,
) -> dict:
    """Sizes, INT8/FP32 layers, measured sparsity and fp32-vs-int8 latency side by side."""
    int8_layers, fp32_layers = quantized_layers(quantized)
    stripped = nncf.strip(
        quantized, do_copy=True, strip_format=nncf.StripFormat.NATIVE, example_input=example
    )
    latency = compare_onnx_latency(
        {"fp32": artifacts.pruned_onnx, "int8": artifacts.quantized_onnx},
        info.input_shape,
        [1, 32],
        bench.warmup_runs,
        bench.timed_runs,
        bench.intra_op_threads,
    )
    sizes = {
        "fp32_onnx": artifacts.pruned_onnx.stat().st_size,
        "int8_onnx": artifacts.quantized_onnx.stat().st_size,
    }
    return {
        "size_bytes": sizes
        | {
            "teacher_fp32_onnx": artifacts.teacher_onnx.stat().st_size,
            "teacher_int8_onnx": artifacts.teacher_int8_onnx.stat().st_size,
        },
        "size_ratio_int8_vs_fp32": round(sizes["int8_onnx"] / sizes["fp32_onnx"], 4),
        "initializer_types": weight_initializer_types(onnx.load(str(artifacts.quantized_onnx))),
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
    }
