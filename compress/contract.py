"""The contract a model file carries in its ONNX metadata: the class names in output order, the
input it expects (size, channels, mean and std) and how an image is turned into that input, plus
the provenance of the shipped model. Any consumer (`compress predict`, a model server, another
team) reads it from the file instead of re-implementing the pipeline's preprocessing."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx

from compress.errors import PipelineError

PREFIX = "compress."
COLOR_MODES = {1: "L", 3: "RGB"}


@dataclass(frozen=True)
class ModelContract:
    classes: list[str]
    channels: int
    image_size: int
    mean: list[float]
    std: list[float]
    color_mode: str  # PIL mode the image is converted to: L (grayscale) or RGB
    resize: str = "bilinear"  # to image_size x image_size, aspect ratio not kept
    transparency: str = "composite_on_black"
    high_bit_depth: str = "scaled_by_range"  # 16-bit and float images
    pixel_scale: str = "divide_by_255_then_normalize"  # (x / 255 - mean) / std per channel
    provenance: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def for_input(
        cls, classes: list[str], channels: int, image_size: int, mean: list[float], std: list[float]
    ) -> ModelContract:
        return cls(classes, channels, image_size, mean, std, COLOR_MODES[channels])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)


REQUIRED = [name for name in ModelContract.__dataclass_fields__ if name != "provenance"]


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


def read_contract(path: Path) -> ModelContract:
    """The contract of an ONNX file, or an error naming what is missing."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:
        raise PipelineError(
            f"'{path}' is not a readable ONNX model ({error.__class__.__name__}); pass a model "
            "exported by the pipeline, e.g. models/shipped.onnx."
        ) from error
    found = {
        prop.key.removeprefix(PREFIX): prop.value
        for prop in model.metadata_props
        if prop.key.startswith(PREFIX)
    }
    missing = [PREFIX + key for key in REQUIRED if key not in found]
    if missing:
        raise PipelineError(
            f"'{path}' carries no complete preprocessing contract in its ONNX metadata (missing: "
            f"{', '.join(missing)}), so its input size, normalization and class names are unknown. "
            "Use a model exported by this pipeline (models/shipped.onnx or any models/*.onnx made "
            "by `dvc repro`), or re-export it."
        )
    fields = ModelContract.__dataclass_fields__
    return ModelContract(**{k: json.loads(v) for k, v in found.items() if k in fields})
