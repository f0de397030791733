"""Export to ONNX with a dynamic batch axis, checked by onnx and written atomically, and the
model contract (`compress.runtime.contract`) written into a model's metadata."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path

import onnx
import torch
from torch import nn

from compress.core import atomic
from compress.core.errors import PipelineError
from compress.runtime.contract import PREFIX, ModelContract

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _replace_contract_props(
    model: onnx.ModelProto, props: list[tuple[str, str]]
) -> onnx.ModelProto:
    """Drop the model's `compress.*` properties (ONNX forbids duplicate keys) and set `props`."""
    kept = [prop for prop in model.metadata_props if not prop.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props:
        model.metadata_props.add(key=key, value=value)
    return model


def with_contract(model: onnx.ModelProto, contract: ModelContract) -> onnx.ModelProto:
    """Set the contract as `compress.*` metadata properties (JSON values), replacing old ones."""
    props = [
        (PREFIX + key, json.dumps(value))
        for key, value in asdict(contract).items()
        if key != "provenance" or value
    ]
    return _replace_contract_props(model, props)


def copy_contract(source: onnx.ModelProto, target: onnx.ModelProto) -> onnx.ModelProto:
    """Carry the contract over to a model derived from `source` (an INT8 copy), replacing any
    the tool that made it may have copied already."""
    props = [(p.key, p.value) for p in source.metadata_props if p.key.startswith(PREFIX)]
    return _replace_contract_props(target, props)


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
