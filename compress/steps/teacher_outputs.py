"""Step `teacher_outputs`: run the frozen teacher once over the augmented views of every train
image (`distill.teacher_views`: the whole grid of crops and flips, or that many per image) and
store its logits (and the feature map feature KD reads, when on), so that distillation, every
pruning round and QAT read them instead of running it."""

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
from compress.data.loaders import SplitDataset, load_info, normalized_dataset
from compress.data.shards import ShardWriter
from compress.data.teacher_outputs import (
    FEATURES,
    LOGITS,
    TeachingViews,
    source_digests,
    store_name,
)
from compress.runtime.runners import EVAL_BATCH_SIZE
from compress.train.distillation import load_teacher
from compress.train.loop import CPU, Compute
from compress.train.losses import FeatureCapture

log = logging.getLogger(__name__)


def teacher_outputs(
    params: DistillParams, augment: AugmentParams, artifacts: Artifacts, compute: Compute = CPU
) -> None:
    """Every view of every train image through the teacher, on `compute.device`; with
    `distill.teacher_views: null`, only the settings (training then runs the teacher live)."""
    started = time.perf_counter()
    info = load_info(artifacts.prepared_dir)
    train_set = normalized_dataset("train", info, artifacts.prepared_dir)
    settings = TeachingViews.from_params(params, augment)
    sources = source_digests(artifacts)  # before loading: what the outputs are computed from
    teacher = load_teacher(artifacts, params).to(compute.device) if settings.views else None

    def build(folder: Path) -> None:
        for view in range(settings.views or 0):
            write_view(teacher, settings, train_set, view, folder, compute.device)
            log.info(
                "Teacher outputs: view %d/%d of %d images", view + 1, settings.views, len(train_set)
            )
        settings.write(folder, len(train_set), sources)

    atomic.replace_dir(artifacts.teacher_outputs_dir, build)
    if settings.views is None:
        log.info("distill.teacher_views is null: training runs the teacher on fresh views")
    else:
        log.info("Stored %d view(s) in %.1f s", settings.views, time.perf_counter() - started)


@torch.no_grad()
def write_view(
    teacher: nn.Module,
    settings: TeachingViews,
    train_set: SplitDataset,
    view: int,
    folder: Path,
    device: str,
) -> None:
    """View slot `view` of every train image, in split order, through the teacher in batches."""
    layer = settings.feature_layer
    capture = FeatureCapture(teacher, layer, "distill.feature.teacher_layer") if layer else None
    writers: dict[str, ShardWriter] = {}
    try:
        for start in range(0, len(train_set), EVAL_BATCH_SIZE):
            keys = range(start, min(start + EVAL_BATCH_SIZE, len(train_set)))
            pixels = [settings.pixels(train_set, index, view) for index in keys]
            batch = {LOGITS: teacher(torch.stack(pixels).to(device))}
            if capture is not None:
                batch[FEATURES] = capture.output
            for kind, outputs in batch.items():
                stored = outputs.cpu().numpy().astype(np.float32)
                if kind not in writers:
                    name = store_name(kind, view)
                    writers[kind] = ShardWriter(folder, name, "float32", stored.shape[1:])
                for output, index in zip(stored, keys, strict=True):
                    writers[kind].add(output, int(train_set.labels[index]))
    finally:
        if capture is not None:
            capture.remove()
    for writer in writers.values():
        writer.close()
