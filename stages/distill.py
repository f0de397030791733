"""Stage `distill`: train a small student on the frozen teacher's soft targets, and the same
student on hard labels only (the control) so the metrics show what distillation added."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from stages import atomic
from stages.baseline import TEACHER_CHECKPOINT
from stages.config import ComputeParams, DataParams, DistillParams, load
from stages.data import (
    DatasetInfo,
    load_info,
    make_loader,
    normalized_dataset,
    train_augmentation,
    training_dataset,
)
from stages.errors import PipelineError, run_stage
from stages.losses import DistillationObjective
from stages.models import build_model, count_macs_params, load_model, save_checkpoint
from stages.onnx_export import export_onnx
from stages.quality import classification_metrics, mean_kl_to_teacher, teacher_agreement
from stages.training import (
    FitResult,
    cross_entropy_objective,
    fit,
    predict,
    resolve_device,
    seed_everything,
)

log = logging.getLogger("stages.distill")

STUDENT_CHECKPOINT = Path("models/student.pt")
STUDENT_ONNX = Path("models/student.onnx")
CONTROL_DIR = Path("models/control")
METRICS_FILE = Path("metrics/distill.json")
PLOTS_DIR = Path("plots/distill")


def make_distillation_objective(
    teacher: nn.Module, student: nn.Module, input_shape: tuple[int, int, int], params: DistillParams
) -> DistillationObjective:
    """The distill stage's loss, also used by pruning fine-tuning and QAT."""
    start, end = params.temperatures()
    return DistillationObjective(
        teacher,
        alpha=params.alpha,
        temperature_start=start,
        temperature_end=end,
        schedule=params.temperature_schedule,
        kd_loss_name=params.kd_loss,
        feature_weight=params.feature.weight,
        teacher_layer=params.feature.teacher_layer,
        student=student,
        student_layer=params.feature.student_layer,
        input_shape=input_shape,
    )


def distill_finetune(
    student: nn.Module,
    teacher: nn.Module,
    input_shape: tuple[int, int, int],
    params: DistillParams,
    train_loader: DataLoader,
    val_loader: DataLoader,
    epochs: int,
    lr: float,
    name: str,
    device: str = "cpu",
    max_grad_norm: float | None = None,
    warmup_epochs: int = 0,
) -> FitResult:
    """Train `student` with the distillation loss through the shared loop: used by distillation
    itself, by each pruning round's fine-tuning and by QAT."""
    objective = make_distillation_objective(teacher, student, input_shape, params)
    try:
        return fit(
            student,
            objective,
            train_loader,
            val_loader,
            epochs,
            lr,
            params.weight_decay,
            name,
            extra_parameters=[p for p in objective.parameters() if p.requires_grad],
            on_epoch_start=objective.set_epoch,
            device=device,
            max_grad_norm=max_grad_norm,
            warmup_epochs=warmup_epochs,
        )
    finally:
        objective.close()


def load_teacher(path: Path = TEACHER_CHECKPOINT) -> nn.Module:
    """The baseline stage's teacher, frozen: eval mode, no gradients."""
    teacher, _ = load_model(path)
    return teacher.eval().requires_grad_(False)


def check_student_is_smaller(
    arch: str, student: nn.Module, teacher: nn.Module, input_shape: tuple[int, int, int]
) -> dict[str, float]:
    student_macs, student_params = count_macs_params(student, input_shape)
    teacher_macs, teacher_params = count_macs_params(teacher, input_shape)
    if student_params >= teacher_params or student_macs >= teacher_macs:
        raise PipelineError(
            f"distill.student='{arch}' ({student_params:,} params, {student_macs:,} MACs) is not smaller "
            f"than the teacher ({teacher_params:,} params, {teacher_macs:,} MACs); choose a smaller "
            "torchvision architecture, e.g. mobilenet_v3_small or mnasnet0_5."
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


def distill(
    student_arch: str,
    params: DistillParams,
    augment_padding: int,
    augment_flip: bool,
    device: str = "cpu",
) -> dict:
    started = time.perf_counter()
    info = load_info()
    teacher = load_teacher()
    seed_everything(params.seed)
    student = build_model(
        student_arch, info.num_classes, info.channels, info.image_size, "distill.student"
    )
    ratios = check_student_is_smaller(student_arch, student, teacher, info.input_shape)
    augmentation = train_augmentation(augment_padding, augment_flip, info.image_size)
    train_set = training_dataset(info, augmentation)
    val_loader = make_loader(normalized_dataset("val", info), 256, shuffle=False)
    test_loader = make_loader(normalized_dataset("test", info), 256, shuffle=False)
    teacher_logits, labels = predict(teacher, test_loader)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}

    log.info(
        "Distilling '%s' from the teacher (%.1fx fewer params)",
        student_arch,
        ratios["params_ratio"],
    )
    result = distill_finetune(
        student,
        teacher,
        info.input_shape,
        params,
        make_loader(train_set, params.batch_size, shuffle=True, seed=params.seed),
        val_loader,
        params.epochs,
        params.lr,
        "distill",
        device,
        warmup_epochs=params.lr_warmup_epochs,
    )
    if any(not torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_state.items()):
        raise RuntimeError("The teacher changed during distillation; it must stay frozen.")
    save_checkpoint(STUDENT_CHECKPOINT, student, student_arch, info.input_shape, info.num_classes)
    export_onnx(student, info.input_shape, STUDENT_ONNX)
    student_logits, _ = predict(student, test_loader)
    metrics = {
        "student_arch": student_arch,
        "teacher": classification_metrics(teacher_logits, labels, info.classes)
        | dict(zip(("macs", "params"), count_macs_params(teacher, info.input_shape), strict=True))
        | {"size_bytes": {"checkpoint": TEACHER_CHECKPOINT.stat().st_size}},
        "distilled": summarize_model(
            student, student_logits, labels, teacher_logits, info, STUDENT_CHECKPOINT, STUDENT_ONNX
        )
        | {"best_epoch": result.best_epoch, "train_seconds": round(result.seconds, 2)},
    }
    control_history: list[dict] = []
    if params.control:
        control_history = train_control(student_arch, params, info, train_set, val_loader, device)
        control, _ = load_model(CONTROL_DIR / "control.pt")
        control_logits, _ = predict(control, test_loader)
        metrics["control"] = summarize_model(
            control,
            control_logits,
            labels,
            teacher_logits,
            info,
            CONTROL_DIR / "control.pt",
            CONTROL_DIR / "control.onnx",
        )
        metrics["distillation_gain_points"] = round(
            (metrics["distilled"]["accuracy"] - metrics["control"]["accuracy"]) * 100, 2
        )
    else:
        atomic.replace_dir(
            CONTROL_DIR, lambda d: (d / "skipped.txt").write_text("distill.control is false\n")
        )

    distilled = metrics["distilled"]
    metrics["compression_vs_teacher"] = {
        "params_ratio": round(metrics["teacher"]["params"] / distilled["params"], 3),
        "macs_ratio": round(metrics["teacher"]["macs"] / distilled["macs"], 3),
        "size_ratio": round(
            TEACHER_CHECKPOINT.stat().st_size / STUDENT_CHECKPOINT.stat().st_size, 3
        ),
    }
    metrics["accuracy_drop_vs_teacher_points"] = round(
        (metrics["teacher"]["accuracy"] - distilled["accuracy"]) * 100, 2
    )
    metrics["wall_seconds"] = round(time.perf_counter() - started, 2)
    atomic.write_json(METRICS_FILE, metrics)
    atomic.write_csv(PLOTS_DIR / "distilled.csv", result.history)
    atomic.write_csv(PLOTS_DIR / "control.csv", control_history)
    log.info(
        "Distilled student %.4f vs control %s vs teacher %.4f; %.1fx fewer params",
        distilled["accuracy"],
        f"{metrics['control']['accuracy']:.4f}" if params.control else "(off)",
        metrics["teacher"]["accuracy"],
        metrics["compression_vs_teacher"]["params_ratio"],
    )
    return metrics


def train_control(
    arch: str,
    params: DistillParams,
    info: DatasetInfo,
    train_set: Dataset,
    val_loader: DataLoader,
    device: str,
) -> list[dict]:
    """The same student, epochs, seed and data on hard labels only."""
    seed_everything(params.seed)
    control = build_model(arch, info.num_classes, info.channels, info.image_size, "distill.student")
    log.info("Training the control '%s' on hard labels", arch)
    result = fit(
        control,
        cross_entropy_objective,
        make_loader(train_set, params.batch_size, shuffle=True, seed=params.seed),
        val_loader,
        params.epochs,
        params.lr,
        params.weight_decay,
        "control",
        device=device,
        warmup_epochs=params.lr_warmup_epochs,
    )

    def build(folder: Path) -> None:
        save_checkpoint(folder / "control.pt", control, arch, info.input_shape, info.num_classes)
        export_onnx(control, info.input_shape, folder / "control.onnx")

    atomic.replace_dir(CONTROL_DIR, build)
    return result.history


def main() -> None:
    params = load("distill", DistillParams)
    data = load("data", DataParams)
    distill(
        params.student,
        params,
        data.augment.crop_padding,
        data.augment.horizontal_flip,
        resolve_device(load("compute", ComputeParams).device),
    )


if __name__ == "__main__":
    run_stage(main)
