"""Logits over a whole split in any runtime of `compress.runtime.runners`, read one batch at a
time, and the OpenVINO IR of a model for deployment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from compress.runtime.runners import Runner

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]  # normalized images, labels: eval_loader


def split_logits(
    runners: Mapping[str, Runner], batches: Batches
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every runner's logits over a split, and its labels, reading the split once and one batch
    at a time (`data.loaders.eval_loader`): memory holds a batch of images, whatever the split's
    size."""
    logits: dict[str, list[np.ndarray]] = {name: [] for name in runners}
    labels = []
    for images, batch_labels in batches:
        array = images.numpy()
        for name, runner in runners.items():
            logits[name].append(runner(array))
        labels.append(batch_labels.numpy())
    return {name: np.concatenate(parts) for name, parts in logits.items()}, np.concatenate(labels)


def save_openvino_ir(onnx_path: Path, xml_path: Path) -> None:
    """The model as OpenVINO IR (xml + bin beside it), weights kept as they are (no fp16)."""
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
