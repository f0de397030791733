"""Logits over a whole split in any runtime of `compress.runtime.runners`, read one batch at a
time, and the OpenVINO IR of a model for deployment."""

from __future__ import annotations

import os
import shutil
import tempfile
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


_RAM_FOLDER = Path("/dev/shm")


def _scratch_root(needed_bytes: int) -> str | None:
    """Where to stage a file a library writes itself: the RAM-backed /dev/shm when it is
    writable with room for twice `needed_bytes` (a container's is often only 64 MiB), else
    tempfile's default folder (None)."""
    if not (_RAM_FOLDER.is_dir() and os.access(_RAM_FOLDER, os.W_OK)):
        return None
    return str(_RAM_FOLDER) if shutil.disk_usage(_RAM_FOLDER).free > 2 * needed_bytes else None


def save_openvino_ir(onnx_path: Path, xml_path: Path) -> None:
    """The model as OpenVINO IR (xml + bin beside it), weights kept as they are (no fp16).
    OpenVINO writes through its own C++ streams and reports a full disk as a RuntimeError
    ("iostream error") without an errno, which the errno table cannot sort; so the IR is saved
    in a scratch folder (in RAM when there is room) and copied to `xml_path` with Python's file
    I/O, where a full disk is ENOSPC (exit 75, retried)."""
    model = ov.convert_model(str(onnx_path))
    with tempfile.TemporaryDirectory(dir=_scratch_root(onnx_path.stat().st_size)) as scratch:
        ov.save_model(model, str(Path(scratch) / xml_path.name), compress_to_fp16=False)
        for staged in sorted(Path(scratch).iterdir()):
            shutil.copyfile(staged, xml_path.with_name(staged.name))
