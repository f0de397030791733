"""Distillation losses (registries by name) and the objective that the shared training loop
optimises when a frozen teacher guides a student.

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * D(teacher/T, student/T)
           [+ feature_weight * MSE(adapter(student feature), teacher feature)]

D is forward KL(p_teacher || p_student) (Hinton et al.; mass-covering), reverse
KL(p_student || p_teacher) (mode-seeking, as MiniLLM uses for generative students), or
decoupled KD (Zhao et al. 2022): the KL of the target-or-not split plus beta times the KL among
the other classes, which forward KL weighs down by the teacher's confidence. T^2 keeps the
soft-target gradients on the same scale as the hard-label ones when T changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from compress.core.errors import PipelineError
from compress.train.loop import TrainableObjective

DKD_BETA = 8.0  # decoupled KD's non-target weight (Zhao et al.'s CIFAR-100 setting)

# divergence(student_logits, teacher_logits, labels, temperature) -> scalar
Divergence = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def forward_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(p_teacher || p_student) at temperature T, averaged over the batch."""
    return F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )


def reverse_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(p_student || p_teacher) at temperature T: forward KL with the roles swapped."""
    return forward_kl(teacher_logits, student_logits, temperature)


def decoupled_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    beta: float,
) -> torch.Tensor:
    """Decoupled KD at temperature T (Zhao et al. 2022): KL between teacher and student of
    (p_target, 1 - p_target), plus `beta` times the KL of their distributions over the other
    classes, averaged over the batch."""
    target = F.one_hot(labels, student_logits.shape[1]).bool()

    def target_or_not(logits: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits / temperature, dim=1)
        log_rest = torch.logsumexp(log_probs.masked_fill(target, float("-inf")), dim=1)
        return torch.stack([log_probs[target], log_rest], dim=1)

    def among_others(logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits / temperature - 1000.0 * target, dim=1)

    def kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return F.kl_div(student, teacher, reduction="batchmean", log_target=True)

    return kl(target_or_not(student_logits), target_or_not(teacher_logits)) + beta * kl(
        among_others(student_logits), among_others(teacher_logits)
    )


def _without_labels(kl: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> Divergence:
    return lambda student, teacher, labels, temperature: kl(student, teacher, temperature)


# name -> a divergence given the non-target weight beta (read by `decoupled` only)
DIVERGENCES: dict[str, Callable[[float], Divergence]] = {
    "forward_kl": lambda beta: _without_labels(forward_kl),
    "reverse_kl": lambda beta: _without_labels(reverse_kl),
    "decoupled": lambda beta: partial(decoupled_kl, beta=beta),
}


def get_divergence(name: str, beta: float = DKD_BETA) -> Divergence:
    if name not in DIVERGENCES:
        raise PipelineError(f"Unknown distill.kd_loss '{name}'; valid: {', '.join(DIVERGENCES)}.")
    return DIVERGENCES[name](beta)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
    divergence: Divergence | None = None,
) -> torch.Tensor:
    """The loss of the module docstring; `divergence` defaults to forward KL."""
    hard = F.cross_entropy(student_logits, labels)
    if alpha >= 1.0:
        return hard
    divergence = divergence or get_divergence("forward_kl")
    soft = divergence(student_logits, teacher_logits.detach(), labels, temperature)
    return alpha * hard + (1.0 - alpha) * temperature**2 * soft


def constant_schedule(start: float, end: float, progress: float) -> float:
    return start


def linear_schedule(start: float, end: float, progress: float) -> float:
    return start + (end - start) * progress


TEMPERATURE_SCHEDULES: dict[str, Callable[[float, float, float], float]] = {
    "constant": constant_schedule,
    "linear": linear_schedule,
}


def get_schedule(name: str) -> Callable[[float, float, float], float]:
    if name not in TEMPERATURE_SCHEDULES:
        raise PipelineError(
            f"Unknown distill.temperature_schedule '{name}'; valid: {', '.join(TEMPERATURE_SCHEDULES)}."
        )
    return TEMPERATURE_SCHEDULES[name]


class FeatureCapture:
    """Keeps the output of one named submodule from the latest forward pass."""

    def __init__(self, model: nn.Module, layer: str, param: str):
        try:
            module = model.get_submodule(layer)
        except AttributeError as error:
            names = [name for name, _ in model.named_children()]
            raise PipelineError(
                f"{param}='{layer}' is not a layer of the model; top-level layers: {', '.join(names)}."
            ) from error
        self.output: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.output = output

    def remove(self) -> None:
        self.handle.remove()


@dataclass(frozen=True)
class KDSettings:
    """The distillation loss: `alpha * CE + (1 - alpha) * T^2 * divergence`, T following
    `schedule` from `temperature_start` to `temperature_end`, plus `feature_weight` times the
    MSE between a student layer (through a learned 1x1 adapter) and a teacher layer."""

    alpha: float
    temperature_start: float
    temperature_end: float
    schedule: str = "constant"
    divergence: str = "forward_kl"
    beta: float = DKD_BETA  # decoupled: weight of the non-target classes' KL
    feature_weight: float = 0.0
    teacher_layer: str = "layer4"
    student_layer: str = "features"


class DistillationObjective(TrainableObjective):
    """Objective for `loop.fit`: the frozen teacher's outputs (stored, or computed on the
    batch) teach the student.

    The teacher is put in eval mode with gradients off and is never passed to an optimizer.
    Feature KD matches a student layer to a teacher layer through a learned 1x1 adapter (a
    trainable part of the objective, handed to the optimizer through `parameters()`). Use it
    as a context manager: leaving it removes the feature hooks from the student.
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        input_shape: tuple[int, int, int],
        settings: KDSettings,
    ):
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.alpha = settings.alpha
        self.temperature_start = settings.temperature_start
        self.temperature_end = settings.temperature_end
        self.schedule = get_schedule(settings.schedule)
        self.divergence = get_divergence(settings.divergence, settings.beta)
        self.temperature = settings.temperature_start
        self.feature_weight = settings.feature_weight
        self.adapter: nn.Module | None = None
        self.captures: list[FeatureCapture] = []
        if settings.feature_weight > 0:
            self.teacher_features = FeatureCapture(
                self.teacher, settings.teacher_layer, "distill.feature.teacher_layer"
            )
            self.student_features = FeatureCapture(
                student, settings.student_layer, "distill.feature.student_layer"
            )
            self.captures = [self.teacher_features, self.student_features]
            self.adapter = self._build_adapter(student, input_shape)

    def __enter__(self) -> DistillationObjective:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def train(self, mode: bool = True) -> DistillationObjective:
        """Only the adapter trains; the teacher stays in eval mode whatever the caller asks."""
        super().train(mode)
        self.teacher.eval()
        return self

    def _build_adapter(self, student: nn.Module, input_shape: tuple[int, int, int]) -> nn.Module:
        """A 1x1 convolution from the student's channels to the teacher's, sized by a dry run."""
        probe = torch.zeros(2, *input_shape)
        was_training = student.training
        with torch.no_grad():
            student.eval()
            student(probe)
            self.teacher(probe)
        student.train(was_training)
        student_channels = self.student_features.output.shape[1]
        teacher_channels = self.teacher_features.output.shape[1]
        return nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Temperature for this epoch from the schedule (progress 0 at the first epoch, 1 at the last)."""
        progress = (epoch - 1) / max(epochs - 1, 1)
        self.temperature = self.schedule(self.temperature_start, self.temperature_end, progress)

    def feature_loss(self, teacher_map: torch.Tensor) -> torch.Tensor:
        student_map = self.adapter(self.student_features.output)
        if student_map.shape[-2:] != teacher_map.shape[-2:]:
            student_map = F.adaptive_avg_pool2d(student_map, teacher_map.shape[-2:])
        return F.mse_loss(student_map, teacher_map)

    def forward(
        self,
        student: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *teacher_outputs: torch.Tensor,
    ) -> torch.Tensor:
        """`teacher_outputs`, the teacher's logits (and feature map) stored for these very
        images (`compress.data.teacher_outputs`), stand in for running the teacher."""
        if teacher_outputs:
            teacher_logits, *teacher_map = teacher_outputs
        else:
            with torch.no_grad():
                teacher_logits = self.teacher(images)
            teacher_map = [self.teacher_features.output] if self.adapter is not None else []
        student_logits = student(images)
        loss = kd_loss(
            student_logits, teacher_logits, labels, self.alpha, self.temperature, self.divergence
        )
        if self.adapter is not None:
            loss = loss + self.feature_weight * self.feature_loss(teacher_map[0])
        return loss

    def close(self) -> None:
        """Remove the feature hooks so the student is left exactly as a plain model."""
        for capture in self.captures:
            capture.remove()
