"""The `search:` section: goals, objective, search space over the other sections' params and the
budget of the recipe search (flows/search.py). No stage reads it, so changing it reruns none."""

from __future__ import annotations

import difflib
import json
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, model_serializer, model_validator

from compress.config.section import Section
from compress.core.errors import PipelineError

# Sections a trial may change: the recipe, not the data, the orchestration or the search itself.
SEARCHABLE = ("teacher", "distill", "prune", "quantize", "evaluate")


class SearchDimension(Section):
    """A float or int range (`low`, `high`, optional `log`, `step`) or a list of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchDimension:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError("give choices, or low < high")
        return self

    @model_serializer
    def _as_written(self) -> dict[str, Any]:
        """As params.yaml writes it: only what is set."""
        fields = {"low": self.low, "high": self.high, "step": self.step, "choices": self.choices}
        return {k: v for k, v in fields.items() if v is not None} | (
            {"log": True} if self.log else {}
        )

    def is_int(self) -> bool:
        return self.choices is None and all(
            float(v).is_integer() for v in (self.low, self.high, self.step or 1)
        )

    def encoded_choices(self) -> list[str | float | int | bool | None]:
        """Optuna stores only scalars: lists and mappings travel as JSON text."""
        return [json.dumps(c) if isinstance(c, list | dict) else c for c in self.choices or []]


class SearchParams(Section):
    section: ClassVar[str] = "search"

    objective: Literal["smallest", "fastest", "most_accurate"] = "smallest"
    max_accuracy_drop: float = Field(0.01, ge=0.0, le=1.0)  # against the fp32 teacher, as evaluate
    min_x_smaller: float | None = Field(None, ge=1.0)
    min_x_faster_batch_1: float | None = Field(None, gt=0.0)
    space: dict[str, SearchDimension] = Field(
        default_factory=lambda: {
            "prune.target_ratio": SearchDimension(low=0.5, high=0.85),
            "prune.importance": SearchDimension(choices=["l1", "l2", "taylor"]),
            "quantize.keep_fp32": SearchDimension(choices=["auto", ["first_conv", "classifier"]]),
        }
    )
    max_trials: int = Field(12, ge=1, le=10_000)
    max_minutes: float = Field(240.0, gt=0.0)
    stop_when_goals_met: bool = False
    workers: int = Field(2, ge=1, le=64)
    work_pool: str = Field("compress-search", pattern=r"^[a-z0-9][a-z0-9-]*$")
    start_workers: bool = True  # false: workers already poll the pool (Docker, Kubernetes)
    seed: int = 0


def space_problems(search: SearchParams, sections: dict[str, Section]) -> list[str]:
    """Each `search.space` key must name a param of a searchable section, and each end of its
    range or each choice must be a valid value there (checked by that section's schema)."""
    if not search.space:
        return [
            "`search.space` is empty: give at least one param to search, e.g. "
            "`prune.target_ratio: {low: 0.5, high: 0.85}`."
        ]
    problems = []
    for path, dimension in search.space.items():
        section, *keys = path.split(".")
        if section not in SEARCHABLE or not keys:
            problems.append(
                f"`search.space` key '{path}' is not a param of a searchable section "
                f"({', '.join(SEARCHABLE)}), e.g. prune.target_ratio."
            )
            continue
        values = (
            dimension.choices if dimension.choices is not None else [dimension.low, dimension.high]
        )
        for value in values:
            problems += _value_problems(path, section, keys, value, sections[section])
    return list(dict.fromkeys(problems))  # an unknown key is reported once, not per value


def _value_problems(
    path: str, section: str, keys: list[str], value: Any, current: Section
) -> list[str]:
    tree = current.model_dump()
    node = tree
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            known = list(node) if isinstance(node, dict) else []
            close = difflib.get_close_matches(key, known, n=1)
            hint = (
                f" Did you mean '{'.'.join([section, *keys[:depth], close[0]])}'?" if close else ""
            )
            return [f"`search.space` key '{path}' is not a param.{hint}"]
        if depth == len(keys) - 1:
            node[key] = value
        node = node[key]
    try:
        type(current).model_validate(tree)
    except ValidationError as error:
        reason = error.errors()[0]["msg"]
        return [f"`search.space` '{path}' value {value!r} is not valid there: {reason}."]
    return []


def checked_search(params: Any, path: Any) -> SearchParams:
    """The `search` section of a loaded params file, its space checked against the other
    sections' schemas. Only the search checks it, so a space that does not fit today's recipe
    (e.g. `keep_fp32: auto` with `sensitivity: false`) never stops a stage."""
    sections = {name: getattr(params, name) for name in SEARCHABLE}
    problems = space_problems(params.search, sections)
    if problems:
        raise PipelineError(f"Invalid params in '{path}': " + " ".join(problems))
    return params.search
