"""Per-layer INT8 sensitivity, measured on the validation split.

Each layer is measured by leaving it alone in float on top of the base float list and running
PTQ again, not by quantizing it alone: errors of quantized layers compound through the
network, so "what keeping this layer in float recovers, with everything else INT8" is the
figure the choice of float layers needs, and it is the very model `keep_fp32` would produce.
Accuracy on the validation split moves in steps of one image, so the mean KL divergence from
the float model's outputs (continuous) ranks layers whose accuracy effect ties. A one-pass proxy
(how much each layer grows the INT8 model's error) orders the layers first, so that the PTQ runs
can stop at the few that matter."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from scipy.special import log_softmax
from torch import nn
from torch.utils.data import DataLoader

from compress.compression.quantization import (
    layer_names,
    post_training_quantize,
)
from compress.train.loop import predict

log = logging.getLogger(__name__)

FLOAT_EXTRA_BYTES = 3  # a weight kept in float32 costs 4 bytes instead of 1
PROXY_IMAGES = 100  # calibration images the error-growth pass runs


@dataclass(frozen=True)
class Score:
    """An INT8 model against the float one on the validation split."""

    accuracy: float
    kl_to_fp32: float  # mean KL(p_fp32 || p_int8) per image


@dataclass(frozen=True)
class LayerSensitivity:
    layer: str
    accuracy_recovered: float | None  # validation accuracy with it in float, minus without
    kl_recovered: float | None  # KL to the float outputs without it in float, minus with
    error_growth: float  # the one-pass proxy (None above: not measured by PTQ)
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


@torch.no_grad()
def error_growth(
    model: nn.Module, quantized: nn.Module, images: torch.Tensor, layers: list[str]
) -> dict[str, float]:
    """One forward pass of each model: for every layer, how much the INT8 model's relative error
    against the float model grows from the output of the layer that ran before it to its own
    output, so the quantization of its input activations and of its weights count for it. A
    layer whose quantization hurts shows a jump; one that merely carries the error of the layers
    before it does not. The cheap proxy that orders the PTQ measurements."""
    outputs: dict[str, dict[str, torch.Tensor]] = {"fp32": {}, "int8": {}}
    order: list[str] = []
    handles = []
    for tag, network in (("fp32", model), ("int8", quantized)):
        modules = dict(network.named_modules())
        for name in layers:

            def keep(module: nn.Module, inputs: tuple, output: torch.Tensor, tag=tag, name=name):
                outputs[tag][name] = output.detach().float()
                if tag == "fp32":
                    order.append(name)

            handles.append(modules[name].register_forward_hook(keep))
    try:
        model.eval()(images)
        quantized.eval()(images)
    finally:
        for handle in handles:
            handle.remove()
    errors = {
        name: float(
            (outputs["int8"][name] - outputs["fp32"][name]).norm()
            / (outputs["fp32"][name].norm() + 1e-12)
        )
        for name in layers
    }
    before = dict(zip(order, [0.0, *[errors[name] for name in order[:-1]]], strict=True))
    return {name: errors[name] - before[name] for name in layers}


def layer_sensitivity(
    model: nn.Module,
    calibration: torch.Tensor,
    val_loader: DataLoader,
    base_keep: list[str],
    measure_top: int | None = None,
) -> tuple[Score, Score, list[LayerSensitivity]]:
    """(float score, INT8 score with `base_keep` in float, each other layer's sensitivity, most
    sensitive first). The layers are ordered by their error growth in one pass, then the first
    `measure_top` of them (all when None) are measured by PTQ with each alone left in float,
    and ranked by what that recovers; the others follow in proxy order, unmeasured. `model` is
    the float model with batch norms folded; it is not changed."""
    fp32_logits, labels = predict(model, val_loader)
    fp32 = score(fp32_logits, fp32_logits, labels)
    all_int8 = post_training_quantize(model, calibration, base_keep)
    base = score(predict(all_int8, val_loader)[0], fp32_logits, labels)
    modules = dict(model.named_modules())
    candidates = [name for name in layer_names(model) if name not in base_keep]
    growth = error_growth(model, all_int8, calibration[:PROXY_IMAGES], candidates)
    order = sorted(candidates, key=lambda name: -growth[name])
    measured_count = len(order) if measure_top is None else min(measure_top, len(order))
    measured, proxied = [], []
    for index, layer in enumerate(order, 1):
        entry = LayerSensitivity(
            layer,
            None,
            None,
            round(growth[layer], 8),
            FLOAT_EXTRA_BYTES * modules[layer].weight.numel(),
        )
        if index > measured_count:
            proxied.append(entry)
            continue
        alone = ptq_score(model, calibration, [*base_keep, layer], val_loader, fp32_logits)
        measured.append(
            replace(
                entry,
                accuracy_recovered=round(alone.accuracy - base.accuracy, 6),
                kl_recovered=round(base.kl_to_fp32 - alone.kl_to_fp32, 8),
            )
        )
        log.info(
            "Sensitivity %d/%d %s: %+.2f pt, KL %+.5f (error growth %.4f)",
            index,
            measured_count,
            layer,
            measured[-1].accuracy_recovered * 100,
            measured[-1].kl_recovered,
            growth[layer],
        )
    measured.sort(key=lambda entry: (-entry.accuracy_recovered, -entry.kl_recovered))
    return fp32, base, measured + proxied
