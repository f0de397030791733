"""A teacher that exists only as an ONNX file (trained in another framework, or exported by a
team that keeps no torch code): checked against the prepared data before any work, wrapped as
a frozen module whose logits come from ONNX Runtime batch by batch, and costed from its graph.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from compress.core.errors import PipelineError
from compress.models.builders import count_macs_params
from compress.runtime.runners import ort_session

log = logging.getLogger(__name__)

ONNX_TEACHER = "onnx"  # the `arch` of the teacher.pt that stands for models/teacher.onnx

FIX = (
    "export the teacher with one float32 input of shape (batch, channels, height, width) for this "
    "data and one output of logits per class, or set teacher.onnx: null and give a torch teacher "
    "(teacher.arch + teacher.checkpoint)"
)


class OnnxTeacher(nn.Module):
    """Frozen teacher whose forward runs the ONNX file in ONNX Runtime. It holds no parameters:
    nothing can train it, and feature distillation (which needs inner layers) cannot use it."""

    def __init__(self, path: Path, param: str, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.path, self.param = Path(path), param
        try:
            self.session = ort_session(self.path, threads=torch.get_num_threads())
        except Exception as error:  # onnxruntime raises its own untyped errors for bad files
            raise PipelineError(
                f"{param} '{path}' cannot be loaded by ONNX Runtime ({str(error)[:200]}); {FIX}."
            ) from error
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            shapes = [tuple(i.shape) for i in inputs]
            raise PipelineError(
                f"{param} '{path}' takes inputs {shapes}, not one image batch; {FIX}."
            )
        self.input_name = inputs[0].name
        _check_dims(inputs[0].shape, input_shape, param, path)
        probe = self(torch.zeros(2, *input_shape))
        if probe.ndim != 2 or probe.shape[1] != num_classes:
            raise PipelineError(
                f"{param} '{path}' outputs shape {tuple(probe.shape)} for 2 images, but the "
                f"prepared data has {num_classes} classes: it must output (batch, {num_classes}) "
                f"logits in the order of the data's classes; {FIX}."
            )
        self.macs, self.params = onnx_macs_params(self.path, input_shape)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        logits = self.session.run(None, {self.input_name: batch})[0]
        return torch.from_numpy(logits.astype(np.float32)).to(images.device)


def _check_dims(dims: list, input_shape: tuple[int, int, int], param: str, path: Path) -> None:
    """A dynamic batch axis (training batches, the benchmark's batch sizes and INT8 calibration
    all vary it), and every fixed dimension as the prepared data has it."""
    if isinstance(dims[0], int):
        raise PipelineError(
            f"{param} '{path}' has a fixed batch size of {dims[0]}, but training, calibration and "
            "the benchmark feed batches of other sizes: export it with a dynamic batch axis "
            "(torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}}))."
        )
    for axis, actual, expected in zip(
        ("channels", "height", "width"), dims[1:], input_shape, strict=True
    ):
        if isinstance(actual, int) and actual != expected:
            raise PipelineError(
                f"{param} '{path}' expects {axis} {actual}, but the prepared images have "
                f"{expected} (input shape {input_shape}); set data.channels / data.image_size to "
                f"what the teacher was trained on, or {FIX}."
            )


def onnx_macs_params(path: str | Path, input_shape: tuple[int, int, int]) -> tuple[int, int]:
    """Parameter count (initializer elements) and MACs of one sample from the graph's
    convolutions and matrix products, whose shapes ONNX shape inference gives for a batch of 1:
    the same operations Torch-Pruning's counter charges for the torch models."""
    model = onnx.load(str(path))
    for value, size in zip(
        model.graph.input[0].type.tensor_type.shape.dim, (1, *input_shape), strict=True
    ):
        value.Clear()
        value.dim_value = size
    graph = onnx.shape_inference.infer_shapes(model).graph
    shapes = {
        value.name: [dim.dim_value for dim in value.type.tensor_type.shape.dim]
        for value in (*graph.value_info, *graph.output)
    }
    weights = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    macs = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.input[1] not in weights:
            continue
        weight, output = weights[node.input[1]], shapes.get(node.output[0], [])
        if not output or 0 in output:
            log.warning("No inferred shape for %s '%s': not counted", node.op_type, node.name)
        elif node.op_type == "Conv":  # each output value: in_channels / groups * kernel MACs
            macs += math.prod(output[1:]) * math.prod(weight[1:])
        else:  # each output value is a dot product over the weight's other dimension
            inner = weight[1] if node.op_type == "Gemm" and _transposed(node) else weight[0]
            macs += math.prod(output[1:]) * inner
    return macs, sum(math.prod(dims) for dims in weights.values())


def _transposed(node: onnx.NodeProto) -> bool:
    return any(a.name == "transB" and a.i == 1 for a in node.attribute)


def macs_params(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, int]:
    """MACs and parameters of a torch model or an ONNX teacher, counted alike."""
    if isinstance(model, OnnxTeacher):
        return model.macs, model.params
    return count_macs_params(model, input_shape)
