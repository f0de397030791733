"""The README's headline results, generated from the committed `metrics/*.json` so that no figure
in it is typed by hand: the candidates `evaluate` measured, which one shipped, and the stage
times. A test compares the README's copy with what the metrics give."""

from __future__ import annotations

import json
from pathlib import Path

from compress.core import atomic
from compress.core.errors import PipelineError

START = "<!-- results-table:start -->"
END = "<!-- results-table:end -->"
REWRITE_COMMAND = "compress results-table --write"
MIB = 1024 * 1024
SPLIT_NAMES = {"val": "validation"}
# Each stage's duration as its metrics file records it: (file, key, what the figure covers).
STAGE_TIMES = [
    ("baseline.json", "train_seconds", "baseline (teacher training)"),
    ("distill.json", "wall_seconds", "distill (student and control)"),
    ("prune.json", "wall_seconds", "prune"),
    ("quantize.json", "wall_seconds", "quantize"),
]


def _read(metrics: Path, name: str) -> dict:
    path = metrics / name
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def _drop(result: dict) -> str:
    interval = result.get("drop_interval")
    if interval is None:
        return "reference"
    return f"{100 * interval['drop']:.2f} (≤ {100 * interval['upper_one_sided']:.2f})"


def candidate_rows(evaluation: dict) -> list[str]:
    """One row per candidate in evaluate's order; the shipped one in bold."""
    shipped = evaluation["decision"].get("shipped")
    rows = [
        "| candidate | test accuracy | drop vs teacher, pt (95 % bound) | size, MiB | x smaller "
        "| p50 batch 1, ms | x faster b1 | x faster b32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in evaluation["candidates"].items():
        ratios = result["vs_teacher"]
        label = f"**{name}** (shipped)" if name == shipped else name
        rows.append(
            f"| {label} | {100 * result['accuracy']:.2f} % | {_drop(result)} "
            f"| {result['size_bytes'] / MIB:.3f} | {ratios['size_x_smaller']:.1f} "
            f"| {result['latency']['batch_1']['p50_ms']:.3f} "
            f"| {ratios['latency_batch_1_x_faster']:.1f} "
            f"| {ratios['latency_batch_32_x_faster']:.1f} |"
        )
    return rows


def context_lines(evaluation: dict) -> list[str]:
    """What the table's figures mean: the split, the interval, the runtime and the machine."""
    decision, machine = evaluation["decision"], evaluation["machine"]
    candidates = evaluation["candidates"]
    interval = next(r["drop_interval"] for r in candidates.values() if "drop_interval" in r)
    runtime = next(iter(candidates.values()))["runtime"]
    shipped = decision.get("shipped") or "nothing"
    split = SPLIT_NAMES.get(decision["selection_split"], decision["selection_split"])
    objective = decision["objective"].replace("_", " ")
    return [
        f"Shipped: **{shipped}**, chosen on the {split} split as the {objective} candidate "
        f"that passes the gate, then confirmed on test. Test split: {interval['images']} "
        f"images; the bound is the one-sided {100 * interval['confidence']:.0f} % upper bound "
        f"of the paired drop ({interval['method']}). "
        f"Latency: {runtime} {machine[runtime]}, {machine['cpu']}, {machine['cores']} cores; "
        "ratios against the fp32 teacher in the same interleaved run.",
    ]


def stage_rows(metrics: Path) -> list[str]:
    """The stages that record their duration, in pipeline order."""
    rows = ["| stage | seconds |", "|---|---|"]
    for file, key, label in STAGE_TIMES:
        seconds = _read(metrics, file).get(key)
        if seconds is not None:
            rows.append(f"| {label} | {seconds:.1f} |")
    return rows


def results_table(metrics: Path) -> str:
    """The Markdown that goes between the README's markers."""
    evaluation = _read(metrics, "evaluate.json")
    if not evaluation:
        raise PipelineError(
            f"{metrics / 'evaluate.json'} is missing: run `dvc repro` (or `dvc pull`) first."
        )
    lines = candidate_rows(evaluation) + [""] + context_lines(evaluation)
    return "\n".join(lines + [""] + stage_rows(metrics))


def with_results_table(text: str, table: str) -> str:
    """`text` with what lies between the markers replaced by `table`."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise PipelineError(f"The README needs one '{START}' line followed by one '{END}' line.")
    before, rest = text.split(START)
    after = rest.split(END)[1]
    return f"{before}{START}\n{table}\n{END}{after}"


def write_results_table(readme: Path, metrics: Path) -> bool:
    """Rewrite the README's table from the metrics; False when it was already current."""
    text = readme.read_text()
    updated = with_results_table(text, results_table(metrics))
    if updated == text:
        return False
    atomic.write_text(readme, updated)
    return True
