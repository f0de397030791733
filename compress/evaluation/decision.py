"""The evaluation's decision rules: Pareto frontiers and the acceptance gate with its objective."""

from __future__ import annotations

from collections.abc import Callable

from compress.config.evaluate import AcceptanceGate

# objective name -> key that orders passing candidates (smaller is better)
OBJECTIVES: dict[str, Callable[[dict], float]] = {
    "smallest": lambda c: c["size_bytes"],
    "fastest": lambda c: c["latency"]["batch_1"]["p50_ms"],
    "most_accurate": lambda c: -c["accuracy"],
}


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names whose (accuracy, cost) no other point beats: at least as accurate and as cheap,
    and strictly better in one."""
    front = []
    for name, (accuracy, cost) in points.items():
        dominated = any(
            other_acc >= accuracy
            and other_cost <= cost
            and (other_acc > accuracy or other_cost < cost)
            for other, (other_acc, other_cost) in points.items()
            if other != name
        )
        if not dominated:
            front.append(name)
    return front


def gate_failures(
    candidate: dict,
    reference: dict,
    max_accuracy_drop: float,
    max_class_drop: float,
    max_ece_increase: float,
    confidence: float = 0.0,
) -> dict[str, float]:
    """Criterion -> amount by which the candidate misses it (empty when it passes). With a
    confidence, the accuracy criterion takes the one-sided upper bound of the paired drop."""
    accuracy_drop = (
        candidate["drop_interval"]["upper_one_sided"]
        if confidence > 0
        else reference["accuracy"] - candidate["accuracy"]
    )
    class_drop = max(
        reference["per_class_accuracy"][name] - value
        for name, value in candidate["per_class_accuracy"].items()
    )
    ece_increase = candidate["ece"] - reference["ece"]
    failures = {}
    if accuracy_drop > max_accuracy_drop + 1e-12:
        failures["max_accuracy_drop"] = accuracy_drop - max_accuracy_drop
    if class_drop > max_class_drop + 1e-12:
        failures["max_class_drop"] = class_drop - max_class_drop
    if ece_increase > max_ece_increase + 1e-12:
        failures["max_ece_increase"] = ece_increase - max_ece_increase
    return failures


def choose(
    candidates: dict[str, dict], failures: dict[str, dict[str, float]], objective: str
) -> str | None:
    """The best passing candidate by the objective, or None."""
    passing = [name for name in candidates if not failures[name]]
    if not passing:
        return None
    return min(passing, key=lambda name: OBJECTIVES[objective](candidates[name]))


def closest_failure(failures: dict[str, dict[str, float]]) -> tuple[str, str, float]:
    """(candidate, criterion, shortfall) of the candidate that misses the gate by the least."""
    name = min(failures, key=lambda n: sum(failures[n].values()))
    criterion, amount = max(failures[name].items(), key=lambda item: item[1])
    return name, criterion, amount


def promotion_decision(
    new: dict, production: dict | None, objective: str, tolerance: float, confidence: float = 0.0
) -> tuple[str, str]:
    """("promoted" | "kept", why) for a gate-passing new model against the one in production:
    promote when it is at most `tolerance` less accurate (with a confidence: the one-sided upper
    bound of its paired drop on the same images) and strictly better on the objective."""
    if production is None:
        return "promoted", "first model: nothing is in production yet"
    drop = (
        new["drop_vs_production"]["upper_one_sided"]
        if confidence > 0
        else production["accuracy"] - new["accuracy"]
    )
    if drop > tolerance + 1e-9:  # a drop of exactly the tolerance is allowed
        measured = (
            f"up to {drop * 100:.2f} pt (upper {confidence:.0%} bound)"
            if confidence > 0
            else f"{drop * 100:.2f} pt"
        )
        return "kept", (
            f"the new model is {measured} less accurate than production on the same images "
            f"(tolerance {tolerance * 100:.2f} pt)"
        )
    new_cost, production_cost = OBJECTIVES[objective](new), OBJECTIVES[objective](production)
    if new_cost < production_cost:
        return "promoted", f"better on '{objective}': {new_cost:g} vs {production_cost:g}"
    return "kept", f"not better on '{objective}': {new_cost:g} vs {production_cost:g} in production"


def gate_decision(
    results: dict[str, dict], reference: str, gate: AcceptanceGate, objective: str
) -> dict:
    """Every candidate but the reference through the acceptance gate; the best passing one by
    the objective is shipped. The summary says why, or which candidate came closest and what
    it missed by."""
    failures = {
        name: gate_failures(
            figures,
            results[reference],
            gate.max_accuracy_drop,
            gate.max_class_drop,
            gate.max_ece_increase,
            gate.confidence,
        )
        for name, figures in results.items()
        if name != reference
    }
    shipped = choose({n: results[n] for n in failures}, failures, objective)
    if shipped:
        rule = (
            f"upper {gate.confidence:.0%} bound of the drop"
            if gate.confidence > 0
            else "observed drop"
        )
        summary = (
            f"Shipped **{shipped}**: passes the gate ({rule}, max drop {gate.max_accuracy_drop * 100:.1f} pt, "
            f"max class drop {gate.max_class_drop * 100:.1f} pt, max ECE increase {gate.max_ece_increase}) "
            f"and is the {objective.replace('_', ' ')} of the "
            f"{sum(not f for f in failures.values())} that pass."
        )
    else:
        name, criterion, amount = (
            closest_failure(failures) if failures else (reference, "none", 0.0)
        )
        in_points = criterion != "max_ece_increase"
        summary = (
            f"No candidate passes the gate; the closest, '{name}', misses evaluate.gate.{criterion} "
            f"by {amount * 100 if in_points else amount:.3g}{' pt' if in_points else ''}."
        )
    return {
        "objective": objective,
        "shipped": shipped,
        "gate_failures": failures,
        "summary": summary,
    }
