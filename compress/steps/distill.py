"""Step `distill`: train a small student on the frozen teacher's soft targets, and the same
student on hard labels only (the control) so the metrics show what distillation added."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from compress.compression.students import Student, build_student, resolve_student
from compress.config.data import AugmentParams
from compress.config.distill import TEACHER_STUDENT, DistillParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.loaders import (
    DatasetInfo,
    eval_loader,
    load_info,
    make_loader,
    training_dataset,
)
from compress.data.teacher_outputs import TeachingViews
from compress.evaluation.quality import (
    classification_metrics,
    mean_kl_to_teacher,
    teacher_agreement,
)
from compress.models.builders import count_macs_params
from compress.models.checkpoints import architecture, load_model, save_checkpoint
from compress.models.onnx_export import export_onnx
from compress.models.onnx_teacher import macs_params
from compress.train.distillation import (
    distillation_dataset,
    distillation_objective,
    distillation_schedule,
    load_teacher,
)
from compress.train.loop import (
    CPU,
    Compute,
    FitResult,
    cross_entropy_objective,
    fit,
    predict,
    seed_everything,
)

log = logging.getLogger(__name__)


def distill(
    params: DistillParams,
    augment: AugmentParams,
    artifacts: Artifacts,
    compute: Compute = CPU,
) -> dict:
    started = time.perf_counter()
    info = load_info(artifacts.prepared_dir)
    teacher = load_teacher(artifacts, params)
    # every input is read before the student is built (cutting it from the teacher takes
    # a while): a bad shard or stale teacher outputs fail first
    train_set = distillation_dataset(info, augment, params, artifacts)
    # the control needs no teacher, so it trains on fresh views every epoch: a stored view set
    # cost it 0.7 pt on 3 seeds (benchmarks/teacher_views.py), which would inflate the gain
    fresh_views = training_dataset(info, augment, artifacts.prepared_dir)
    val_loader = eval_loader("val", info, artifacts.prepared_dir)
    test_loader = eval_loader("test", info, artifacts.prepared_dir)
    params, cut = resolve_student(params, info, artifacts)
    seed_everything(params.seed)
    student, record = cut if cut is not None else build_student(params, info, artifacts)
    control_start = copy.deepcopy(student)  # the control starts from the same weights
    ratios = check_student_is_smaller(params.student, student, teacher, info.input_shape)
    teacher_logits, labels = predict(teacher, test_loader)
    log.info("Distilling '%s' (%.1fx fewer params)", params.student, ratios["params_ratio"])
    result = train_distilled(student, teacher, params, info, train_set, val_loader, compute)
    save_student(artifacts.student_pt, student, record, info)
    export_onnx(student, info.input_shape, artifacts.student_onnx, info.contract())
    student_logits, _ = predict(student, test_loader)
    metrics = {
        "student_arch": params.student,
        "student_start": start_of(params),
        # stored views per image the student was taught on (None: fresh views, live teacher);
        # the control always trains on fresh views
        "teacher_views": TeachingViews.from_params(params, augment).views,
        "teacher": classification_metrics(teacher_logits, labels, info.classes)
        | dict(zip(("macs", "params"), macs_params(teacher, info.input_shape), strict=True))
        | {"size_bytes": {"onnx": artifacts.teacher_onnx.stat().st_size}},
        "distilled": summarize_model(
            student,
            student_logits,
            labels,
            teacher_logits,
            info,
            artifacts.student_pt,
            artifacts.student_onnx,
        )
        | {"best_epoch": result.best_epoch, "train_seconds": round(result.seconds, 2)},
    }
    control_history = train_control(
        params, (control_start, record), info, fresh_views, val_loader, artifacts, compute
    )
    if params.control:
        control, _ = load_model(artifacts.control_pt)
        control_logits, _ = predict(control, test_loader)
        metrics["control"] = summarize_model(
            control,
            control_logits,
            labels,
            teacher_logits,
            info,
            artifacts.control_pt,
            artifacts.control_onnx,
        )
        metrics["distillation_gain_points"] = round(
            (metrics["distilled"]["accuracy"] - metrics["control"]["accuracy"]) * 100, 2
        )
    metrics |= compression_summary(metrics, artifacts)
    metrics["wall_seconds"] = round(time.perf_counter() - started, 2)
    atomic.write_json(artifacts.distill_metrics, metrics)
    atomic.write_csv(artifacts.distilled_plot, result.history)
    atomic.write_csv(artifacts.control_plot, control_history)
    log.info(
        "Distilled student %.4f vs control %s vs teacher %.4f; %.1fx fewer params",
        metrics["distilled"]["accuracy"],
        f"{metrics['control']['accuracy']:.4f}" if params.control else "(off)",
        metrics["teacher"]["accuracy"],
        metrics["compression_vs_teacher"]["params_ratio"],
    )
    return metrics


def train_distilled(
    student: nn.Module,
    teacher: nn.Module,
    params: DistillParams,
    info: DatasetInfo,
    train_set: Dataset,
    val_loader: DataLoader,
    compute: Compute,
) -> FitResult:
    """Distillation proper, with a check that the teacher came out exactly as it went in."""
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    train_loader = make_loader(
        train_set, params.batch_size, True, params.seed, compute.loader_workers
    )
    with distillation_objective(teacher, student, info.input_shape, params) as objective:
        result = fit(
            student,
            objective,
            train_loader,
            val_loader,
            distillation_schedule(params),
            "distill",
            compute,
        )
    if any(not torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_state.items()):
        raise RuntimeError("The teacher changed during distillation; it must stay frozen.")
    return result


def compression_summary(metrics: dict, artifacts: Artifacts) -> dict:
    """The distilled student against the teacher: ratios of cost, and the accuracy drop."""
    teacher, distilled = metrics["teacher"], metrics["distilled"]
    return {
        "compression_vs_teacher": {
            "params_ratio": round(teacher["params"] / distilled["params"], 3),
            "macs_ratio": round(teacher["macs"] / distilled["macs"], 3),
            "onnx_size_ratio": round(
                artifacts.teacher_onnx.stat().st_size / artifacts.student_onnx.stat().st_size, 3
            ),
        },
        "accuracy_drop_vs_teacher_points": round(
            (teacher["accuracy"] - distilled["accuracy"]) * 100, 2
        ),
    }


def save_student(path: Path, model: nn.Module, record: dict, info: DatasetInfo) -> None:
    """With what rebuilds it: reference, arguments, stem, and a cut student's pruning."""
    arch = record["arch"]
    save_checkpoint(path, model, arch, info.input_shape, info.num_classes, **architecture(record))


def start_of(params: DistillParams) -> str:
    """How the student started: for the metrics and the comparison of recipes."""
    if params.student == TEACHER_STUDENT:
        return f"cut from the teacher ({params.init_ratio:.0%} of MACs removed)"
    return f"warm from {params.student_checkpoint}" if params.student_checkpoint else "scratch"


def check_student_is_smaller(
    arch: str, student: nn.Module, teacher: nn.Module, input_shape: tuple[int, int, int]
) -> dict[str, float]:
    student_macs, student_params = count_macs_params(student, input_shape)
    teacher_macs, teacher_params = macs_params(teacher, input_shape)
    if student_params >= teacher_params or student_macs >= teacher_macs:
        raise PipelineError(
            f"distill.student='{arch}' ({student_params:,} params, {student_macs:,} MACs) is not smaller "
            f"than the teacher ({teacher_params:,} params, {teacher_macs:,} MACs); choose a smaller "
            "architecture (e.g. mobilenet_v3_small, timm:mobilenetv3_small_100) or "
            "distill.student: teacher with distill.init_ratio."
        )
    return {
        "params_ratio": teacher_params / student_params,
        "macs_ratio": teacher_macs / student_macs,
    }


def summarize_model(
    model: nn.Module,
    logits: np.ndarray,
    labels: np.ndarray,
    teacher_logits: np.ndarray,
    info: DatasetInfo,
    checkpoint: Path,
    onnx_file: Path,
) -> dict:
    macs, params = count_macs_params(model, info.input_shape)
    return {
        **classification_metrics(logits, labels, info.classes),
        "teacher_agreement": teacher_agreement(logits, teacher_logits),
        "mean_kl_to_teacher": mean_kl_to_teacher(logits, teacher_logits),
        "params": params,
        "macs": macs,
        "size_bytes": {
            "checkpoint": checkpoint.stat().st_size,
            "onnx_fp32": onnx_file.stat().st_size,
        },
    }


def fit_labels_only(
    student: nn.Module,
    params: DistillParams,
    train_set: Dataset,
    val_loader: DataLoader,
    compute: Compute,
) -> FitResult:
    """`student` trained on hard labels with the distillation run's seed and schedule."""
    seed_everything(params.seed)
    loader = make_loader(train_set, params.batch_size, True, params.seed, compute.loader_workers)
    return fit(
        student,
        cross_entropy_objective,
        loader,
        val_loader,
        distillation_schedule(params),
        "control",
        compute,
    )


def train_control(
    params: DistillParams,
    start: Student,
    info: DatasetInfo,
    train_set: Dataset,
    val_loader: DataLoader,
    artifacts: Artifacts,
    compute: Compute,
) -> list[dict]:
    """The same student, starting weights, epochs, seed and data (fresh augmented views every
    epoch, as it needs no stored teacher outputs) on hard labels only; with
    `distill.control: false`, a note in its place."""
    if not params.control:
        note = "distill.control is false\n"
        atomic.replace_dir(artifacts.control_dir, lambda d: (d / "skipped.txt").write_text(note))
        return []
    control, record = start
    log.info("Training the control '%s' on hard labels", params.student)
    result = fit_labels_only(control, params, train_set, val_loader, compute)

    def build(folder: Path) -> None:
        save_student(folder / artifacts.control_pt.name, control, record, info)
        export_onnx(
            control, info.input_shape, folder / artifacts.control_onnx.name, info.contract()
        )

    atomic.replace_dir(artifacts.control_dir, build)
    return result.history
