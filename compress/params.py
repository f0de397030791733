"""The params.yaml schema: one pydantic model per section, checked at the edge of every stage so
a typo or an out-of-range value fails before any work starts, naming the key and the fix.

Choices are `Literal`s (a test keeps them equal to the registries that implement them) and the
defaults are params.yaml's values (also tested), so this module imports no implementation: checking
a params file needs neither torch nor Prefect."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

# Names chosen through registries in the library (losses, pruning); a test keeps them equal.
TemperatureSchedule = Literal["constant", "linear"]
Divergence = Literal["forward_kl", "reverse_kl"]
Importance = Literal["l1", "l2", "bn_scale", "taylor", "random"]
Runtime = Literal["onnxruntime", "openvino"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AugmentParams(Section):
    crop_padding: int = Field(1, ge=0, le=64)
    horizontal_flip: bool = False


class DataParams(Section):
    source: Literal["digits", "imagefolder", "cifar10"] = "digits"
    path: str | None = None
    image_size: int | None = Field(None, ge=4, le=1024)  # None: the source's own size
    channels: Literal[1, 3] | None = None
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    calibration_size: int = Field(300, ge=10, le=100_000)
    class_balance_tolerance: float = Field(0.5, gt=0.0, le=1.0)
    max_bad_fraction: float = Field(0.01, ge=0.0, lt=1.0)
    min_per_class: int = Field(10, ge=1, le=1_000_000)
    augment: AugmentParams = Field(default_factory=AugmentParams)
    seed: int = 0

    @model_validator(mode="after")
    def _path_for_local_sources(self) -> DataParams:
        if self.source in ("imagefolder", "cifar10") and not self.path:
            raise ValueError(f"data.path is required when data.source is '{self.source}'")
        return self


StemAdaptation = Literal["auto", "never"]
TEACHER_STUDENT = "teacher"  # distill.student: the teacher itself, cut by Torch-Pruning
# `resnet18` / `torchvision:resnet18`, `timm:<name>`, or `package.module:factory`
MODEL_REFERENCE = re.compile(r"^((torchvision|timm):)?[\w.\-]+$|^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _model_reference(value: str, param: str) -> str:
    if not MODEL_REFERENCE.match(value):
        raise ValueError(
            f"{param} '{value}' is not a model reference: use a torchvision name (resnet18 or "
            "torchvision:resnet18), timm:<name> (e.g. timm:mobilenetv3_small_100), or "
            "package.module:factory for your own function returning an nn.Module"
        )
    return value


class TeacherParams(Section):
    arch: str = "resnet18"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    adapt_stem: StemAdaptation = "auto"
    checkpoint: str | None = None
    onnx: str | None = None  # a trained teacher as an ONNX file: measured as it is, never trained
    epochs: int = Field(15, ge=0, le=1000)
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(0.05, gt=0.0, le=10.0)
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    seed: int = 0

    @field_validator("arch")
    @classmethod
    def _reference(cls, value: str) -> str:
        return _model_reference(value, "teacher.arch")

    @model_validator(mode="after")
    def _one_source(self) -> TeacherParams:
        if self.onnx and self.checkpoint:
            raise ValueError(
                "teacher.onnx and teacher.checkpoint both name a trained teacher; keep one "
                "(teacher.onnx: an ONNX file, teacher.checkpoint: a state dict for teacher.arch)"
            )
        return self


class GateParams(Section):
    min_accuracy: float = Field(0.95, ge=0.0, le=1.0)
    min_class_accuracy: float = Field(0.85, ge=0.0, le=1.0)


class BenchmarkParams(Section):
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8, 32], min_length=1)
    warmup_runs: int = Field(5, ge=0, le=1000)
    timed_runs: int = Field(30, ge=3, le=100_000)
    intra_op_threads: int = Field(2, ge=1, le=256)


class FeatureKDParams(Section):
    weight: float = Field(0.0, ge=0.0, le=1000.0)
    teacher_layer: str = "layer4"
    student_layer: str = "features"


class DistillParams(Section):
    student: str = "mobilenet_v2"
    student_kwargs: dict[str, Any] = Field(default_factory=dict)
    adapt_stem: StemAdaptation = "auto"
    student_checkpoint: str | None = None  # warm start: a state dict under models/input/
    init_ratio: float = Field(0.5, gt=0.0, lt=1.0)  # student: teacher, share of MACs cut
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    temperature_schedule: TemperatureSchedule = "constant"
    temperature_start: float = Field(8.0, gt=0.0, le=100.0)
    temperature_end: float = Field(2.0, gt=0.0, le=100.0)
    kd_loss: Divergence = "forward_kl"
    feature: FeatureKDParams = Field(default_factory=FeatureKDParams)
    control: bool = True
    epochs: int = Field(30, ge=0, le=1000)
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(0.02, gt=0.0, le=10.0)
    lr_warmup_epochs: int = Field(3, ge=0, le=1000)
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    seed: int = 0

    @field_validator("student")
    @classmethod
    def _reference(cls, value: str) -> str:
        return value if value == TEACHER_STUDENT else _model_reference(value, "distill.student")

    @model_validator(mode="after")
    def _one_initialisation(self) -> DistillParams:
        if self.student == TEACHER_STUDENT and self.student_checkpoint:
            raise ValueError(
                "distill.student: teacher starts from the teacher's own cut weights; remove "
                "distill.student_checkpoint or name an architecture in distill.student"
            )
        return self

    def temperatures(self) -> tuple[float, float]:
        """(start, end) of the schedule; a constant schedule uses `temperature` throughout."""
        if self.temperature_schedule == "constant":
            return self.temperature, self.temperature
        return self.temperature_start, self.temperature_end


class PruneParams(Section):
    importance: Importance = "l1"
    target_ratio: float = Field(0.7, gt=0.0, lt=1.0)
    rounds: int = Field(4, ge=1, le=100)
    finetune_epochs: int = Field(10, ge=0, le=1000)
    lr_scale: float = Field(1.0, gt=0.0, le=10.0)
    global_pruning: bool = False
    max_layer_ratio: float = Field(0.8, gt=0.0, le=1.0)
    round_to: int | None = Field(8, ge=1, le=256)
    taylor_batches: int = Field(4, ge=1, le=1000)
    seed: int = 0


class QATParams(Section):
    mode: Literal["always", "never", "auto"] = "always"
    epochs: int = Field(3, ge=0, le=1000)
    lr_scale: float = Field(0.1, gt=0.0, le=10.0)
    max_ptq_drop: float = Field(0.005, ge=0.0, le=1.0)
    max_grad_norm: float | None = Field(1.0, gt=0.0, le=1000.0)


class SparsityParams(Section):
    ratio: float = Field(0.0, ge=0.0, lt=1.0)


class QuantizeParams(Section):
    calibration_samples: int = Field(300, ge=10, le=100_000)
    # module names (or the aliases first_conv, classifier) kept in float, or `auto`: the fewest
    # most INT8-sensitive layers that bring INT8 within max_int8_drop of float on validation
    keep_fp32: list[str] | Literal["auto"] = "auto"
    max_int8_drop: float = Field(0.0, ge=0.0, le=1.0)
    sensitivity: bool = True  # measure every layer's INT8 sensitivity (one PTQ per layer)
    qat: QATParams = Field(default_factory=QATParams)
    sparsity: SparsityParams = Field(default_factory=SparsityParams)
    max_onnx_accuracy_gap: float = Field(0.01, ge=0.0, le=1.0)
    seed: int = 0

    @model_validator(mode="after")
    def _auto_needs_sensitivity(self) -> QuantizeParams:
        if self.keep_fp32 == "auto" and not self.sensitivity:
            raise ValueError(
                "quantize.keep_fp32: auto chooses layers by their measured INT8 sensitivity; set "
                "quantize.sensitivity: true, or list the layers to keep in float"
            )
        return self


class AcceptanceGate(Section):
    max_accuracy_drop: float = Field(0.01, ge=0.0, le=1.0)
    max_class_drop: float = Field(0.03, ge=0.0, le=1.0)
    max_ece_increase: float = Field(0.02, ge=0.0, le=1.0)
    # 0: the point rule (observed drop <= max_accuracy_drop); e.g. 0.95: the one-sided 95 % upper
    # bound of the paired-bootstrap drop must be within max_accuracy_drop
    confidence: float = Field(0.0, ge=0.0, lt=1.0)


class EvaluateParams(Section):
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

    @model_validator(mode="after")
    def _target_among_runtimes(self) -> EvaluateParams:
        if self.target_runtime not in self.runtimes:
            raise ValueError(
                f"evaluate.target_runtime '{self.target_runtime}' must be one of "
                f"evaluate.runtimes {self.runtimes}"
            )
        return self


class ComputeParams(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when available, else CPU
    loader_workers: int = Field(0, ge=0, le=64)  # processes that read and augment batches
    nodes: int = Field(1, ge=1)  # machines training together (DDP launched by torchrun)
    processes_per_node: int = Field(1, ge=1)  # one per GPU, or CPU processes
    rendezvous: str | None = Field(None, pattern=r"^[^:\s]+:\d+$")  # host:port of node 0

    @model_validator(mode="after")
    def _rendezvous_for_nodes(self) -> ComputeParams:
        if self.nodes > 1 and self.rendezvous is None:
            raise ValueError(
                f"compute.nodes is {self.nodes}: set compute.rendezvous to 'host:port' of the "
                "first node, reachable from every node"
            )
        return self


class RegistryParams(Section):
    artifact: str = Field("shipped-model", pattern=r"^[a-z0-9][a-z0-9-]*$")
    stage: str = Field("prod", pattern=r"^[a-z0-9][a-z0-9-]*$")
    tolerance: float = Field(0.005, ge=0.0, le=1.0)
    schedule: str = "0 3 * * 1"
    timezone: str = "UTC"
    concurrency_limit: int = Field(1, ge=1, le=1)
    push: bool = True

    @model_validator(mode="after")
    def _valid_schedule(self) -> RegistryParams:
        """The cron grammar Prefect's scheduler uses (cronsim) and an IANA time zone."""
        try:
            CronSim(self.schedule, datetime.now(ZoneInfo(self.timezone)))
        except (CronSimError, ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(
                f"registry.schedule '{self.schedule}' / registry.timezone '{self.timezone}' is "
                f"not a valid cron schedule ({error}; e.g. '0 3 * * 1' and 'UTC')"
            ) from error
        return self


class DriftParams(Section):
    """How far new data may move from the data production was trained on (the update cycle)."""

    mean_tolerance: float = Field(0.05, gt=0.0, le=1.0)
    std_tolerance: float = Field(0.05, gt=0.0, le=1.0)
    class_share_tolerance: float = Field(0.05, gt=0.0, le=1.0)
    format_share_tolerance: float = Field(0.05, gt=0.0, le=1.0)
    accept: bool = False
