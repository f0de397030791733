"""Inference runtimes by name: ONNX Runtime and OpenVINO (the runtime NNCF's INT8 models are
made for), each turning a model file into a callable from a float32 batch to logits; logits and
accuracy over a whole split in fixed-size batches, whatever the runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov

from compress.errors import PipelineError
from compress.onnx_runtime import ort_session

Runner = Callable[[np.ndarray], np.ndarray]
BATCH_SIZE = 256


def onnxruntime_runner(path: Path, threads: int) -> Runner:
    session = ort_session(path, threads)
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


def openvino_runner(path: Path, threads: int) -> Runner:
    """The ONNX file read by OpenVINO directly (QDQ INT8 included) and compiled for the CPU."""
    compiled = ov.Core().compile_model(
        str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    )
    request = compiled.create_infer_request()
    return lambda images: request.infer({0: images})[0].copy()


RUNTIMES: dict[str, Callable[[Path, int], Runner]] = {
    "onnxruntime": onnxruntime_runner,
    "openvino": openvino_runner,
}


def load_runner(runtime: str, path: Path, threads: int) -> Runner:
    if runtime not in RUNTIMES:
        raise PipelineError(f"Unknown runtime '{runtime}'; valid: {', '.join(RUNTIMES)}.")
    return RUNTIMES[runtime](Path(path), threads)


def run_logits(runner: Runner, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Logits for float32 images (N, C, H, W), in batches of `batch_size`."""
    return np.concatenate(
        [runner(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    )


def onnx_accuracy(
    path: Path, images: np.ndarray, labels: np.ndarray, threads: int, runtime: str = "onnxruntime"
) -> tuple[float, np.ndarray]:
    """Top-1 accuracy of a model file in a runtime, and the predicted classes."""
    predictions = run_logits(load_runner(runtime, path, threads), images).argmax(axis=1)
    return float(np.mean(predictions == labels)), predictions


def save_openvino_ir(onnx_path: Path, xml_path: Path) -> None:
    """The model as OpenVINO IR (xml + bin beside it), weights kept as they are (no fp16)."""
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
