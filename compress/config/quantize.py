"""The `quantize:` section: PTQ, the layers kept in float, QAT and sparsity."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from compress.config.section import Section


class QATParams(Section):
    mode: Literal["always", "never", "auto"] = "always"
    epochs: int = Field(3, ge=0, le=1000)
    lr_scale: float = Field(0.1, gt=0.0, le=10.0)
    max_ptq_drop: float = Field(0.005, ge=0.0, le=1.0)
    max_grad_norm: float | None = Field(1.0, gt=0.0, le=1000.0)


class SparsityParams(Section):
    ratio: float = Field(0.0, ge=0.0, lt=1.0)


class QuantizeParams(Section):
    section: ClassVar[str] = "quantize"

    calibration_samples: int = Field(300, ge=10, le=100_000)
    # module names (or the aliases first_conv, classifier) kept in float, or `auto`: the fewest
    # most INT8-sensitive layers that bring INT8 within max_int8_drop of float on validation
    keep_fp32: list[str] | Literal["auto"] = "auto"
    max_int8_drop: float = Field(0.0, ge=0.0, le=1.0)
    # rank every layer by INT8 sensitivity (one PTQ per layer) even when nothing needs it
    sensitivity: bool = False
    sensitivity_top: int = Field(8, ge=1, le=10_000)  # layers auto measures by PTQ, when it ranks
    qat: QATParams = Field(default_factory=QATParams)
    sparsity: SparsityParams = Field(default_factory=SparsityParams)
    max_onnx_accuracy_gap: float = Field(0.01, ge=0.0, le=1.0)
    export_check_false_alarm: float = Field(0.01, gt=0.0, lt=1.0)
    seed: int = 0
