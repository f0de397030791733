"""Step `teacher_outputs`: run the frozen teacher once over `distill.teacher_views` augmented
views of every train image and store its logits (and the feature map feature KD reads, when
on), so that distillation, every pruning round and QAT read them instead of running it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compress.config.data import AugmentParams
from compress.config.distill import DistillParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.data.loaders import SplitDataset, load_info, training_dataset
from compress.data.shards import ShardWriter
from compress.data.teacher_outputs import (
    FEATURES,
    LOGITS,
    TeacherOutputsInfo,
    store_name,
    stored_views,
    view_seed,
)
from compress.runtime.runners import EVAL_BATCH_SIZE
from compress.train.distillation import load_teacher
from compress.train.losses import FeatureCapture

log = logging.getLogger(__name__)


def teacher_outputs(params: DistillParams, augment: AugmentParams, artifacts: Artifacts) -> None:
    started = time.perf_counter()
    info = load_info(artifacts.prepared_dir)
    train_set = training_dataset(
        info, augment.crop_padding, augment.horizontal_flip, artifacts.prepared_dir
    )
    views = stored_views(params.teacher_views, train_set.augment)
    feature_kd = params.feature.weight > 0
    kinds = (LOGITS, FEATURES) if feature_kd else (LOGITS,)
    outputs = TeacherOutputsInfo(views, params.seed, len(train_set), kinds)
    teacher = load_teacher(artifacts, params) if views is not None else None

    def build(folder: Path) -> None:
        if teacher is not None:
            layer = params.feature.teacher_layer if feature_kd else None
            for view in range(views):
                write_view(teacher, layer, train_set, params.seed, view, folder)
                log.info(
                    "Teacher outputs: view %d/%d of %d images", view + 1, views, len(train_set)
                )
        outputs.write(folder)

    atomic.replace_dir(artifacts.teacher_outputs_dir, build)
    if views is None:
        log.info("distill.teacher_views is null: training runs the teacher on fresh views")
    else:
        log.info("Stored %d view(s) in %.1f s", views, time.perf_counter() - started)


@torch.no_grad()
def write_view(
    teacher: nn.Module,
    feature_layer: str | None,
    train_set: SplitDataset,
    seed: int,
    view: int,
    folder: Path,
) -> None:
    """One view of every train image, in split order, through the teacher in batches."""
    capture = (
        FeatureCapture(teacher, feature_layer, "distill.feature.teacher_layer")
        if feature_layer
        else None
    )
    writers: dict[str, ShardWriter] = {}
    for start in range(0, len(train_set), EVAL_BATCH_SIZE):
        indices = range(start, min(start + EVAL_BATCH_SIZE, len(train_set)))
        items = [train_set[(index, view_seed(seed, index, view))] for index in indices]
        batch = {LOGITS: teacher(torch.stack([pixels for pixels, _ in items]))}
        if capture is not None:
            batch[FEATURES] = capture.output
        for kind, outputs in batch.items():
            stored = outputs.numpy().astype(np.float32)
            if kind not in writers:
                writers[kind] = ShardWriter(
                    folder, store_name(kind, view), "float32", stored.shape[1:]
                )
            for output, (_, label) in zip(stored, items, strict=True):
                writers[kind].add(output, int(label))
    for writer in writers.values():
        writer.close()
    if capture is not None:
        capture.remove()
