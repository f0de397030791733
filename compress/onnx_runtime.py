"""An ONNX Runtime session on the CPU with pinned thread counts (imports nothing heavier than
onnxruntime, so the memory probe's child process stays light)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def ort_session(path: str | Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
