"""The whole params.yaml, one attribute per section, checked at once with the rules across
sections: what the flows and `compress check-params` load. Stages load only their sections
(`compress.config.file.load_sections`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from compress.config.benchmark import BenchmarkParams
from compress.config.compute import ComputeParams
from compress.config.data import DataParams
from compress.config.distill import DistillParams
from compress.config.drift import DriftParams
from compress.config.evaluate import EvaluateParams
from compress.config.file import PARAMS_FILE, read_params, validate_sections
from compress.config.gate import GateParams
from compress.config.prune import PruneParams
from compress.config.quantize import QuantizeParams
from compress.config.registry import RegistryParams
from compress.config.search import SearchParams
from compress.config.section import Section
from compress.config.teacher import TeacherParams
from compress.core.errors import PipelineError


class Params(Section):
    """The whole params.yaml, one attribute per section."""

    data: DataParams = Field(default_factory=DataParams)
    teacher: TeacherParams = Field(default_factory=TeacherParams)
    gate: GateParams = Field(default_factory=GateParams)
    benchmark: BenchmarkParams = Field(default_factory=BenchmarkParams)
    distill: DistillParams = Field(default_factory=DistillParams)
    prune: PruneParams = Field(default_factory=PruneParams)
    quantize: QuantizeParams = Field(default_factory=QuantizeParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    compute: ComputeParams = Field(default_factory=ComputeParams)
    registry: RegistryParams = Field(default_factory=RegistryParams)
    drift: DriftParams = Field(default_factory=DriftParams)
    search: SearchParams = Field(default_factory=SearchParams)

    @model_validator(mode="after")
    def _batches_split_over_processes(self) -> Params:
        training = {"teacher": self.teacher, "distill": self.distill}
        problems = self.compute.batch_split_problems(training)
        if problems:
            raise ValueError("; ".join(problems))
        return self


SECTIONS: dict[str, type[Section]] = {
    name: field.annotation for name, field in Params.model_fields.items()
}


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Validate the whole params file, reporting every problem at once, and return it with the
    defaults filled in: a typo in any section fails before any work."""
    sections = validate_sections(read_params(path), path, SECTIONS)
    try:
        return Params(**sections)
    except ValidationError as error:  # a rule across sections
        problems = [problem["msg"].removeprefix("Value error, ") for problem in error.errors()]
        raise PipelineError(f"Invalid params in '{path}': " + "; ".join(problems) + ".") from error
