"""Reading and checking the params file against the schema in `compress.params`: every problem
of every section reported at once, unknown keys and sections with the nearest valid name."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from compress.errors import PipelineError
from compress.params import (
    BenchmarkParams,
    ComputeParams,
    DataParams,
    DistillParams,
    DriftParams,
    EvaluateParams,
    GateParams,
    PruneParams,
    QuantizeParams,
    RegistryParams,
    Section,
    TeacherParams,
)
from compress.search_params import SearchParams

PARAMS_FILE = Path("params.yaml")


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
        """Each data-parallel process takes an equal share of every training batch."""
        world = self.compute.nodes * self.compute.processes_per_node
        for name, batch in (
            ("teacher.batch_size", self.teacher.batch_size),
            ("distill.batch_size", self.distill.batch_size),
        ):
            if batch % world:
                raise ValueError(
                    f"{name}={batch} cannot be split evenly over the {world} training processes "
                    "(compute.nodes x compute.processes_per_node); make it a multiple of them"
                )
        return self


SECTIONS: dict[str, type[Section]] = {
    name: field.annotation for name, field in Params.model_fields.items()
}


def read_params(path: Path = PARAMS_FILE) -> dict:
    if not path.exists():
        raise PipelineError(f"'{path}' not found: run the stage from the repository root.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise PipelineError(f"'{path}' is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise PipelineError(
            f"'{path}' must hold a mapping of sections, found {type(raw).__name__}."
        )
    return raw


def _explain(section: str, model: type[Section], error: ValidationError) -> list[str]:
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in (section, *problem["loc"]))
        if problem["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(problem["loc"][-1]), model.model_fields, n=1)
            hint = f" Did you mean `{section}.{close[0]}`?" if close else ""
            valid = ", ".join(model.model_fields)
            lines.append(f"unknown key `{key}`.{hint} Valid keys: {valid}.")
        elif problem["loc"]:
            lines.append(f"`{key}` = {problem.get('input')!r}: {problem['msg']}.")
        else:
            lines.append(f"`{section}`: {problem['msg']}.")
    return lines


def _unknown_sections(raw: dict) -> list[str]:
    problems = []
    for section in raw:
        if section not in SECTIONS:
            close = difflib.get_close_matches(str(section), SECTIONS, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            problems.append(
                f"unknown section `{section}`.{hint} Valid sections: {', '.join(SECTIONS)}."
            )
    return problems


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Validate the whole params file, reporting every problem at once, and return it with the
    defaults filled in: a typo in any section fails before any work."""
    raw = read_params(path)
    problems = _unknown_sections(raw)
    sections = {}
    for name, model in SECTIONS.items():
        try:
            sections[name] = model.model_validate(raw.get(name) or {})
        except ValidationError as error:
            problems += _explain(name, model, error)
    if problems:
        raise PipelineError(f"Invalid params in '{path}': " + " ".join(problems))
    try:
        return Params(**sections)
    except ValidationError as error:  # a rule across sections
        problems = [problem["msg"].removeprefix("Value error, ") for problem in error.errors()]
        raise PipelineError(f"Invalid params in '{path}': " + "; ".join(problems) + ".") from error
