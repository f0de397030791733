"""The model-update cycle's promotion policy, accuracy first: against production, on the same
test images neither model trained on, a challenger that passed the acceptance gate replaces
production when it stays within the deployment budgets and is either more accurate (by at
least `registry.min_gain`) or non-inferior (at most `registry.tolerance` less accurate) and
better on the objective. With `registry.confidence` > 0 both accuracy clauses read the
one-sided upper bound of the paired drop (production minus challenger) instead of the observed
drop. Every decision names the clause that decided, with the figures, and says whether it is
close enough to call for a person (`registry.approval: when_uncertain`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from compress.config.registry import RegistryParams

Clause = Literal[
    "first_model",
    "over_budget",
    "more_accurate",
    "non_inferior_and_better",
    "non_inferior_not_better",
    "less_accurate",
]
EPSILON = 1e-9  # a drop of exactly the tolerance passes


@dataclass(frozen=True)
class Promotion:
    action: Literal["promoted", "kept"]
    clause: Clause
    reason: str
    uncertain: bool  # the deciding interval straddles its threshold, or a budget is close

    def as_record(self) -> dict:
        return asdict(self)


def budget_misses(new: dict, policy: RegistryParams) -> list[str]:
    """Each deployment budget the challenger exceeds, with its figure."""
    misses = []
    size, latency = new["size_bytes"], new["latency"]["batch_1"]["p50_ms"]
    if policy.max_size_bytes is not None and size > policy.max_size_bytes:
        misses.append(f"registry.max_size_bytes {policy.max_size_bytes} (it has {size})")
    if policy.max_latency_ms_batch_1 is not None and latency > policy.max_latency_ms_batch_1:
        misses.append(
            f"registry.max_latency_ms_batch_1 {policy.max_latency_ms_batch_1} "
            f"(p50 {latency:.3f} ms)"
        )
    return misses


def near_budget(new: dict, policy: RegistryParams) -> bool:
    """A figure within `registry.budget_margin` of its budget, on either side."""
    pairs = (
        (new["size_bytes"], policy.max_size_bytes),
        (new["latency"]["batch_1"]["p50_ms"], policy.max_latency_ms_batch_1),
    )
    return any(
        budget is not None and abs(value - budget) <= policy.budget_margin * budget
        for value, budget in pairs
    )


def _straddles(interval: dict, threshold: float) -> bool:
    return interval["lower"] <= threshold <= interval["upper"]


def promotion_decision(
    new: dict, production: dict | None, objective: str, policy: RegistryParams
) -> Promotion:
    """The policy's answer for a gate-passing challenger (`new`, with `drop_vs_production`: the
    paired interval on the same images) against production's figures."""
    close = near_budget(new, policy)
    misses = budget_misses(new, policy)
    if misses:
        return Promotion("kept", "over_budget", "over budget: " + "; ".join(misses), close)
    if production is None:
        return Promotion("promoted", "first_model", "first model: nothing is in production", close)
    interval = new["drop_vs_production"]
    drop = interval["upper_one_sided"] if policy.confidence else interval["drop"]
    measured = (
        f"{0.0 - interval['drop'] * 100:+.2f} pt observed, worst case {0.0 - drop * 100:+.2f} pt at "
        f"{policy.confidence:.0%} on {interval['images']} images"
        if policy.confidence
        else f"{0.0 - drop * 100:+.2f} pt on {interval['images']} images"
    )
    if drop < 0 and drop <= -policy.min_gain + EPSILON:
        return Promotion(
            "promoted",
            "more_accurate",
            f"more accurate than production: {measured} (registry.min_gain "
            f"{policy.min_gain * 100:.2f} pt)",
            close or _straddles(interval, -policy.min_gain),
        )
    near_tolerance = close or _straddles(interval, policy.tolerance)
    if drop > policy.tolerance + EPSILON:
        return Promotion(
            "kept",
            "less_accurate",
            f"less accurate than production beyond registry.tolerance "
            f"{policy.tolerance * 100:.2f} pt: {measured}",
            near_tolerance,
        )
    better, compared = objective_gain(new, production, objective, policy.min_objective_gain)
    if better:
        return Promotion(
            "promoted",
            "non_inferior_and_better",
            f"non-inferior ({measured}, registry.tolerance {policy.tolerance * 100:.2f} pt) and "
            f"better on '{objective}': {compared}",
            near_tolerance,
        )
    return Promotion(
        "kept",
        "non_inferior_not_better",
        f"non-inferior ({measured}) but not better on '{objective}': {compared}",
        near_tolerance,
    )


def objective_gain(
    new: dict, production: dict, objective: str, min_gain: float
) -> tuple[bool, str]:
    """Whether the challenger beats production on a cost objective, strictly and by at least
    the relative margin `min_gain`, and the comparison in words. Latency must also win in every timing round
    against production's best round (its measured spread). Under most_accurate, being better
    is the more_accurate clause (gain and confidence rules), never this one."""
    if objective == "smallest":
        new_size, old_size = new["size_bytes"], production["size_bytes"]
        gain = 1 - new_size / old_size
        words = f"{new_size} vs {old_size} bytes ({gain:+.1%}; registry.min_objective_gain {min_gain:.0%})"
        return gain > 0 and gain >= min_gain - EPSILON, words
    if objective == "fastest":
        new_b1, old_b1 = new["latency"]["batch_1"], production["latency"]["batch_1"]
        gain = 1 - new_b1["p50_ms"] / old_b1["p50_ms"]
        apart = max(new_b1["rounds_p50_ms"]) < min(old_b1["rounds_p50_ms"])
        words = (
            f"p50 {new_b1['p50_ms']:.4f} vs {old_b1['p50_ms']:.4f} ms at batch 1 ({gain:+.1%}; "
            f"registry.min_objective_gain {min_gain:.0%}; every round faster: {apart})"
        )
        return gain > 0 and gain >= min_gain - EPSILON and apart, words
    return False, "most_accurate decides on accuracy alone"
