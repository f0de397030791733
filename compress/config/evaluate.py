"""The `evaluate:` section: the acceptance gate, the objective that picks the shipped model, the
runtimes and how latency is measured."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from compress.config.section import Section

Runtime = Literal["onnxruntime", "openvino"]


class AcceptanceGate(Section):
    max_accuracy_drop: float = Field(0.01, ge=0.0, le=1.0)
    max_class_drop: float = Field(0.03, ge=0.0, le=1.0)
    max_ece_increase: float = Field(0.02, ge=0.0, le=1.0)
    # 0: the point rule (observed drop <= max_accuracy_drop); e.g. 0.95: the one-sided 95 % upper
    # bound of the paired drop (Tango score interval) must be within max_accuracy_drop
    confidence: float = Field(0.0, ge=0.0, lt=1.0)
    # each class holds a tenth of a few hundred images, where one image moves its accuracy by
    # 2-3 pt: a class fails max_class_drop only when the one-sided lower bound of its paired drop
    # (Tango, Bonferroni over the classes) exceeds it, so a candidate as good as the reference
    # fails on some class in at most this share of evaluations; 0: the point rule per class
    class_false_alarm: float = Field(0.05, ge=0.0, lt=1.0)


class EvaluateParams(Section):
    section: ClassVar[str] = "evaluate"

    objective: Literal["smallest", "fastest", "most_accurate"] = "smallest"
    gate: AcceptanceGate = Field(default_factory=AcceptanceGate)
    extra_candidates: list[str] = Field(default_factory=list)
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8, 32], min_length=1)
    warmup_runs: int = Field(5, ge=0, le=1000)
    timed_runs: int = Field(50, ge=3, le=100_000)
    repeats: int = Field(5, ge=1, le=100)
    intra_op_threads: int = Field(2, ge=1, le=256)
    runtimes: list[Runtime] = Field(
        default_factory=lambda: ["onnxruntime", "openvino"], min_length=1
    )
    target_runtime: Runtime = "onnxruntime"  # whose figures the gate and the objective use
    # false in a search trial: the choice is made on validation alone and nothing stops the trial,
    # so the sampler learns from every recipe; the search confirms its best trial on test, once
    confirm_on_test: bool = True

    @model_validator(mode="after")
    def _target_among_runtimes(self) -> EvaluateParams:
        if self.target_runtime not in self.runtimes:
            raise ValueError(
                f"evaluate.target_runtime '{self.target_runtime}' must be one of "
                f"evaluate.runtimes {self.runtimes}"
            )
        return self
