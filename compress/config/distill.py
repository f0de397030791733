"""The `distill:` section: the student, the distillation objective and its training run (read
by `distill`, and by `prune` and `quantize`, which fine-tune with the same objective)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from compress.config.section import (
    KeptWeights,
    Section,
    StemAdaptation,
    model_reference,
    no_patience_with_last,
)

# Names chosen through registries in the library (losses, pruning); a test keeps them equal.
TemperatureSchedule = Literal["constant", "linear"]

Divergence = Literal["forward_kl", "reverse_kl", "decoupled"]

TEACHER_STUDENT = "teacher"  # distill.student: the teacher itself, cut by Torch-Pruning
AUTO_STUDENT = "auto"  # the teacher cut when it can be, else FALLBACK_STUDENT
FALLBACK_STUDENT = "mobilenet_v2"
ALL_VIEWS = "all"  # distill.teacher_views: every view the augmentation can draw


class FeatureKDParams(Section):
    weight: float = Field(0.0, ge=0.0, le=1000.0)
    teacher_layer: str = "layer4"
    student_layer: str = "features"


class DistillParams(Section):
    section: ClassVar[str] = "distill"

    student: str = AUTO_STUDENT
    student_kwargs: dict[str, Any] = Field(default_factory=dict)
    adapt_stem: StemAdaptation = "auto"
    student_checkpoint: str | None = None  # warm start: a state dict under models/input/
    init_ratio: float = Field(0.95, gt=0.0, lt=1.0)  # student: teacher, share of MACs cut
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    temperature_schedule: TemperatureSchedule = "constant"
    temperature_start: float = Field(8.0, gt=0.0, le=100.0)
    temperature_end: float = Field(2.0, gt=0.0, le=100.0)
    kd_loss: Divergence = "forward_kl"
    # kd_loss: decoupled, the weight of the KL among the non-target classes
    dkd_beta: float = Field(8.0, ge=0.0, le=1000.0)
    feature: FeatureKDParams = Field(default_factory=FeatureKDParams)
    control: bool = True
    # augmented views per training image whose teacher outputs stage `teacher_outputs` stores
    # once; training picks one per image and epoch. "all": every view data.augment can draw;
    # a count: that many of them per image; None: fresh views, the teacher runs live
    teacher_views: Annotated[int, Field(ge=1, le=1024)] | Literal["all"] | None = ALL_VIEWS
    epochs: int = Field(30, ge=0, le=1000)
    patience: int | None = Field(None, ge=1, le=1000)  # early stopping on validation; null: off
    weights: KeptWeights = "last"  # as teacher.weights (student and control)
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(0.02, gt=0.0, le=10.0)
    lr_warmup_epochs: int = Field(3, ge=0, le=1000)
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    seed: int = 0

    @field_validator("student")
    @classmethod
    def _reference(cls, value: str) -> str:
        if value in (TEACHER_STUDENT, AUTO_STUDENT):
            return value
        return model_reference(value, "distill.student")

    @model_validator(mode="after")
    def _one_initialisation(self) -> DistillParams:
        if self.student in (TEACHER_STUDENT, AUTO_STUDENT) and self.student_checkpoint:
            raise ValueError(
                f"distill.student: {self.student} may start from the teacher's own cut weights; "
                "remove distill.student_checkpoint or name the architecture its weights are for "
                "in distill.student"
            )
        no_patience_with_last(self.patience, self.weights, "distill")
        return self

    def temperatures(self) -> tuple[float, float]:
        """(start, end) of the schedule; a constant schedule uses `temperature` throughout."""
        if self.temperature_schedule == "constant":
            return self.temperature, self.temperature
        return self.temperature_start, self.temperature_end
