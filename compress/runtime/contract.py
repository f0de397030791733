"""The contract a model file carries in its ONNX metadata: the class names in output order, the
input it expects (size, channels, mean and std) and how an image is turned into that input, plus
the provenance of the shipped model. Any consumer (`compress-predict`, a model server, another
team) reads it from the file instead of re-implementing the pipeline's preprocessing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort

from compress.runtime.errors import InputError

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


def contract_from_metadata(metadata: Mapping[str, str], source: str | Path) -> ModelContract:
    """The contract in a model's metadata properties (JSON values under `compress.*` keys), or
    an error naming what is missing."""
    found = {
        key.removeprefix(PREFIX): value for key, value in metadata.items() if key.startswith(PREFIX)
    }
    missing = [PREFIX + key for key in REQUIRED if key not in found]
    if missing:
        raise InputError(
            f"'{source}' carries no complete preprocessing contract in its ONNX metadata "
            f"(missing: {', '.join(missing)}), so its input size, normalization and class names "
            "are unknown. Use a model exported by the pipeline (models/shipped.onnx or any "
            "models/*.onnx made by `dvc repro`), or re-export it."
        )
    fields = ModelContract.__dataclass_fields__
    return ModelContract(**{k: json.loads(v) for k, v in found.items() if k in fields})


def session_contract(session: ort.InferenceSession, source: str | Path) -> ModelContract:
    return contract_from_metadata(session.get_modelmeta().custom_metadata_map, source)


def read_contract(path: str | Path) -> ModelContract:
    """The contract of an ONNX file (read by ONNX Runtime), or an error naming the problem."""
    if not Path(path).is_file():
        raise InputError(f"Model file '{path}' not found; pass the path of an ONNX model.")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own untyped errors for a bad file
        raise InputError(
            f"'{path}' is not a readable ONNX model ({error.__class__.__name__}); pass a model "
            "exported by the pipeline, e.g. models/shipped.onnx."
        ) from error
    return session_contract(session, path)
