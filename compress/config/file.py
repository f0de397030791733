"""Reading params.yaml and checking sections of it against their schemas: every problem reported
at once, unknown keys and sections with the nearest valid name. A stage checks only the sections
it reads (so its DVC deps are those sections' schemas); `compress.config.params` checks the whole
file for the flows and `compress check-params`."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml
from pydantic import ValidationError

from compress.config.compute import ComputeParams
from compress.config.section import Section
from compress.core.errors import PipelineError

PARAMS_FILE = Path("params.yaml")
# Every section params.yaml may hold (tests/test_config.py keeps it equal to the whole schema).
SECTION_NAMES = (
    "data",
    "teacher",
    "gate",
    "benchmark",
    "distill",
    "prune",
    "quantize",
    "evaluate",
    "compute",
    "registry",
    "drift",
    "search",
)


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
        if section not in SECTION_NAMES:
            close = difflib.get_close_matches(str(section), SECTION_NAMES, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            problems.append(
                f"unknown section `{section}`.{hint} Valid sections: {', '.join(SECTION_NAMES)}."
            )
    return problems


def validate_sections(
    raw: dict, path: Path, models: dict[str, type[Section]]
) -> dict[str, Section]:
    """The named sections of a read params file with defaults filled in, or one error listing
    every problem (unknown sections included)."""
    problems = _unknown_sections(raw)
    sections = {}
    for name, model in models.items():
        try:
            sections[name] = model.model_validate(raw.get(name) or {})
        except ValidationError as error:
            problems += _explain(name, model, error)
    if problems:
        raise PipelineError(f"Invalid params in '{path}': " + " ".join(problems))
    return sections


def load_sections(*models: type[Section], path: Path = PARAMS_FILE) -> tuple[Section, ...]:
    """The sections a stage reads, each checked against its schema, in the order asked:
    `distill, data = load_sections(DistillParams, DataParams)`."""
    sections = validate_sections(read_params(path), path, {m.section: m for m in models})
    compute = sections.get(ComputeParams.section)
    if isinstance(compute, ComputeParams) and (problems := compute.batch_split_problems(sections)):
        raise PipelineError(f"Invalid params in '{path}': " + "; ".join(problems) + ".")
    return tuple(sections[model.section] for model in models)
