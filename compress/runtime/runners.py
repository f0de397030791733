"""Inference runtimes by name: ONNX Runtime (always installed) and OpenVINO (the `openvino`
extra), each turning a model file into a callable from a normalized float32 batch to logits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from compress.runtime.errors import InputError

EVAL_BATCH_SIZE = 256  # evaluation and inference batches (torch, ONNX Runtime, OpenVINO)

Runner = Callable[[np.ndarray], np.ndarray]


def ort_session(path: str | Path, threads: int) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU with pinned thread counts."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_runner(session: ort.InferenceSession) -> Runner:
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


def onnxruntime_runner(path: Path, threads: int) -> Runner:
    return session_runner(ort_session(path, threads))


def openvino_runner(path: Path, threads: int) -> Runner:
    """The ONNX file read by OpenVINO directly (QDQ INT8 included) and compiled for the CPU, in
    f32 wherever the model is not INT8: on CPUs with bf16 support (AMX, AVX-512 BF16) OpenVINO
    otherwise computes in bf16 by default, so the same file would give other logits, and fail
    to compile some INT8 graphs, on another machine."""
    try:
        import openvino as ov  # the optional extra: imported only when asked for
    except ImportError as error:
        raise InputError(
            "The openvino runtime is not installed; install it with "
            "`pip install 'compress-runtime[openvino]'` or choose --runtime onnxruntime."
        ) from error
    compiled = ov.Core().compile_model(
        str(path),
        "CPU",
        {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        },
    )
    request = compiled.create_infer_request()
    return lambda images: request.infer({0: images})[0].copy()


RUNTIMES: dict[str, Callable[[Path, int], Runner]] = {
    "onnxruntime": onnxruntime_runner,
    "openvino": openvino_runner,
}


def load_runner(runtime: str, path: str | Path, threads: int) -> Runner:
    if runtime not in RUNTIMES:
        raise InputError(f"Unknown runtime '{runtime}'; valid: {', '.join(RUNTIMES)}.")
    return RUNTIMES[runtime](Path(path), threads)
