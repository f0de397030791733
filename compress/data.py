"""Data sources (a registry by `data.source`), the prepared-split file format, and loaders.

Prepared splits are plain tensors so every later stage loads them with weights_only=True:
images as float32 in [0, 1] shaped (N, C, H, W), labels as int64. Normalization statistics
come from train only and are stored beside the splits in meta.json.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2

from compress.errors import PipelineError

log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 256


@dataclass
class RawData:
    """What a source yields: images in [0, 1] as (N, C, H, W) float32 and integer labels."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    official_test: tuple[np.ndarray, np.ndarray] | None = None
    skipped: list[str] = field(default_factory=list)  # unreadable files, by path


def load_digits_source(path: str | None, image_size: int | None, channels: int | None) -> RawData:
    """scikit-learn's bundled 8x8 digits (values 0..16): no download, the default."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None]
    images = _to_channels(images, channels or 1)
    images = _resize(images, image_size)
    return RawData(images, bunch.target.astype(np.int64), [str(c) for c in bunch.target_names])


def _image_array(file: Path, size: int, channels: int) -> np.ndarray:
    """Any PIL-readable image (grayscale, RGB, RGBA, palette, 16-bit, float) as (C, size, size)
    in [0, 1]: transparency composited on black, 16-bit and float scaled by their range."""
    from PIL import Image

    with Image.open(file) as image:
        image.load()
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
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def load_imagefolder_source(
    path: str | None, image_size: int | None, channels: int | None
) -> RawData:
    """A local folder in torchvision's ImageFolder layout (one sub-folder per class, sorted
    names are the classes). Every file is tried; unreadable ones (corrupt, empty, not an image)
    are skipped and listed in `RawData.skipped` for the prepare stage to count and judge."""
    from PIL import UnidentifiedImageError

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
    images, labels, skipped = [], [], []
    for label, class_dir in enumerate(class_dirs):
        for file in sorted(f for f in class_dir.rglob("*") if f.is_file()):
            if file.name.startswith("."):
                continue
            try:
                images.append(_image_array(file, size, channels))
                labels.append(label)
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                skipped.append(str(file))
    if not images:
        raise PipelineError(f"No readable image under data.path '{root}'.")
    return RawData(
        np.stack(images).astype(np.float32),
        np.asarray(labels, dtype=np.int64),
        [d.name for d in class_dirs],
        skipped=skipped,
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
    return RawData(train_images, train_labels, classes, official_test=read_batches(files[5:]))


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


# --- prepared splits --------------------------------------------------------------------------


@dataclass
class DatasetInfo:
    """meta.json beside the splits: what every later stage needs to build and feed a model."""

    classes: list[str]
    channels: int
    image_size: int
    mean: list[float]
    std: list[float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)


def load_info(prepared_dir: Path) -> DatasetInfo:
    meta_file = prepared_dir / "meta.json"
    if not meta_file.is_file():
        raise PipelineError(f"'{meta_file}' not found: run `dvc repro prepare` first.")
    meta = json.loads(meta_file.read_text())
    return DatasetInfo(**{key: meta[key] for key in DatasetInfo.__dataclass_fields__})


def load_split(name: str, prepared_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw images in [0, 1] and labels of one prepared split."""
    file = prepared_dir / f"{name}.pt"
    if not file.is_file():
        raise PipelineError(f"Prepared split '{file}' not found: run `dvc repro prepare` first.")
    try:
        payload = torch.load(file, weights_only=True)
        return payload["images"], payload["labels"]
    except Exception as error:
        raise PipelineError(
            f"Prepared split '{file}' is unreadable ({error.__class__.__name__}); "
            "run `dvc repro prepare --force` to rebuild it."
        ) from error


def normalize(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    mean = torch.tensor(info.mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean) / std


def normalized_dataset(name: str, info: DatasetInfo, prepared_dir: Path) -> TensorDataset:
    images, labels = load_split(name, prepared_dir)
    return TensorDataset(normalize(images, info), labels)


class AugmentedDataset(Dataset):
    """Train-time view of a split: augment the raw [0, 1] image, then normalize, per sample."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, augment: v2.Transform
    ):
        self.images, self.labels, self.augment = images, labels, augment
        self.mean = torch.tensor(info.mean).view(-1, 1, 1)
        self.std = torch.tensor(info.std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.augment(self.images[index]) - self.mean) / self.std, self.labels[index]


def train_augmentation(
    crop_padding: int, horizontal_flip: bool, image_size: int
) -> v2.Transform | None:
    """Random shifts (crop with zero padding) and optional flips; flips are off by default
    because they turn digits and letters into other symbols."""
    steps: list[v2.Transform] = []
    if crop_padding > 0:
        steps.append(v2.RandomCrop(image_size, padding=crop_padding))
    if horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps) if steps else None


def training_dataset(
    info: DatasetInfo, crop_padding: int, horizontal_flip: bool, prepared_dir: Path
) -> Dataset:
    """The train split with the `data.augment` augmentations, normalized per sample."""
    augment = train_augmentation(crop_padding, horizontal_flip, info.image_size)
    if augment is None:
        return normalized_dataset("train", info, prepared_dir)
    images, labels = load_split("train", prepared_dir)
    return AugmentedDataset(images, labels, info, augment)


def eval_loader(name: str, info: DatasetInfo, prepared_dir: Path) -> DataLoader:
    """A split in its stored order, for validation and test figures."""
    return make_loader(normalized_dataset(name, info, prepared_dir), EVAL_BATCH_SIZE, shuffle=False)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Single-process loading with a seeded generator: the batch order is the same every run."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
