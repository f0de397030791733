"""The recipe search's decisions: Optuna's study (multi-objective TPE with the goals as
constraints, kept in a journal file so an interrupted search resumes), the params a trial
sets, what a trial's evaluation says against the goals, and the best trial across trials.

A trial's model is the best of the recipe's own candidates (distilled, pruned, quantized) that
meets the goals, by the objective; when none does, the one closest to the accuracy goal, so the
sampler still learns from it. Trials are ranked on the validation split (evaluate's selection
figures); the test figures are reported beside them and choose nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages.journal import JournalFileBackend, JournalStorage

from compress.config.search import SearchDimension, SearchParams
from compress.core import atomic
from compress.evaluation.decision import OBJECTIVES, pareto_front
from compress.evaluation.plots import trials_plot

RECIPE_CANDIDATES = ("distilled", "pruned", "quantized")
# Optuna minimises both: the accuracy drop and the objective's cost
COSTS = {
    "smallest": ("size_bytes", "ONNX size (bytes)"),
    "fastest": ("latency_p50_ms_batch_1", "p50 latency at batch 1 (ms)"),
    "most_accurate": ("size_bytes", "ONNX size (bytes)"),
}


def distributions(space: dict[str, SearchDimension]) -> dict[str, BaseDistribution]:
    result: dict[str, BaseDistribution] = {}
    for path, dimension in space.items():
        if dimension.choices is not None:
            result[path] = CategoricalDistribution(dimension.encoded_choices())
        elif dimension.is_int():
            step = int(dimension.step or 1)
            result[path] = IntDistribution(
                int(dimension.low), int(dimension.high), log=dimension.log, step=step
            )
        else:
            result[path] = FloatDistribution(
                dimension.low, dimension.high, log=dimension.log, step=dimension.step
            )
    return result


def overrides(trial_params: dict[str, Any], space: dict[str, SearchDimension]) -> dict[str, Any]:
    """The params a trial sets, decoded back from Optuna's scalars (lists travel as JSON)."""
    decoded = {}
    for path, value in trial_params.items():
        dimension = space[path]
        choices = dimension.choices
        decoded[path] = (
            value if choices is None else choices[dimension.encoded_choices().index(value)]
        )
    return decoded


def open_study(journal: Path, name: str, seed: int) -> optuna.Study:
    """The study in its journal file: created once, reloaded by every later run (resume)."""
    journal.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    sampler = optuna.samplers.TPESampler(seed=seed)  # reads the trials' constraints
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        directions=["minimize", "minimize"],
        load_if_exists=True,
    )


def candidate_figures(name: str, candidate: dict) -> dict[str, Any]:
    """A recipe candidate as the search ranks it: accuracy and drop on the validation split
    (evaluate's selection figures), size and speed; no test figure (the search confirms its
    best trial on test, once)."""
    versus, selection = candidate["vs_teacher"], candidate["selection"]
    return {
        "candidate": name,
        "accuracy": selection["accuracy"],
        "accuracy_drop": selection["drop_interval"]["drop"],
        "size_bytes": candidate["size_bytes"],
        "latency_p50_ms_batch_1": candidate["latency"]["batch_1"]["p50_ms"],
        "x_smaller": versus["size_x_smaller"],
        "x_faster_batch_1": versus["latency_batch_1_x_faster"],
    }


GOALS = ("max_accuracy_drop", "min_x_smaller", "min_x_faster_batch_1")


def violations(figures: dict[str, Any], search: SearchParams) -> list[float]:
    """Optuna's constraints, one per goal (in GOALS order): its shortfall relative to the goal,
    <= 0 when met (relative, because TPE adds them up and their units differ)."""
    drop_goal = max(search.max_accuracy_drop, 1e-3)
    smaller, faster = search.min_x_smaller or 0.0, search.min_x_faster_batch_1 or 0.0
    return [
        (figures["accuracy_drop"] - search.max_accuracy_drop) / drop_goal,
        (smaller - figures["x_smaller"]) / max(smaller, 1.0),
        (faster - figures["x_faster_batch_1"]) / max(faster, 1.0),
    ]


def trial_model(evaluation: dict, search: SearchParams) -> dict[str, Any]:
    """The trial's answer from its `metrics/evaluate.json`: figures, whether it meets the
    goals, and Optuna's two values (accuracy drop, cost)."""
    figures = [
        candidate_figures(name, evaluation["candidates"][name])
        for name in RECIPE_CANDIDATES
        if name in evaluation["candidates"]
    ]
    passing = [f for f in figures if max(violations(f, search)) <= 0]
    if passing:
        order = OBJECTIVES[search.objective]
        chosen = min(passing, key=lambda f: order(_as_candidate(f)))
    else:
        chosen = min(figures, key=lambda f: f["accuracy_drop"])
    cost_key, _ = COSTS[search.objective]
    return chosen | {
        "passes": bool(passing),
        "violations": violations(chosen, search),
        "values": [chosen["accuracy_drop"], chosen[cost_key]],
    }


def _as_candidate(figures: dict) -> dict:
    """The shape decision.OBJECTIVES reads."""
    return {
        "size_bytes": figures["size_bytes"],
        "accuracy": figures["accuracy"],
        "latency": {"batch_1": {"p50_ms": figures["latency_p50_ms_batch_1"]}},
    }


def best_trial(rows: list[dict], objective: str) -> dict | None:
    """Among finished trials that meet the goals, the best by the objective."""
    passing = [row for row in rows if row.get("passes")]
    if not passing:
        return None
    return min(passing, key=lambda row: OBJECTIVES[objective](_as_candidate(row)))


def trials_front(rows: list[dict], objective: str) -> list[str]:
    """Trials on the Pareto front of (accuracy, the objective's cost)."""
    cost_key, _ = COSTS[objective]
    return pareto_front({row["trial"]: (row["accuracy"], row[cost_key]) for row in rows})


# what the search adds to every trial's params: choose on validation, never stop on test
TRIAL_SETTINGS = {"evaluate.confirm_on_test": False}
CONFIRMATION_SETTINGS = {"evaluate.confirm_on_test": True}


def trial_summary(evaluation: dict) -> dict:
    """What a trial reports back through Prefect: the recipe candidates' selection figures,
    size and speed, and evaluate's decision; test figures only from a confirmation run."""
    candidates = evaluation["candidates"]
    decision = evaluation["decision"]
    summary = {
        "candidates": {
            name: {
                "size_bytes": candidate["size_bytes"],
                "latency": {"batch_1": candidate["latency"]["batch_1"]},
                "vs_teacher": {
                    key: candidate["vs_teacher"][key]
                    for key in ("size_x_smaller", "latency_batch_1_x_faster")
                },
                "selection": {
                    "accuracy": candidate["selection"]["accuracy"],
                    "drop_interval": {"drop": candidate["selection"]["drop_interval"]["drop"]},
                },
            }
            for name, candidate in candidates.items()
            if name in RECIPE_CANDIDATES
        },
        "decision": {key: decision[key] for key in ("chosen", "shipped", "summary")},
    }
    if decision.get("confirm_on_test", True) and decision["shipped"]:
        shipped = candidates[decision["shipped"]]
        summary["test"] = {
            "candidate": decision["shipped"],
            "accuracy": shipped["accuracy"],
            "accuracy_drop_points": shipped["vs_teacher"]["accuracy_drop_points"],
        }
    return summary


def confirmation_result(trial: int, experiment: str, record: dict | None, failure: str) -> dict:
    """The best trial's one reading of the test split: its params rerun with evaluate's
    confirmation (only evaluate reruns); `record` is None when that run failed (`failure`)."""
    result = {"trial": trial, "experiment": experiment}
    if record is None:
        return result | {"passes": False, "summary": failure}
    return result | {
        "passes": True,
        "summary": record["evaluation"]["decision"]["summary"],
        "test": record["evaluation"]["test"],
    }


def write_search_report(
    rows: list[dict], search: SearchParams, confirmation: dict | None, folder: Path
) -> dict | None:
    """trials.csv, trials.md (the table, the front, the best trial, its confirmation on test
    and how to apply it), pareto.png and best.json under `folder`. Returns the best trial's
    row with its confirmation."""
    best = best_trial(rows, search.objective)
    front = trials_front(rows, search.objective) if rows else []
    cost_key, cost_label = COSTS[search.objective]
    atomic.write_csv(folder / "trials.csv", [flat_row(row) for row in rows])
    trials_plot(rows, cost_key, cost_label, front, best and best["trial"], folder / "pareto.png")
    best = best and best | {"confirmation": confirmation}
    atomic.write_json(folder / "best.json", best)
    atomic.write_text(folder / "trials.md", search_markdown(rows, front, best, search))
    return best


def flat_row(row: dict) -> dict:
    return {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()}


def search_markdown(
    rows: list[dict], front: list[str], best: dict | None, search: SearchParams
) -> str:
    goals = [f"accuracy drop <= {search.max_accuracy_drop * 100:.2f} pt"]
    goals += [f"at least {search.min_x_smaller}x smaller"] if search.min_x_smaller else []
    goals += (
        [f"at least {search.min_x_faster_batch_1}x faster at batch 1"]
        if search.min_x_faster_batch_1
        else []
    )
    lines = [
        "# Recipe search",
        "",
        f"Goals: {', '.join(goals)}; objective: {search.objective}. {len(rows)} trials.",
        "",
        "Trials are ranked on the validation split; the test split is read once, to confirm "
        "the best trial.",
        "",
        "| trial | params | model | val accuracy | val drop (pt) | size (bytes) | x smaller | x faster b1 | stages run / skipped | passes | front |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in row["params"].items())
        lines.append(
            f"| {row['trial']} | {params} | {row['candidate']} | {row['accuracy']:.4f} | "
            f"{row['accuracy_drop'] * 100:.2f} | {row['size_bytes']:,} | {row['x_smaller']:.1f} | "
            f"{row['x_faster_batch_1']:.1f} | {len(row['stages_ran'])} / {len(row['stages_skipped'])} | "
            f"{'yes' if row['passes'] else 'no'} | {'*' if row['trial'] in front else ''} |"
        )
    lines += ["", *best_lines(best)]
    return "\n".join(lines) + "\n"


def best_lines(best: dict | None) -> list[str]:
    """The best trial, its confirmation on test and what to do next."""
    if not best:
        return ["No trial meets the goals."]
    lines = [
        f"**Best on validation: trial {best['trial']}** ({best['candidate']}, "
        f"{best['x_smaller']:.1f}x smaller, {best['x_faster_batch_1']:.1f}x faster at batch 1, "
        f"-{best['accuracy_drop'] * 100:.2f} pt on validation)."
    ]
    confirmation = best["confirmation"]
    if confirmation is None:
        return [*lines, "", "Not confirmed on test yet: run the search again to confirm it."]
    if not confirmation["passes"]:
        return [
            *lines,
            "",
            f"**Confirmation on test: fails** (experiment `{confirmation['experiment']}`): "
            f"{confirmation['summary']} Keep the current recipe, or widen the search.",
        ]
    test = confirmation["test"]
    return [
        *lines,
        "",
        f"**Confirmation on test: passes** ({test['candidate']}, test accuracy "
        f"{test['accuracy']:.4f}, -{test['accuracy_drop_points']:.2f} pt against the teacher): "
        f"{confirmation['summary']}",
        "",
        f"Bring it into the workspace with `dvc exp apply {confirmation['experiment']}`.",
    ]
