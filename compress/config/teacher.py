"""The `teacher:` section: the teacher's architecture, or its trained weights or ONNX file, and
how `baseline` trains it."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from compress.config.section import (
    KeptWeights,
    Section,
    StemAdaptation,
    model_reference,
    no_patience_with_last,
)


class TeacherParams(Section):
    section: ClassVar[str] = "teacher"

    arch: str = "resnet18"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    adapt_stem: StemAdaptation = "auto"
    checkpoint: str | None = None
    onnx: str | None = None  # a trained teacher as an ONNX file: measured as it is, never trained
    epochs: int = Field(30, ge=0, le=1000)
    patience: int | None = Field(None, ge=1, le=1000)  # early stopping on validation; null: off
    weights: KeptWeights = (
        "last"  # last: the whole schedule's final weights; best: best on validation
    )
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(0.025, gt=0.0, le=10.0)
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    warmup_epochs: int = Field(2, ge=0, le=1000)  # linear warm-up before the cosine decay
    # 0 by default: a teacher trained with smoothed labels distils worse (Mueller et al. 2019,
    # "When does label smoothing help?"): it erases the similarities between classes KD passes on
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    mixup_alpha: float = Field(0.0, ge=0.0, le=10.0)  # 0: off; with cutmix, one per batch
    cutmix_alpha: float = Field(0.0, ge=0.0, le=10.0)  # 0: off
    seed: int = 0

    @field_validator("arch")
    @classmethod
    def _reference(cls, value: str) -> str:
        return model_reference(value, "teacher.arch")

    @model_validator(mode="after")
    def _one_source(self) -> TeacherParams:
        if self.onnx and self.checkpoint:
            raise ValueError(
                "teacher.onnx and teacher.checkpoint both name a trained teacher; keep one "
                "(teacher.onnx: an ONNX file, teacher.checkpoint: a state dict for teacher.arch)"
            )
        no_patience_with_last(self.patience, self.weights, "teacher")
        return self
