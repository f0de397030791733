"""The one way the pipeline runs an ONNX model: a pinned-thread CPU session, and logits over a
whole split in fixed-size batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

BATCH_SIZE = 256


def ort_session(path: str | Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_logits(
    model: str | Path | ort.InferenceSession, images: np.ndarray, threads: int = 1
) -> np.ndarray:
    """Logits of a model (a file or an open session) for float32 images (N, C, H, W)."""
    session = model if isinstance(model, ort.InferenceSession) else ort_session(model, threads)
    name = session.get_inputs()[0].name
    return np.concatenate(
        [
            session.run(None, {name: images[i : i + BATCH_SIZE]})[0]
            for i in range(0, len(images), BATCH_SIZE)
        ]
    )


def onnx_accuracy(
    path: str | Path, images: np.ndarray, labels: np.ndarray, threads: int
) -> tuple[float, np.ndarray]:
    """Top-1 accuracy and the predicted classes."""
    predictions = run_logits(path, images, threads).argmax(axis=1)
    return float(np.mean(predictions == labels)), predictions
