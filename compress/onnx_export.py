"""Export to ONNX with a dynamic batch axis, checked by onnx and written atomically."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from compress import atomic
from compress.contract import ModelContract, with_contract
from compress.errors import PipelineError

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    path: str | Path,
    contract: ModelContract | None = None,
) -> None:
    """TorchScript-based exporter: a single self-contained file (no external data), which also
    handles the quantized and pruned graphs later stages produce. With a contract, the file
    carries its preprocessing and class names in its metadata."""
    model = model.eval()
    example = torch.zeros(1, *input_shape)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        if contract is not None:
            onnx.save(with_contract(onnx.load(str(tmp)), contract), str(tmp))
        onnx.checker.check_model(str(tmp))

    atomic.write_with(path, write)


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load and check an ONNX file, with an error naming it when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"ONNX model '{path}' not found; run the stage that exports it.")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as error:
        raise PipelineError(
            f"ONNX model '{path}' is corrupt or invalid ({error.__class__.__name__}); re-export it."
        ) from error
    return model
