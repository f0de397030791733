"""Distillation from a frozen teacher through the shared training loop: the objective built from
`distill:` params, and the fine-tuning helper that distillation itself, every pruning round and
QAT call, so the three train with one loss and one loop."""

from __future__ import annotations

from torch import nn
from torch.utils.data import DataLoader

from compress.artifacts import Artifacts
from compress.checkpoints import model_from_payload, read_checkpoint
from compress.errors import PipelineError
from compress.losses import DistillationObjective
from compress.onnx_teacher import ONNX_TEACHER, OnnxTeacher
from compress.params import TEACHER_STUDENT, DistillParams
from compress.training import CPU, Compute, FitResult, fit


def load_teacher(artifacts: Artifacts, params: DistillParams) -> nn.Module:
    """The baseline stage's teacher, frozen: eval mode, no gradients. An ONNX teacher's
    `teacher.pt` is a reference to `teacher.onnx`, whose logits ONNX Runtime computes."""
    payload = read_checkpoint(artifacts.teacher_pt)
    if payload["arch"] != ONNX_TEACHER:
        return model_from_payload(payload, artifacts.teacher_pt).requires_grad_(False)
    refuse_torch_only_options(params)
    input_shape = tuple(int(size) for size in payload["input_shape"])
    return OnnxTeacher(artifacts.teacher_onnx, "teacher.onnx", input_shape, payload["num_classes"])


def refuse_torch_only_options(params: DistillParams) -> None:
    """What needs the teacher's torch modules, refused before any training."""
    if params.feature.weight > 0:
        raise PipelineError(
            f"distill.feature.weight is {params.feature.weight}, but feature distillation reads "
            "the teacher's inner layer (distill.feature.teacher_layer), which an ONNX teacher "
            "(teacher.onnx) does not expose: set distill.feature.weight: 0, or give the teacher "
            "as a torch model (teacher.arch + teacher.checkpoint, teacher.onnx: null)."
        )
    if params.student == TEACHER_STUDENT:
        raise PipelineError(
            "distill.student: teacher cuts the student out of the teacher's torch modules, which "
            "an ONNX teacher (teacher.onnx) does not have: name an architecture in "
            "distill.student (e.g. mobilenet_v2 or timm:<name>), or give the teacher as a torch "
            "model (teacher.arch + teacher.checkpoint, teacher.onnx: null)."
        )


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
    compute: Compute = CPU,
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
            compute=compute,
            max_grad_norm=max_grad_norm,
            warmup_epochs=warmup_epochs,
        )
    finally:
        objective.close()
