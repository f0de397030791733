"""The frozen teacher's outputs, stored once per training image and augmented view (stage
`teacher_outputs`) and read back beside each image by distillation, pruning's fine-tuning and
QAT, so none of them runs the teacher again every epoch.

A view is one seeded augmentation of an image: view `v` of image `i` is drawn from
`view_seed(seed, i, v)`, so the stage and every training loader make the same pixels. Each
epoch, a training loader picks one of the stored views per image from its own seeded draw
(consistent teaching: the student sees exactly the view it is taught on). Outputs are shards
like the prepared splits, one store per kind and view (`logits-view3`, `features-view3`), with
`meta.json` saying how many views and which kinds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

from compress.core.errors import PipelineError
from compress.data.loaders import SplitDataset
from compress.data.shards import ShardReader

LOGITS, FEATURES = "logits", "features"
REBUILD = "run `dvc repro teacher_outputs` (or `dvc checkout data/teacher_outputs`)"


def view_seed(seed: int, index: int, view: int) -> int:
    """The augmentation seed of view `view` of train image `index`: fixed by its arguments
    alone, so any process, worker or stage makes the same view."""
    digest = hashlib.sha256(f"{seed}:{index}:{view}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


def store_name(kind: str, view: int) -> str:
    return f"{kind}-view{view}"


@dataclass(frozen=True)
class TeacherOutputsInfo:
    """`meta.json` of the stored outputs. `views` is None when training runs the teacher live
    (`distill.teacher_views: null`); `kinds` holds `features` only when feature KD is on."""

    views: int | None
    seed: int
    count: int
    kinds: tuple[str, ...]

    def write(self, directory: Path) -> None:
        (directory / "meta.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> TeacherOutputsInfo:
        meta_file = directory / "meta.json"
        if not meta_file.is_file():
            raise PipelineError(f"'{meta_file}' not found: {REBUILD}.")
        meta = json.loads(meta_file.read_text())
        return cls(meta["views"], meta["seed"], meta["count"], tuple(meta["kinds"]))


def stored_views(requested: int | None, augment: v2.Transform | None) -> int | None:
    """Without augmentation every view is the image itself: one is enough."""
    return None if requested is None else (requested if augment is not None else 1)


class TaughtDataset(SplitDataset):
    """The augmented train split whose items also carry the teacher's stored outputs for the
    view they show: (pixels, label, logits[, features]). The sampler's per-image seed chooses
    the view, so the order and the views still follow the loader's seed alone."""

    def __init__(
        self,
        base: SplitDataset,
        directory: Path,
        outputs: TeacherOutputsInfo,
    ):
        super().__init__(base.reader, base.info, base.augment)
        self.views, self.seed, self.kinds = outputs.views, outputs.seed, outputs.kinds
        self.stores = {
            (kind, view): ShardReader(directory, store_name(kind, view))
            for kind in self.kinds
            for view in range(self.views)
        }

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, ...]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        view = seed % self.views
        pixels, label = super().__getitem__((index, view_seed(self.seed, index, view)))
        stored = [np.array(self.stores[kind, view][index]) for kind in self.kinds]
        return pixels, label, *(torch.from_numpy(output) for output in stored)


def teaching_dataset(train_set: SplitDataset, directory: Path, feature_kd: bool) -> SplitDataset:
    """`train_set` with the stored teacher outputs beside every image, or as it is when the
    outputs are off (`distill.teacher_views: null`) and training runs the teacher live."""
    outputs = TeacherOutputsInfo.read(directory)
    if outputs.views is None:
        return train_set
    if outputs.count != len(train_set):
        raise PipelineError(
            f"'{directory}' holds the teacher's outputs for {outputs.count} train images, the "
            f"prepared train split has {len(train_set)}: {REBUILD}."
        )
    if feature_kd and FEATURES not in outputs.kinds:
        raise PipelineError(
            f"distill.feature.weight is on but '{directory}' holds no teacher features: {REBUILD}."
        )
    return TaughtDataset(train_set, directory, outputs)
