"""`Classifier`: a model file the pipeline exported, ready to classify image files, folders, numpy
arrays and PIL images, with everything it needs (classes, input size, channels, normalization)
read from the model's own contract.

    >>> from compress.runtime.classifier import Classifier
    >>> Classifier("models/shipped.onnx").predict(["one.png", "more/"], top_k=3)
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from compress.runtime.contract import ModelContract, read_contract
from compress.runtime.errors import InputError
from compress.runtime.images import (
    IMAGE_READ_ERRORS,
    convert_image,
    decode_image,
    normalize,
    to_unit,
)
from compress.runtime.runners import EVAL_BATCH_SIZE, load_runner

ImageInput = str | Path | np.ndarray | Image.Image


@dataclass(frozen=True)
class Prediction:
    source: str  # the file's path, or "array[i]" / "image[i]" for an in-memory input
    classes: list[str]  # the top k, most probable first
    probabilities: list[float]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities per row, in float64."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def expand_paths(entries: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively (hidden files skipped), globs expanded."""
    files: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            files += sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        elif path.is_file():
            files.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(entry), recursive=True))
            matches = [match for match in matches if match.is_file()]
            if not matches:
                raise InputError(
                    f"'{entry}' is neither a file, a folder nor a glob that matches files; "
                    "check the path (quote globs so that the shell does not expand them)."
                )
            files += matches
    return files


class Classifier:
    """One model loaded once in `runtime` (onnxruntime or openvino) with `threads` threads."""

    def __init__(self, model: str | Path, runtime: str = "onnxruntime", threads: int = 2):
        self.model = Path(model)
        self.contract: ModelContract = read_contract(self.model)
        self.classes = list(self.contract.classes)
        self._run = load_runner(runtime, self.model, threads)

    def predict(
        self,
        inputs: ImageInput | Iterable[ImageInput],
        top_k: int = 1,
        batch_size: int = EVAL_BATCH_SIZE,
    ) -> list[Prediction]:
        """The top-k classes and probabilities of each image, in the order given: paths (files,
        folders searched recursively, globs), numpy arrays (H, W) or (H, W, C), uint8 or float in
        [0, 1], or PIL images. An unreadable file is an error here; `predict_files` skips and
        lists them instead."""
        single = isinstance(inputs, str | Path | np.ndarray | Image.Image)
        items: list[ImageInput] = [inputs] if single else list(inputs)
        expanded = [
            entry
            for item in items
            for entry in (expand_paths([item]) if isinstance(item, str | Path) else [item])
        ]
        predictions = []
        for start in range(0, len(expanded), batch_size):
            names, pixels = [], []
            for offset, item in enumerate(expanded[start : start + batch_size]):
                if isinstance(item, Path):
                    try:
                        pixels.append(self.file_pixels(item))
                    except IMAGE_READ_ERRORS as error:
                        raise InputError(f"'{item}' is not a readable image ({error}).") from error
                    names.append(str(item))
                else:
                    pixels.append(self.image_pixels(item))
                    names.append(f"{type(item).__name__}[{start + offset}]")
            predictions += self._top_k(names, pixels, top_k)
        return predictions

    def predict_files(
        self, files: list[Path], top_k: int = 1, batch_size: int = EVAL_BATCH_SIZE
    ) -> tuple[list[Prediction], list[tuple[str, str]]]:
        """Top-k predictions per readable file, and (file, reason) for each unreadable one, a
        batch of files in memory at a time."""
        predictions, unreadable = [], []
        for start in range(0, len(files), batch_size):
            pixels, names = [], []
            for file in files[start : start + batch_size]:
                try:
                    pixels.append(self.file_pixels(file))
                    names.append(str(file))
                except IMAGE_READ_ERRORS as error:
                    unreadable.append((str(file), f"{error.__class__.__name__}: {error}"))
            predictions += self._top_k(names, pixels, top_k)
        return predictions, unreadable

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities of a (N, C, H, W) batch of pixels in [0, 1] at the model's size."""
        contract = self.contract
        batch = normalize(pixels.astype(np.float32), contract.mean, contract.std)
        return softmax(self._run(batch).astype(np.float64))

    def file_pixels(self, path: Path) -> np.ndarray:
        return decode_image(path, self.contract.image_size, self.contract.channels)

    def image_pixels(self, image: np.ndarray | Image.Image) -> np.ndarray:
        """An in-memory image as (C, size, size) in [0, 1], converted as files are."""
        size, channels = self.contract.image_size, self.contract.channels
        if isinstance(image, Image.Image):
            return to_unit(convert_image(image, size, channels))
        array = image[..., None] if image.ndim == 2 else image
        if array.ndim != 3 or array.shape[-1] != channels:
            raise InputError(
                f"An array of shape {image.shape} is not an image of {channels} channel(s) "
                f"({self.contract.color_mode}) as (H, W{', C' if channels > 1 else ''}); the "
                f"model '{self.model}' takes {channels}. Convert it first, or pass a PIL image or "
                "a file, which are converted as the training data was."
            )
        if array.dtype != np.uint8:  # float in [0, 1]: to 8-bit, as an image file would be
            array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
        picture = Image.fromarray(array[..., 0] if channels == 1 else array)
        return to_unit(convert_image(picture, size, channels))

    def _top_k(self, names: list[str], pixels: list[np.ndarray], k: int) -> list[Prediction]:
        if not pixels:
            return []
        k = min(k, len(self.classes))
        predictions = []
        for name, row in zip(names, self.probabilities(np.stack(pixels)), strict=True):
            order = np.argsort(-row, kind="stable")[:k]
            predictions.append(
                Prediction(name, [self.classes[i] for i in order], [float(row[i]) for i in order])
            )
        return predictions
