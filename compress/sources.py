"""Data sources by `data.source` (a registry), and the one image decoder that preparation,
`compress predict` and the end-to-end benchmark share. A source yields its images one at a
time, so that no source is ever held in memory whole."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from compress.errors import PipelineError

DIGITS_SIZE = 16
# What PIL raises for a file that is not a readable image (corrupt, empty, truncated, not one).
IMAGE_READ_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError)


@dataclass
class Sample:
    """One image as a source read it: (C, H, W) uint8 pixels (float32 in [0, 1] for a source
    whose pixels are not 8-bit), its label, and the file's own size ("WxH") and mode."""

    image: np.ndarray
    label: int
    size: str
    mode: str


@dataclass
class Source:
    """What a source yields: its classes and its samples as a stream, read once; an official
    test split (CIFAR-10) as a second stream. Unreadable files are skipped and listed in
    `skipped` while `samples` is read."""

    classes: list[str]
    samples: Iterator[Sample]
    official_test: Iterator[Sample] | None = None
    skipped: list[str] = field(default_factory=list)


def load_digits_source(path: str | None, image_size: int | None, channels: int | None) -> Source:
    """scikit-learn's bundled 8x8 digits (values 0..16): no download, the default. Upsampled to
    16x16 unless `data.image_size` says otherwise: at 8x8 a small student's stride-2 stages
    leave it a single pixel. Kept as float32: its 17 grey levels upsampled bilinearly are not
    8-bit values, and rounding them would change every model trained on them."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None]
    images = _resize(_to_channels(images, channels or 1), image_size or DIGITS_SIZE)
    samples = (
        Sample(image, int(label), "8x8", "L")
        for image, label in zip(images, bunch.target, strict=True)
    )
    return Source([str(c) for c in bunch.target_names], samples)


def decode_image(source: Path | BinaryIO, size: int, channels: int) -> np.ndarray:
    """Any PIL-readable image (grayscale, RGB, RGBA, palette, 16-bit, float) as (C, size, size)
    in [0, 1]. Preparation, `predict` and the end-to-end benchmark all decode through here, so
    a deployed model sees what it was trained on."""
    return decode_image_file(source, size, channels)[0].astype(np.float32) / 255.0


def decode_image_file(
    source: Path | BinaryIO, size: int, channels: int
) -> tuple[np.ndarray, str, str]:
    """The image as (C, size, size) uint8 pixels, the file's own size ("WxH") and PIL mode:
    transparency composited on black, 16-bit and float scaled by their range, then converted
    to L or RGB and resized bilinearly."""
    with Image.open(source) as image:
        image.load()
        original_size, original_mode = "x".join(map(str, image.size)), image.mode
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            values = np.asarray(image, dtype=np.float32)
            top = 65535.0 if image.mode.startswith("I") and values.max() > 255 else 255.0
            image = Image.fromarray((np.clip(values / top, 0, 1) * 255).astype(np.uint8), "L")
        if image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info
        ):
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size)
            image.paste(rgba, mask=rgba.getchannel("A"))
        image = image.convert("L" if channels == 1 else "RGB")
        image = image.resize((size, size), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return array, original_size, original_mode


def load_imagefolder_source(
    path: str | None, image_size: int | None, channels: int | None
) -> Source:
    """A local folder in torchvision's ImageFolder layout (one sub-folder per class, sorted
    names are the classes), decoded one file at a time as it is read. Every file is tried;
    unreadable ones (corrupt, empty, not an image) are skipped and listed in `Source.skipped`
    for the prepare stage to count and judge."""
    root = Path(path or "")
    if not root.is_dir():
        raise PipelineError(
            f"data.path '{root}' is not a folder. For data.source=imagefolder point data.path at "
            "a folder with one sub-folder of images per class."
        )
    size, channels = image_size or 32, channels or 3
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [
        (label, sorted(f for f in d.rglob("*") if f.is_file() and not f.name.startswith(".")))
        for label, d in enumerate(class_dirs)
    ]
    empty = [class_dirs[label].name for label, found in files if not found]
    if empty:
        raise PipelineError(
            f"Class folder(s) {', '.join(empty)} under data.path '{root}' hold no files; add "
            "images or remove the folder."
        )
    source = Source([d.name for d in class_dirs], iter(()))

    def decode_all() -> Iterator[Sample]:
        for label, class_files in files:
            for file in class_files:
                try:
                    image, original_size, mode = decode_image_file(file, size, channels)
                except IMAGE_READ_ERRORS:
                    source.skipped.append(str(file))
                    continue
                yield Sample(image, label, original_size, mode)

    source.samples = decode_all()
    return source


def load_cifar10_source(path: str | None, image_size: int | None, channels: int | None) -> Source:
    """CIFAR-10 python batches from a local folder (never downloaded); its test batch stays test."""
    root = Path(path or "")
    batch_dir = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    files = [batch_dir / f"data_batch_{i}" for i in range(1, 6)] + [batch_dir / "test_batch"]
    missing = [str(f) for f in files + [batch_dir / "batches.meta"] if not f.is_file()]
    if missing:
        raise PipelineError(
            f"CIFAR-10 not found under data.path '{root}': missing {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}. Unpack cifar-10-python.tar.gz there "
            "(the pipeline never downloads data)."
        )
    size, channels = image_size or 32, channels or 3

    def read_batches(batch_files: list[Path]) -> Iterator[Sample]:
        for file in batch_files:
            try:
                with open(file, "rb") as handle:
                    batch = pickle.load(handle, encoding="bytes")
                data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                labels = list(batch[b"labels"])
            except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as error:
                raise PipelineError(f"CIFAR-10 batch '{file}' is corrupt: {error!r}.") from error
            for image, label in zip(data, labels, strict=True):
                yield Sample(_convert_pixels(image, size, channels), int(label), "32x32", "RGB")

    with open(batch_dir / "batches.meta", "rb") as handle:
        classes = [name.decode() for name in pickle.load(handle, encoding="bytes")[b"label_names"]]
    return Source(classes, read_batches(files[:5]), official_test=read_batches(files[5:]))


SOURCES: dict[str, Callable[[str | None, int | None, int | None], Source]] = {
    "digits": load_digits_source,
    "imagefolder": load_imagefolder_source,
    "cifar10": load_cifar10_source,
}


def load_source(
    name: str, path: str | None, image_size: int | None, channels: int | None
) -> Source:
    if name not in SOURCES:
        raise PipelineError(f"Unknown data.source '{name}'; valid: {', '.join(SOURCES)}.")
    return SOURCES[name](path, image_size, channels)


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=1)
    weights = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)[None, :, None, None]
    return (images * weights).sum(axis=1, keepdims=True)


def _convert_pixels(image: np.ndarray, size: int, channels: int) -> np.ndarray:
    """8-bit RGB (C, H, W) to `channels` and `size` through PIL, as image files are decoded."""
    if channels == 3 and image.shape[-1] == size:
        return image
    picture = Image.fromarray(image.transpose(1, 2, 0)).convert("L" if channels == 1 else "RGB")
    array = np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _resize(images: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or images.shape[-1] == size and images.shape[-2] == size:
        return images
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(images), size=(size, size), mode="bilinear", align_corners=False
    )
    return resized.clamp(0.0, 1.0).numpy()
