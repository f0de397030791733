"""Inference runtimes by name: ONNX Runtime and OpenVINO (the runtime NNCF's INT8 models are
made for), each turning a model file into a callable from a float32 batch to logits; logits over
a whole split read one batch at a time, whatever the runtime."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from compress.errors import PipelineError
from compress.onnx_runtime import ort_session

Runner = Callable[[np.ndarray], np.ndarray]
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]  # normalized images, labels: eval_loader


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


def split_logits(
    runners: Mapping[str, Runner], batches: Batches
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every runner's logits over a split, and its labels, reading the split once and one batch
    at a time (`data.eval_loader`): memory holds a batch of images, whatever the split's size."""
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
