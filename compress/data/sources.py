"""Data sources by `data.source` (a registry). A source yields its images one at a time, so that
no source is ever held in memory whole; image files go through the one decoder that
`compress-predict` uses too (`compress.runtime.images`)."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from compress.core.errors import PipelineError
from compress.runtime.images import IMAGE_READ_ERRORS, decode_image_file, pixel_key

DIGITS_SIZE = 16


@dataclass
class Sample:
    """One image as a source read it: (C, H, W) uint8 pixels (float32 in [0, 1] for a source
    whose pixels are not 8-bit), its label, the file's own size ("WxH") and mode, a name a
    person can find it by (a path under data.path, or a batch file and index), and its key: the
    `pixel_key` of its pixels as the source holds them, before any resize or conversion (the
    split key, so processing settings never move an image between splits)."""

    image: np.ndarray
    label: int
    size: str
    mode: str
    name: str
    key: str


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
        Sample(image, int(label), "8x8", "L", f"digits[{index}]", pixel_key(original, "L"))
        for index, (image, label, original) in enumerate(
            zip(images, bunch.target, bunch.images, strict=True)
        )
    )
    return Source([str(c) for c in bunch.target_names], samples)


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
                    image, original_size, mode, key = decode_image_file(file, size, channels)
                except IMAGE_READ_ERRORS:
                    source.skipped.append(str(file))
                    continue
                name = str(file.relative_to(root))
                yield Sample(image, label, original_size, mode, name, key)

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
            for index, (image, label) in enumerate(zip(data, labels, strict=True)):
                pixels = _convert_pixels(image, size, channels)
                name, key = f"{file.name}[{index}]", pixel_key(image, "RGB")
                yield Sample(pixels, int(label), "32x32", "RGB", name, key)

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
