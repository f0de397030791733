"""Prepared splits' metadata, datasets and loaders.

Splits are shards (`compress.data.shards`) read image by image: pixels as stored (uint8, or float32
in [0, 1]), labels as int64. Normalization statistics come from train only and are stored beside
the splits in meta.json; images are normalized on the fly.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional

from compress.config.data import AugmentParams
from compress.core.distributed import rank_and_world
from compress.core.errors import PipelineError
from compress.data.shards import ShardReader
from compress.runtime.contract import ModelContract
from compress.runtime.images import normalize, to_unit
from compress.runtime.runners import EVAL_BATCH_SIZE


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


def split_hashes(rows_file: Path) -> list[str]:
    """The split keys of a split's images, in the split's order, from the `<split>.rows.csv`
    that prepare writes beside its shards."""
    with rows_file.open(newline="") as handle:
        return [row["hash"] for row in csv.DictReader(handle)]


def split_identities(rows_file: Path) -> list[frozenset[str]]:
    """Each image's identities, in the split's order: its split key and the hash of its
    prepared pixels. Rows written before the key on source pixels hold one (`hash`, the
    prepared pixels' hash then): an image matches across the key change by that one."""
    with rows_file.open(newline="") as handle:
        return [
            frozenset(filter(None, (row["hash"], row.get("pixel_hash"))))
            for row in csv.DictReader(handle)
        ]


def matches(image: frozenset[str], known: set[str]) -> bool:
    """Whether an image (its identities) is among `known` identities."""
    return not image.isdisjoint(known)


def load_info(prepared_dir: Path) -> DatasetInfo:
    meta_file = prepared_dir / "meta.json"
    if not meta_file.is_file():
        raise PipelineError(f"'{meta_file}' not found: run `dvc repro prepare` first.")
    meta = json.loads(meta_file.read_text())
    return DatasetInfo(**{key: meta[key] for key in DatasetInfo.__dataclass_fields__})


def open_split(name: str, prepared_dir: Path) -> ShardReader:
    """One prepared split's shards, checked, for streaming or random access."""
    return ShardReader(prepared_dir, name)


def load_split(name: str, prepared_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split in memory, images in [0, 1]: for the small ones (calibration); the others
    are read a batch at a time (`eval_loader`)."""
    reader = open_split(name, prepared_dir)
    return torch.from_numpy(to_unit(reader.read_all())), torch.from_numpy(reader.labels)


def first_image(name: str, prepared_dir: Path) -> np.ndarray:
    """A split's first image in [0, 1] (C, H, W): the sample the end-to-end latency encodes."""
    return to_unit(np.array(open_split(name, prepared_dir)[0]))


def normalize_tensor(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """`compress.runtime.images.normalize` (the one normalization) for a batch of tensors."""
    return torch.from_numpy(normalize(images.numpy(), info.mean, info.std))


class SplitDataset(Dataset):
    """A split read image by image from its shards, optionally augmented (on the stored pixels,
    before conversion), normalized on the fly. An index may come with its own seed
    (`SeededSampler`): the augmentation then draws from that seed alone, so the result does not
    depend on which loader worker, or which process, handles the image."""

    def __init__(self, reader: ShardReader, info: DatasetInfo, augment: v2.Transform | None = None):
        self.reader, self.info, self.augment = reader, info, augment
        self.labels = torch.from_numpy(reader.labels)
        self.mean, self.std = info.mean, info.std

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = self.image(index)
        if self.augment is not None:  # torchvision draws from the CPU's default generator
            generator = torch.default_generator
            state = generator.get_state()
            generator.manual_seed(seed if seed is not None else index)
            image = self.augment(image)
            generator.set_state(state)  # (torch.manual_seed also seeds every GPU: 0.4 ms)
        return self.normalized(image), self.labels[index]

    def image(self, index: int) -> torch.Tensor:
        """Image `index` as stored, (C, H, W)."""
        return torch.from_numpy(np.array(self.reader[index]))

    def normalized(self, image: torch.Tensor) -> torch.Tensor:
        """Stored pixels as the float32 input a model takes."""
        return torch.from_numpy(normalize(to_unit(image.numpy()), self.mean, self.std))


class SeededSampler(Sampler[tuple[int, int] | int]):
    """Each epoch: a permutation of the split and one augmentation seed per image, both drawn
    from the loader's seeded generator in the main process (indices alone for a dataset that
    takes no seed). With `world` processes (DDP), process `rank` takes every `world`-th image
    of the same permutation, which wraps around to a multiple of `world` (as torch's
    DistributedSampler does) so that every process runs the same number of batches."""

    def __init__(
        self, size: int, generator: torch.Generator, rank: int, world: int, with_seeds: bool
    ):
        self.size, self.generator, self.rank, self.world = size, generator, rank, world
        self.with_seeds = with_seeds

    def __len__(self) -> int:
        return -(-self.size // self.world)

    def __iter__(self) -> Iterator[tuple[int, int] | int]:
        order = torch.randperm(self.size, generator=self.generator)
        seeds = torch.randint(0, 2**62, (self.size,), generator=self.generator)
        padded = len(self) * self.world
        order, seeds = order.repeat(2)[:padded], seeds.repeat(2)[:padded]
        for position in range(self.rank, padded, self.world):
            index = int(order[position])
            yield (index, int(seeds[position])) if self.with_seeds else index


def normalized_dataset(name: str, info: DatasetInfo, prepared_dir: Path) -> SplitDataset:
    return SplitDataset(open_split(name, prepared_dir), info)


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


@dataclass(frozen=True)
class View:
    """One image that `train_augmentation` can show: the crop of the zero-padded image whose
    corner is at (`top`, `left`), mirrored or not."""

    top: int
    left: int
    flip: bool

    def apply(self, image: torch.Tensor, crop_padding: int) -> torch.Tensor:
        """What `RandomCrop(size, padding=crop_padding)` (+ `RandomHorizontalFlip`) shows when
        it draws this view, with the same torchvision functions."""
        height, width = image.shape[-2:]
        padded = functional.pad(image, [crop_padding]) if crop_padding else image
        shown = functional.crop(padded, self.top, self.left, height, width)
        return functional.horizontal_flip(shown) if self.flip else shown


@cache  # read for every training item
def view_grid(crop_padding: int, horizontal_flip: bool) -> tuple[View, ...]:
    """Every view `train_augmentation` can draw, in a fixed order: (2p + 1)^2 crop corners,
    times two with flips; each equally likely under the random augmentation."""
    corners = range(2 * crop_padding + 1)
    flips = (False, True) if horizontal_flip else (False,)
    return tuple(View(top, left, flip) for top in corners for left in corners for flip in flips)


def training_dataset(info: DatasetInfo, augment: AugmentParams, prepared_dir: Path) -> SplitDataset:
    """The train split with the `data.augment` augmentations, normalized per sample: what
    every training stage shows a model that learns from labels or a live teacher."""
    steps = train_augmentation(augment.crop_padding, augment.horizontal_flip, info.image_size)
    return SplitDataset(open_split("train", prepared_dir), info, steps)


def eval_loader(name: str, info: DatasetInfo, prepared_dir: Path) -> DataLoader:
    """A split in its stored order, for validation and test figures."""
    return make_loader(normalized_dataset(name, info, prepared_dir), EVAL_BATCH_SIZE, False)


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, workers: int = 0
) -> DataLoader:
    """Seeded batches: the order and every augmentation come from `seed` in the main process,
    so a run is bit-identical with any number of loader `workers` (`compute.loader_workers`).
    Under DDP each process takes its share of every shuffled batch (the global batch stays
    `batch_size`, so learning rates mean the same); evaluation loaders stay whole."""
    generator = torch.Generator().manual_seed(seed)
    rank, world = rank_and_world() if shuffle else (0, 1)
    if batch_size % world:
        raise PipelineError(
            f"A training batch of {batch_size} cannot be split evenly over {world} processes; "
            "make the batch sizes multiples of compute.nodes x compute.processes_per_node."
        )
    seeded = isinstance(dataset, SplitDataset)
    sampler = SeededSampler(len(dataset), generator, rank, world, seeded) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size // world,
        sampler=sampler,
        num_workers=workers,
        generator=generator,
        # workers start fresh (spawn), not as forks of a process whose runtime threads
        # (OpenMP, ONNX Runtime, Prefect's client) do not survive a fork, and live for the
        # whole run rather than being started again every epoch
        multiprocessing_context="spawn" if workers else None,
        persistent_workers=workers > 0,
    )
