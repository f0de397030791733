"""Data sources by `data.source` (a registry), and the one image decoder that preparation,
`compress predict` and the end-to-end benchmark share. A source yields images in [0, 1] as
(N, C, H, W) float32 with integer labels and class names."""

from __future__ import annotations

import pickle
from collections.abc import Callable
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
class RawData:
    """What a source yields: images in [0, 1] as (N, C, H, W) float32 and integer labels."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    official_test: tuple[np.ndarray, np.ndarray] | None = None
    skipped: list[str] = field(default_factory=list)  # unreadable files, by path
    # per image as it came, before any conversion: "WxH" and the PIL mode (for drift checks)
    sizes: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)


def load_digits_source(path: str | None, image_size: int | None, channels: int | None) -> RawData:
    """scikit-learn's bundled 8x8 digits (values 0..16): no download, the default. Upsampled to
    16x16 unless `data.image_size` says otherwise: at 8x8 a small student's stride-2 stages
    leave it a single pixel."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None]
    images = _to_channels(images, channels or 1)
    images = _resize(images, image_size or DIGITS_SIZE)
    count = len(bunch.target)
    return RawData(
        images,
        bunch.target.astype(np.int64),
        [str(c) for c in bunch.target_names],
        sizes=["8x8"] * count,
        modes=["L"] * count,
    )


def decode_image(source: Path | BinaryIO, size: int, channels: int) -> np.ndarray:
    """Any PIL-readable image (grayscale, RGB, RGBA, palette, 16-bit, float) as (C, size, size)
    in [0, 1]. Preparation, `predict` and the end-to-end benchmark all decode through here, so
    a deployed model sees what it was trained on."""
    return decode_image_file(source, size, channels)[0]


def decode_image_file(
    source: Path | BinaryIO, size: int, channels: int
) -> tuple[np.ndarray, str, str]:
    """`decode_image` plus the file's own size ("WxH") and PIL mode: transparency composited on
    black, 16-bit and float scaled by their range, then converted to L or RGB and resized
    bilinearly."""
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
        array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return array, original_size, original_mode


def load_imagefolder_source(
    path: str | None, image_size: int | None, channels: int | None
) -> RawData:
    """A local folder in torchvision's ImageFolder layout (one sub-folder per class, sorted
    names are the classes). Every file is tried; unreadable ones (corrupt, empty, not an image)
    are skipped and listed in `RawData.skipped` for the prepare stage to count and judge."""
    root = Path(path or "")
    if not root.is_dir():
        raise PipelineError(
            f"data.path '{root}' is not a folder. For data.source=imagefolder point data.path at "
            "a folder with one sub-folder of images per class."
        )
    size, channels = image_size or 32, channels or 3
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    empty = [d.name for d in class_dirs if not any(f.is_file() for f in d.rglob("*"))]
    if empty:
        raise PipelineError(
            f"Class folder(s) {', '.join(empty)} under data.path '{root}' hold no files; add "
            "images or remove the folder."
        )
    images, labels, skipped, sizes, modes = [], [], [], [], []
    for label, class_dir in enumerate(class_dirs):
        for file in sorted(f for f in class_dir.rglob("*") if f.is_file()):
            if file.name.startswith("."):
                continue
            try:
                image, original_size, mode = decode_image_file(file, size, channels)
            except IMAGE_READ_ERRORS:
                skipped.append(str(file))
                continue
            images.append(image)
            labels.append(label)
            sizes.append(original_size)
            modes.append(mode)
    if not images:
        raise PipelineError(f"No readable image under data.path '{root}'.")
    return RawData(
        np.stack(images).astype(np.float32),
        np.asarray(labels, dtype=np.int64),
        [d.name for d in class_dirs],
        skipped=skipped,
        sizes=sizes,
        modes=modes,
    )


def load_cifar10_source(path: str | None, image_size: int | None, channels: int | None) -> RawData:
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

    def read_batches(batch_files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        data, labels = [], []
        for file in batch_files:
            try:
                with open(file, "rb") as handle:
                    batch = pickle.load(handle, encoding="bytes")
                data.append(np.asarray(batch[b"data"], dtype=np.uint8))
                labels.extend(batch[b"labels"])
            except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as error:
                raise PipelineError(f"CIFAR-10 batch '{file}' is corrupt: {error!r}.") from error
        images = np.concatenate(data).reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
        images = _resize(_to_channels(images, channels or 3), image_size)
        return images, np.asarray(labels, dtype=np.int64)

    with open(batch_dir / "batches.meta", "rb") as handle:
        classes = [name.decode() for name in pickle.load(handle, encoding="bytes")[b"label_names"]]
    train_images, train_labels = read_batches(files[:5])
    count = len(train_labels)
    return RawData(
        train_images,
        train_labels,
        classes,
        official_test=read_batches(files[5:]),
        sizes=["32x32"] * count,
        modes=["RGB"] * count,
    )


SOURCES: dict[str, Callable[[str | None, int | None, int | None], RawData]] = {
    "digits": load_digits_source,
    "imagefolder": load_imagefolder_source,
    "cifar10": load_cifar10_source,
}


def load_source(
    name: str, path: str | None, image_size: int | None, channels: int | None
) -> RawData:
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


def _resize(images: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or images.shape[-1] == size and images.shape[-2] == size:
        return images
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(images), size=(size, size), mode="bilinear", align_corners=False
    )
    return resized.clamp(0.0, 1.0).numpy()
