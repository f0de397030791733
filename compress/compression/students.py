"""The student before distillation: a fresh model from a reference, the same warm-started from
a weights file a team has, or the teacher itself cut to a share of its MACs with Torch-Pruning
(the "prune, then distill" recipe for large models). Each comes with what rebuilds it from its
checkpoint alone (reference, constructor arguments, stem, pruning history)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from compress.compression.pruning import MacsPruner
from compress.config.distill import (
    AUTO_STUDENT,
    FALLBACK_STUDENT,
    TEACHER_STUDENT,
    DistillParams,
)
from compress.core.artifacts import Artifacts
from compress.data.loaders import DatasetInfo
from compress.models.builders import build_model
from compress.models.checkpoints import architecture, load_model, load_warm_start, read_checkpoint
from compress.models.onnx_teacher import ONNX_TEACHER

log = logging.getLogger(__name__)

# The cut keeps every layer at least this wide and channel counts SIMD-friendly, as `prune` does.
CUT_MAX_LAYER_RATIO = 0.9
CUT_ROUND_TO = 8


Student = tuple[nn.Module, dict[str, Any]]  # the model and its architecture record


def resolve_student(
    params: DistillParams, info: DatasetInfo, artifacts: Artifacts
) -> tuple[DistillParams, Student | None]:
    """`distill.student: auto` made concrete, with the student when that meant cutting it: the
    teacher cut by `init_ratio` when the teacher is a torch model Torch-Pruning can trace (the
    fastest pipeline and the smallest, fastest model measured on digits), else FALLBACK_STUDENT
    (an ONNX teacher, or one that cannot be cut). Other values come back as they are."""
    if params.student != AUTO_STUDENT:
        return params, None
    if read_checkpoint(artifacts.teacher_pt)["arch"] == ONNX_TEACHER:
        reason = "the teacher is an ONNX file, which cannot be cut"
    else:
        try:
            cut = cut_from_teacher(artifacts.teacher_pt, info, params.init_ratio)
            log.info(
                "distill.student auto: the teacher cut by %.0f%% of its MACs",
                100 * params.init_ratio,
            )
            return params.model_copy(update={"student": TEACHER_STUDENT}), cut
        except Exception as error:  # Torch-Pruning raises whatever tracing the model hits
            reason = f"Torch-Pruning cannot cut the teacher ({error.__class__.__name__}: {error})"
    log.info("distill.student auto: %s; %s instead", reason, FALLBACK_STUDENT)
    return params.model_copy(update={"student": FALLBACK_STUDENT}), None


def build_student(params: DistillParams, info: DatasetInfo, artifacts: Artifacts) -> Student:
    """The student to distil into and its architecture record (`arch` plus what
    `checkpoints.architecture` carries). Deterministic given the seed."""
    if params.student == TEACHER_STUDENT:
        return cut_from_teacher(artifacts.teacher_pt, info, params.init_ratio)
    model = build_model(
        params.student,
        info.num_classes,
        info.channels,
        info.image_size,
        "distill.student",
        params.student_kwargs,
        params.adapt_stem,
    )
    record = {
        "arch": params.student,
        "arch_kwargs": params.student_kwargs,
        "adapt_stem": params.adapt_stem,
    }
    if params.student_checkpoint:
        path = artifacts.tracked_input(
            params.student_checkpoint, "distill.student_checkpoint", artifacts.teacher_input_dir
        )
        weights = read_checkpoint(path)["state_dict"]
        changes = load_warm_start(model, weights, path, params.student, info.num_classes)
        log.info("Warm start from %s%s", path, "".join(f"; {c}" for c in changes))
    return model, record


def cut_from_teacher(teacher_path: Path, info: DatasetInfo, init_ratio: float) -> Student:
    """A copy of the teacher with `init_ratio` of its MACs removed (L1 channel importance),
    keeping the teacher's weights in what is left."""
    model, payload = load_model(teacher_path)
    pruner = MacsPruner(
        model,
        info.input_shape,
        info.num_classes,
        "l1",
        global_pruning=False,
        max_layer_ratio=CUT_MAX_LAYER_RATIO,
        round_to=CUT_ROUND_TO,
    )
    start = pruner.macs()
    reached = pruner.prune_to((1 - init_ratio) * start)
    log.info(
        "Student cut from the teacher '%s': %.1f%% of its MACs removed (%s asked)",
        payload["arch"],
        100 * (1 - reached / start),
        f"{init_ratio:.0%}",
    )
    record = {"arch": payload["arch"], **architecture(payload)}
    record["pruning_history"] = record.get("pruning_history", []) + pruner.history()
    return model.train(), record
