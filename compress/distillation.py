"""Distillation from a frozen teacher through the shared training loop: the objective built from
`distill:` params, and the fine-tuning helper that distillation itself, every pruning round and
QAT call, so the three train with one loss and one loop."""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

from compress.checkpoints import load_model
from compress.losses import DistillationObjective
from compress.params import DistillParams
from compress.training import FitResult, fit


def load_teacher(path: Path) -> nn.Module:
    """The baseline stage's teacher, frozen: eval mode, no gradients."""
    teacher, _ = load_model(path)
    return teacher.eval().requires_grad_(False)


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
    """Train `student` with the distillation loss through the shared loop."""
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
