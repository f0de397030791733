"""Per-layer INT8 sensitivity, and the fewest float layers that bring INT8 within a drop budget.

Each layer is measured by leaving it alone in float on top of the base float list and running
PTQ again, not by quantizing it alone: errors of quantized layers compound through the
network, so "what keeping this layer in float recovers, with everything else INT8" is the
figure the choice of float layers needs, and it is the very model `keep_fp32` would produce.
Accuracy on the validation split moves in steps of one image, so the mean KL divergence from
the float model's outputs (continuous) ranks layers whose accuracy effect ties."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import log_softmax
from torch import nn
from torch.utils.data import DataLoader

from compress.compression.quantization import (
    export_int8,
    layer_names,
    post_training_quantize,
    resolve_keep_fp32,
)
from compress.config.benchmark import BenchmarkParams
from compress.config.quantize import QuantizeParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.evaluation.benchmark import compare_onnx_latency
from compress.evaluation.report import sensitivity_plot
from compress.train.loop import predict

log = logging.getLogger(__name__)

FLOAT_EXTRA_BYTES = 3  # a weight kept in float32 costs 4 bytes instead of 1


@dataclass(frozen=True)
class Score:
    """An INT8 model against the float one on the validation split."""

    accuracy: float
    kl_to_fp32: float  # mean KL(p_fp32 || p_int8) per image


@dataclass(frozen=True)
class LayerSensitivity:
    layer: str
    accuracy_recovered: float  # validation accuracy with this layer in float, minus without
    kl_recovered: float  # KL to the float outputs without this layer in float, minus with
    float_bytes: int  # what keeping it in float adds to the model file

    def row(self) -> dict:
        return asdict(self)


def score(logits: np.ndarray, fp32_logits: np.ndarray, labels: np.ndarray) -> Score:
    log_p, log_q = log_softmax(fp32_logits, axis=1), log_softmax(logits, axis=1)
    kl = float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1)))
    return Score(float(np.mean(logits.argmax(axis=1) == labels)), kl)


def ptq_score(
    model: nn.Module,
    calibration: torch.Tensor,
    keep_fp32: list[str],
    val_loader: DataLoader,
    fp32_logits: np.ndarray,
) -> Score:
    quantized = post_training_quantize(model, calibration, keep_fp32)
    logits, labels = predict(quantized, val_loader)
    return score(logits, fp32_logits, labels)


def layer_sensitivity(
    model: nn.Module,
    calibration: torch.Tensor,
    val_loader: DataLoader,
    base_keep: list[str],
) -> tuple[Score, Score, list[LayerSensitivity]]:
    """(float score, INT8 score with `base_keep` in float, each other layer's sensitivity, most
    sensitive first). `model` is the float model with batch norms folded; it is not changed."""
    fp32_logits, labels = predict(model, val_loader)
    fp32 = score(fp32_logits, fp32_logits, labels)
    base = ptq_score(model, calibration, base_keep, val_loader, fp32_logits)
    modules = dict(model.named_modules())
    candidates = [name for name in layer_names(model) if name not in base_keep]
    ranking = []
    for index, layer in enumerate(candidates, 1):
        alone = ptq_score(model, calibration, [*base_keep, layer], val_loader, fp32_logits)
        ranking.append(
            LayerSensitivity(
                layer,
                round(alone.accuracy - base.accuracy, 6),
                round(base.kl_to_fp32 - alone.kl_to_fp32, 8),
                FLOAT_EXTRA_BYTES * modules[layer].weight.numel(),
            )
        )
        log.info(
            "Sensitivity %d/%d %s: %+.2f pt, KL %+.5f",
            index,
            len(candidates),
            layer,
            ranking[-1].accuracy_recovered * 100,
            ranking[-1].kl_recovered,
        )
    ranking.sort(key=lambda entry: (-entry.accuracy_recovered, -entry.kl_recovered))
    return fp32, base, ranking


def choose_fp32_layers(
    model: nn.Module,
    calibration: torch.Tensor,
    val_loader: DataLoader,
    base_keep: list[str],
    ranking: list[LayerSensitivity],
    max_drop: float,
    fp32_accuracy: float,
    base: Score,
) -> tuple[list[str], list[dict]]:
    """Add the layers to the float list in the order of their sensitivity, one at a time, PTQ
    again after each, until the INT8 model's validation accuracy is within `max_drop` of the
    float model's (a layer that does not help alone may help once others are in float; in the
    limit every layer is float). `base` is the INT8 score with `base_keep` in float, as
    layer_sensitivity measured it. Returns the list and each step's figures."""
    fp32_logits, _ = predict(model, val_loader)
    keep, current = list(base_keep), base
    steps = [{"kept": list(keep), "accuracy": current.accuracy, "kl": current.kl_to_fp32}]
    for entry in ranking:
        if fp32_accuracy - current.accuracy <= max_drop + 1e-9:
            break
        keep.append(entry.layer)
        current = ptq_score(model, calibration, keep, val_loader, fp32_logits)
        steps.append({"kept": list(keep), "accuracy": current.accuracy, "kl": current.kl_to_fp32})
        log.info(
            "keep_fp32 auto: + %s -> INT8 val accuracy %.4f (fp32 %.4f)",
            entry.layer,
            current.accuracy,
            fp32_accuracy,
        )
    return keep, steps


def float_layers(
    model: nn.Module,
    params: QuantizeParams,
    num_classes: int,
    calibration: torch.Tensor,
    val_loader: DataLoader,
    artifacts: Artifacts,
) -> tuple[list[str], list[str], dict]:
    """(base float list, chosen float list, record): `quantize.keep_fp32` as listed, or `auto`'s
    choice; each layer's sensitivity written to metrics/sensitivity.json and its plots."""
    auto = params.keep_fp32 == "auto"
    base = [] if auto else resolve_keep_fp32(model, params.keep_fp32, num_classes)
    if not params.sensitivity:
        write_sensitivity(None, None, [], base, artifacts)
        return base, base, {"mode": "list", "layers": base}
    fp32, before, ranking = layer_sensitivity(model, calibration, val_loader, base)
    write_sensitivity(fp32, before, ranking, base, artifacts)
    keep, steps = (
        choose_fp32_layers(
            model,
            calibration,
            val_loader,
            base,
            ranking,
            params.max_int8_drop,
            fp32.accuracy,
            before,
        )
        if auto
        else (base, [])
    )
    after = steps[-1]["accuracy"] if steps else before.accuracy
    return (
        base,
        keep,
        {
            "mode": "auto" if auto else "list",
            "layers": keep,
            "max_int8_drop": params.max_int8_drop,
            "ptq_val_drop_points": {
                "before": round((fp32.accuracy - before.accuracy) * 100, 2),
                "after": round((fp32.accuracy - after) * 100, 2),
            },
            "steps": steps,
        },
    )


def write_sensitivity(
    fp32: Score | None,
    base: Score | None,
    ranking: list[LayerSensitivity],
    base_keep: list[str],
    artifacts: Artifacts,
) -> None:
    rows = [entry.row() for entry in ranking]
    atomic.write_json(
        artifacts.sensitivity_metrics,
        {
            "measured": fp32 is not None,
            "method": "each layer alone left in float on top of the base list, PTQ again, "
            "validation split",
            "base_fp32_layers": base_keep,
            "fp32": asdict(fp32) if fp32 else None,
            "int8_base": asdict(base) if base else None,
            "ranking": rows,
        },
    )
    atomic.write_csv(artifacts.sensitivity_plot, rows)
    sensitivity_plot(rows, artifacts.sensitivity_png)


def float_layer_costs(
    model: nn.Module,
    base: list[str],
    calibration: torch.Tensor,
    input_shape: tuple[int, int, int],
    bench: BenchmarkParams,
    quantized_onnx: Path,
) -> dict:
    """What the chosen float layers cost: the shipped INT8 file against an INT8 export with
    only the base list in float, size and latency side by side."""
    with tempfile.TemporaryDirectory() as folder:
        base_onnx = Path(folder) / "base_int8.onnx"
        export_int8(post_training_quantize(model, calibration, base), input_shape, base_onnx)
        latency = compare_onnx_latency(
            {"base": base_onnx, "chosen": quantized_onnx},
            input_shape,
            [1, 32],
            bench.warmup_runs,
            bench.timed_runs,
            bench.intra_op_threads,
        )
        extra_bytes = quantized_onnx.stat().st_size - base_onnx.stat().st_size
    return {
        "extra_bytes": extra_bytes,
        "latency_p50_ms": {
            batch: {name: latency[name][batch]["p50_ms"] for name in ("base", "chosen")}
            for batch in ("batch_1", "batch_32")
        },
    }
