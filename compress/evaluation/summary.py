"""metrics/summary.json: the two dozen headline figures `dvc metrics show` and `dvc exp show`
print as one readable table (the shipped candidate, its size and speed against the teacher, its
accuracy and drop with the gate's bound, the other candidates' accuracy, the stage times). The
full figures stay in metrics/evaluate.json and the other stages' files, declared as plain outs."""

from __future__ import annotations

import json
from pathlib import Path

from compress.core import atomic
from compress.core.artifacts import REFERENCE_CANDIDATE, Artifacts

MIB = 2**20
# Each stage's duration as its metrics file records it: (catalogue entry, key).
STAGE_SECONDS = {
    "baseline": ("baseline_metrics", "train_seconds"),
    "distill": ("distill_metrics", "wall_seconds"),
    "prune": ("prune_metrics", "wall_seconds"),
    "quantize": ("quantize_metrics", "wall_seconds"),
}


def _points(fraction: float) -> float:
    return round(100 * fraction, 2)


def shipped_figures(name: str, result: dict, max_drop: float) -> dict:
    """The shipped (or, in a trial that shipped nothing, the stand-in) candidate's figures."""
    interval, ratios = result.get("drop_interval", {}), result["vs_teacher"]
    figures = {
        "candidate": name,
        "size_mib": round(result["size_bytes"] / MIB, 4),
        "x_smaller": ratios["size_x_smaller"],
        "x_faster_batch_1": ratios["latency_batch_1_x_faster"],
        "x_faster_batch_32": ratios.get("latency_batch_32_x_faster"),
        "latency_p50_batch_1_ms": round(result["latency"]["batch_1"]["p50_ms"], 4),
        "test_accuracy": round(result["accuracy"], 4),
    }
    if interval:
        figures |= {
            "drop_pt": _points(interval["drop"]),
            "drop_interval_low_pt": _points(interval["lower"]),
            "drop_interval_high_pt": _points(interval["upper"]),
            "drop_bound_pt": _points(interval["upper_one_sided"]),
        }
    return figures | {"gate_max_drop_pt": _points(max_drop)}


def stage_seconds(artifacts: Artifacts) -> dict[str, float]:
    """The stages that record their duration and ran: seconds, rounded."""
    seconds = {}
    for stage, (entry, key) in STAGE_SECONDS.items():
        path = getattr(artifacts, entry)
        value = json.loads(path.read_text()).get(key) if path.is_file() else None
        if value is not None:
            seconds[stage] = round(value, 1)
    return seconds


def summary(evaluation: dict, max_drop: float, artifacts: Artifacts) -> dict:
    """The headline figures from evaluate's own results and the stages' recorded times."""
    candidates, decision = evaluation["candidates"], evaluation["decision"]
    shipped = decision.get("shipped")
    described = shipped or decision.get("chosen") or REFERENCE_CANDIDATE
    teacher = candidates[REFERENCE_CANDIDATE]
    return {
        "shipped": shipped_figures(described, candidates[described], max_drop)
        | {"passed_gate": shipped is not None},
        "teacher": {
            "test_accuracy": round(teacher["accuracy"], 4),
            "size_mib": round(teacher["size_bytes"] / MIB, 4),
        },
        "test_accuracy": {
            name: round(result["accuracy"], 4)
            for name, result in candidates.items()
            if name not in (REFERENCE_CANDIDATE, described)
        },
        "test_images": next(
            (r["drop_interval"]["images"] for r in candidates.values() if "drop_interval" in r),
            None,
        ),
        "seconds": stage_seconds(artifacts),
    }


def write_summary(evaluation: dict, max_drop: float, artifacts: Artifacts) -> Path:
    atomic.write_json(artifacts.summary_metrics, summary(evaluation, max_drop, artifacts))
    return artifacts.summary_metrics
