"""Distillation from a frozen teacher through the shared training loop: the teacher, and the
objective and schedule built from `distill:` params, which distillation itself, every pruning
round and QAT use, so the three train with one loss and one loop."""

from __future__ import annotations

from torch import nn

from compress.config.data import AugmentParams
from compress.config.distill import TEACHER_STUDENT, DistillParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.loaders import DatasetInfo, SplitDataset, training_dataset
from compress.data.teacher_outputs import TeachingViews, teaching_dataset
from compress.models.checkpoints import model_from_payload, read_checkpoint
from compress.models.onnx_teacher import ONNX_TEACHER, OnnxTeacher
from compress.train.loop import Schedule
from compress.train.losses import DistillationObjective, KDSettings


def load_teacher(artifacts: Artifacts, params: DistillParams) -> nn.Module:
    """The baseline stage's teacher, frozen: eval mode, no gradients. An ONNX teacher's
    `teacher.pt` is a reference to `teacher.onnx`, whose logits ONNX Runtime computes."""
    payload = read_checkpoint(artifacts.teacher_pt)
    if payload["arch"] != ONNX_TEACHER:
        return model_from_payload(payload, artifacts.teacher_pt).requires_grad_(False)
    refuse_torch_only_options(params)
    input_shape = tuple(int(size) for size in payload["input_shape"])
    return OnnxTeacher(artifacts.teacher_onnx, "teacher.onnx", input_shape, payload["num_classes"])


def distillation_dataset(
    info: DatasetInfo, augment: AugmentParams, params: DistillParams, artifacts: Artifacts
) -> SplitDataset:
    """The augmented train split with the teacher's stored outputs beside every view (stage
    `teacher_outputs`): what distillation, pruning's fine-tuning and QAT train on."""
    train_set = training_dataset(info, augment, artifacts.prepared_dir)
    wanted = TeachingViews.from_params(params, augment)
    return teaching_dataset(train_set, artifacts, wanted)


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


def kd_settings(params: DistillParams) -> KDSettings:
    """The `distill:` section's loss: shared by distillation, pruning's fine-tuning and QAT."""
    start, end = params.temperatures()
    return KDSettings(
        alpha=params.alpha,
        temperature_start=start,
        temperature_end=end,
        schedule=params.temperature_schedule,
        divergence=params.kd_loss,
        beta=params.dkd_beta,
        feature_weight=params.feature.weight,
        teacher_layer=params.feature.teacher_layer,
        student_layer=params.feature.student_layer,
    )


def distillation_objective(
    teacher: nn.Module, student: nn.Module, input_shape: tuple[int, int, int], params: DistillParams
) -> DistillationObjective:
    """The distill stage's objective for `student`; leave its `with` block to unhook it."""
    return DistillationObjective(teacher, student, input_shape, kd_settings(params))


def distillation_schedule(params: DistillParams) -> Schedule:
    """The distill stage's own run (the control trains on the same schedule)."""
    return Schedule(
        params.epochs,
        params.lr,
        params.weight_decay,
        params.lr_warmup_epochs,
        patience=params.patience,
        weights=params.weights,
    )
