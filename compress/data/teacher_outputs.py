"""The frozen teacher's outputs, stored once per training image and augmented view (stage
`teacher_outputs`) and read back beside each image by distillation, pruning's fine-tuning and
QAT, so none of them runs the teacher again every epoch.

The views are the grid of everything `data.augment` can show (`view_grid`: every crop corner,
mirrored or not), not a random draw: with `distill.teacher_views: all` every image is stored in
every view, so the student sees each image in the same views, equally often, as it would with
live augmentation (8 views drawn at random covered 5.5 of the 9 on average, and cost the
distilled student 0.5 pt against a live teacher). A smaller count stores that many grid views
per image, chosen by a seeded per-image shuffle. Each epoch, a training loader picks one of the
stored views per image from its own seeded draw (consistent teaching: the student sees exactly
the view it is taught on). Outputs are shards like the prepared splits, one store per kind and
view slot (`logits-view3`, `features-view3`), with `meta.json` saying how many views, which
kinds, and which teacher and train split they came from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from compress.config.data import AugmentParams
from compress.config.distill import ALL_VIEWS, DistillParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.loaders import SplitDataset, View, view_grid
from compress.data.shards import ShardReader

LOGITS, FEATURES = "logits", "features"
REBUILD = "run `dvc repro teacher_outputs` (or `dvc checkout data/teacher_outputs`)"
LAYOUT = "view-grid"  # how stored view slots map to pixels; stores without it drew views


def view_rank(seed: int, index: int, view: int) -> bytes:
    """Where grid view `view` of train image `index` comes in that image's shuffle: fixed by
    its arguments alone, so any process, worker or stage stores and shows the same views."""
    return hashlib.sha256(f"{seed}:{index}:{view}".encode()).digest()


def store_name(kind: str, view: int) -> str:
    """The shard store of one kind of output for one view, e.g. `logits-view3`."""
    return f"{kind}-view{view}"


@dataclass(frozen=True)
class TeachingViews:
    """What stored outputs are made for. Written beside them and compared with what training
    asks for, so outputs made with other settings (a stage run by hand, `dvc repro -s`) are
    refused instead of teaching the student on other pixels. `views` is None when training
    runs the teacher live; `feature_layer` is the teacher layer stored for feature KD."""

    views: int | None
    seed: int
    crop_padding: int
    horizontal_flip: bool
    feature_layer: str | None

    @classmethod
    def from_params(cls, distill: DistillParams, augment: AugmentParams) -> TeachingViews:
        """`all`, or a count above the grid's size, stores the whole grid (one view without
        augmentation: every view is the image itself)."""
        grid = len(view_grid(augment.crop_padding, augment.horizontal_flip))
        requested = distill.teacher_views
        if requested is None:
            views = None
        else:
            views = grid if requested == ALL_VIEWS else min(requested, grid)
        feature_layer = distill.feature.teacher_layer if distill.feature.weight > 0 else None
        return cls(
            views, distill.seed, augment.crop_padding, augment.horizontal_flip, feature_layer
        )

    @property
    def kinds(self) -> tuple[str, ...]:
        return (LOGITS, FEATURES) if self.feature_layer else (LOGITS,)

    def view(self, index: int, slot: int) -> View:
        """The grid view stored in slot `slot` of train image `index`: the grid in order when
        every view is stored, else the first `views` of the image's seeded shuffle."""
        grid = view_grid(self.crop_padding, self.horizontal_flip)
        if self.views == len(grid):
            return grid[slot]
        shuffled = sorted(range(len(grid)), key=lambda view: view_rank(self.seed, index, view))
        return grid[shuffled[slot]]

    def pixels(self, train_set: SplitDataset, index: int, slot: int) -> torch.Tensor:
        """The model input of train image `index` in the view of its slot `slot`: the one
        definition the stage stores outputs for and training shows."""
        view = self.view(index, slot)
        return train_set.normalized(view.apply(train_set.image(index), self.crop_padding))

    def write(self, directory: Path, count: int, sources: dict[str, str]) -> None:
        meta = {"settings": asdict(self), "layout": LAYOUT, "count": count, "sources": sources}
        (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def source_digests(artifacts: Artifacts) -> dict[str, str]:
    """SHA-256 of what the outputs are computed from: the teacher's files and the train split's
    image hashes in order. DVC reruns the stage when they change; these catch a store left
    from before when a stage runs by hand or with `dvc repro -s`."""
    rows = artifacts.prepared_dir / "train.rows.csv"
    sources = (artifacts.teacher_pt, artifacts.teacher_onnx, rows)
    return artifacts.digests(sources, "sha256")


def read_meta(directory: Path) -> tuple[TeachingViews, int, dict[str, str]]:
    """The settings the stored outputs were made with, how many train images they cover, and
    the digests of the files they were computed from."""
    meta_file = directory / "meta.json"
    if not meta_file.is_file():
        raise PipelineError(f"'{meta_file}' not found: {REBUILD}.")
    meta = json.loads(meta_file.read_text())
    if meta.get("layout") != LAYOUT:
        raise PipelineError(
            f"'{directory}' holds teacher outputs of views drawn at random (made by an older "
            f"version of the stage; views are now the grid of every crop and flip): {REBUILD}."
        )
    return TeachingViews(**meta["settings"]), int(meta["count"]), meta.get("sources", {})


class TaughtDataset(SplitDataset):
    """The augmented train split whose items also carry the teacher's stored outputs for the
    view they show: (pixels, label, logits[, features]). The sampler's per-image seed chooses
    the view, so the order and the views still follow the loader's seed alone."""

    def __init__(self, base: SplitDataset, directory: Path, settings: TeachingViews):
        super().__init__(base.reader, base.info)
        self.settings, self.views, self.kinds = settings, settings.views, settings.kinds
        self.stores = {
            (kind, slot): ShardReader(directory, store_name(kind, slot))
            for kind in self.kinds
            for slot in range(self.views)
        }

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        index, seed = key  # from SeededSampler: every training item comes with its seed
        slot = seed % self.views
        pixels = self.settings.pixels(self, index, slot)
        stored = [np.array(self.stores[kind, slot][index]) for kind in self.kinds]
        return pixels, self.labels[index], *(torch.from_numpy(output) for output in stored)


def teaching_dataset(
    train_set: SplitDataset, artifacts: Artifacts, wanted: TeachingViews
) -> SplitDataset:
    """`train_set` with the stored teacher outputs beside every image, or as it is when the
    outputs are off (`distill.teacher_views: null`) and training runs the teacher live."""
    directory = artifacts.teacher_outputs_dir
    made, count, sources = read_meta(directory)
    differing = [
        f"{name} {getattr(made, name)!r} where training asks for {getattr(wanted, name)!r}"
        for name in TeachingViews.__dataclass_fields__
        if getattr(made, name) != getattr(wanted, name)
    ]
    if differing:
        raise PipelineError(
            f"'{directory}' holds teacher outputs made with other settings ("
            f"{'; '.join(differing)}; from distill.teacher_views, distill.seed, data.augment and "
            f"distill.feature): {REBUILD}."
        )
    if made.views is None:
        return train_set
    if count != len(train_set):
        raise PipelineError(
            f"'{directory}' holds the teacher's outputs for {count} train images, the "
            f"prepared train split has {len(train_set)}: {REBUILD}."
        )
    check_sources(directory, sources, source_digests(artifacts))
    return TaughtDataset(train_set, directory, made)


def check_sources(directory: Path, made_from: dict[str, str], now: dict[str, str]) -> None:
    """The store must come from the teacher files and train split there are now."""
    if not made_from:
        raise PipelineError(
            f"'{directory}' records no teacher or train split it was computed from (made by an "
            f"older version of the stage): {REBUILD}."
        )
    changed = [
        path
        for path in sorted(made_from.keys() | now.keys())
        if made_from.get(path) != now.get(path)
    ]
    if changed:
        raise PipelineError(
            f"'{directory}' holds teacher outputs computed before {', '.join(changed)} changed "
            f"(another teacher or train split, or a file added or removed): {REBUILD}."
        )
