"""The prepared-split file format, its metadata, datasets and loaders.

Prepared splits are plain tensors so every later stage loads them with weights_only=True:
images as float32 in [0, 1] shaped (N, C, H, W), labels as int64. Normalization statistics
come from train only and are stored beside the splits in meta.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2

from compress.contract import ModelContract
from compress.errors import PipelineError

EVAL_BATCH_SIZE = 256


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

    def contract(self) -> ModelContract:
        """What a model trained on these splits expects, to embed in its ONNX file."""
        return ModelContract.for_input(
            self.classes, self.channels, self.image_size, self.mean, self.std
        )


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


def normalize(images: torch.Tensor, info: DatasetInfo | ModelContract) -> torch.Tensor:
    """(images - mean) / std per channel, with the statistics of the prepared train split."""
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
