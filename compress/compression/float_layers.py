"""Which layers stay in float: the fewest, most INT8-sensitive layers that bring INT8 within the
`quantize.max_int8_drop` budget on validation, what they cost, and the sensitivity report."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from compress.compression.quantization import (
    export_int8,
    post_training_quantize,
    resolve_keep_fp32,
)
from compress.compression.sensitivity import (
    LayerSensitivity,
    Score,
    layer_sensitivity,
    ptq_score,
    score,
)
from compress.config.benchmark import BenchmarkParams
from compress.config.quantize import QuantizeParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.evaluation.benchmark import compare_onnx_latency
from compress.evaluation.plots import sensitivity_plot
from compress.train.loop import predict

log = logging.getLogger(__name__)


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
    choice. `auto` first runs PTQ with every layer INT8 and ranks layers only when that misses
    `max_int8_drop` on validation (the PTQ measures the `sensitivity_top` layers the one-pass
    proxy puts first); `quantize.sensitivity: true` measures every layer whatever the outcome.
    The ranking, if any, goes to metrics/sensitivity.json and its plots."""
    auto = params.keep_fp32 == "auto"
    base = [] if auto else resolve_keep_fp32(model, params.keep_fp32, num_classes)
    fp32_logits, labels = predict(model, val_loader)
    fp32 = score(fp32_logits, fp32_logits, labels)
    before = ptq_score(model, calibration, base, val_loader, fp32_logits)
    misses = fp32.accuracy - before.accuracy > params.max_int8_drop + 1e-9
    ranking: list[LayerSensitivity] = []
    if params.sensitivity or (auto and misses):
        top = None if params.sensitivity else params.sensitivity_top
        _, _, ranking = layer_sensitivity(model, calibration, val_loader, base, top)
    else:
        log.info("PTQ with every layer INT8 is within the budget on validation: no ranking")
    write_sensitivity(fp32, before, ranking, base, artifacts)
    keep, steps = (base, [])
    if auto and misses:
        keep, steps = choose_fp32_layers(
            model,
            calibration,
            val_loader,
            base,
            ranking,
            params.max_int8_drop,
            fp32.accuracy,
            before,
        )
    after = steps[-1]["accuracy"] if steps else before.accuracy
    return (
        base,
        keep,
        {
            "mode": "auto" if auto else "list",
            "layers": keep,
            "max_int8_drop": params.max_int8_drop,
            "layers_ranked": len(ranking),
            "layers_measured_by_ptq": sum(e.accuracy_recovered is not None for e in ranking),
            "ptq_val_drop": fp32.accuracy - after,
            "ptq_val_drop_points": {
                "before": round((fp32.accuracy - before.accuracy) * 100, 2),
                "after": round((fp32.accuracy - after) * 100, 2),
            },
            "steps": steps,
        },
    )


def write_sensitivity(
    fp32: Score,
    base: Score,
    ranking: list[LayerSensitivity],
    base_keep: list[str],
    artifacts: Artifacts,
) -> None:
    rows = [entry.row() for entry in ranking]
    atomic.write_json(
        artifacts.sensitivity_metrics,
        {
            "measured": bool(ranking),
            "method": "layers ordered by their error growth in one pass (error_growth), then "
            "each of the first alone left in float on top of the base list, PTQ again, "
            "validation split (accuracy_recovered, kl_recovered; null: not measured)",
            "base_fp32_layers": base_keep,
            "fp32": asdict(fp32),
            "int8_base": asdict(base),
            "ranking": rows,
        },
    )
    measured = [row for row in rows if row["accuracy_recovered"] is not None]
    atomic.write_csv(artifacts.sensitivity_plot, measured)
    sensitivity_plot(measured, artifacts.sensitivity_png)


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
