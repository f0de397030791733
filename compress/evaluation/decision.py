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
    class_false_alarm: float = 0.0,
) -> dict[str, float]:
    """Criterion -> amount by which the candidate misses it (empty when it passes). With a
    confidence, the accuracy criterion takes the one-sided upper bound of the paired drop;
    with a class false-alarm rate, the class criterion takes each class's one-sided lower
    bound (a class fails only when it is surely worse than allowed, not by an image or two)."""
    accuracy_drop = (
        candidate["drop_interval"]["upper_one_sided"]
        if confidence > 0
        else reference["accuracy"] - candidate["accuracy"]
    )
    class_drop = (
        max(bounds["lower_one_sided"] for bounds in candidate["class_drop_intervals"].values())
        if class_false_alarm > 0
        else max(
            reference["per_class_accuracy"][name] - value
            for name, value in candidate["per_class_accuracy"].items()
        )
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


def _failures_against(
    figures: dict[str, dict], reference: str, gate: AcceptanceGate
) -> dict[str, dict[str, float]]:
    return {
        name: gate_failures(
            candidate,
            figures[reference],
            gate.max_accuracy_drop,
            gate.max_class_drop,
            gate.max_ece_increase,
            gate.confidence,
            gate.class_false_alarm,
        )
        for name, candidate in figures.items()
        if name != reference
    }


def _rule(gate: AcceptanceGate) -> str:
    bound = f"upper {gate.confidence:.0%} bound of the drop" if gate.confidence else "observed drop"
    class_bound = (
        f"a class's lower bound at {gate.class_false_alarm:.0%} false alarms"
        if gate.class_false_alarm
        else "a class's observed drop"
    )
    return (
        f"{bound}, max drop {gate.max_accuracy_drop * 100:.1f} pt, max class drop "
        f"{gate.max_class_drop * 100:.1f} pt ({class_bound}), max ECE increase "
        f"{gate.max_ece_increase}"
    )


def _miss(failures: dict[str, float]) -> str:
    criterion, amount = max(failures.items(), key=lambda item: item[1])
    in_points = criterion != "max_ece_increase"
    return f"evaluate.gate.{criterion} by {amount * 100 if in_points else amount:.3g}" + (
        " pt" if in_points else ""
    )


def gate_decision(
    selection: dict[str, dict],
    test: dict[str, dict],
    reference: str,
    gate: AcceptanceGate,
    objective: str,
    confirm_on_test: bool = True,
) -> dict:
    """Choose on validation, confirm on test. Every candidate but the reference goes through
    the acceptance gate on the selection (validation) figures and the objective picks among
    those that pass; only the chosen one is then judged on the test split, once, and ships
    only when it passes there too. Without `confirm_on_test` (a search trial) the test split
    judges nothing: the search confirms its best trial alone. The summary says which split
    decided what."""
    selection_failures = _failures_against(selection, reference, gate)
    chosen = choose({n: selection[n] for n in selection_failures}, selection_failures, objective)
    test_failures = (
        _failures_against({reference: test[reference], chosen: test[chosen]}, reference, gate)[
            chosen
        ]
        if chosen and confirm_on_test
        else {}
    )
    shipped = chosen if chosen and not test_failures else None
    passing = sum(not f for f in selection_failures.values())
    if chosen is None and not selection_failures:
        summary = "No candidate besides the reference: nothing to choose."
    elif chosen is None:
        name, _, _ = closest_failure(selection_failures)
        summary = (
            f"No candidate passes the gate on the validation split; the closest, '{name}', "
            f"misses {_miss(selection_failures[name])}."
        )
    elif test_failures:
        summary = (
            f"Chosen on validation: **{chosen}** (the {objective.replace('_', ' ')} of the "
            f"{passing} that pass there), but it fails the gate on the test split: misses "
            f"{_miss(test_failures)}. Nothing ships."
        )
    elif not confirm_on_test:
        summary = (
            f"Chosen on validation: **{chosen}** (the {objective.replace('_', ' ')} of the "
            f"{passing} that pass there); not judged on the test split (a search trial: the "
            "search confirms its best trial there, once)."
        )
    else:
        summary = (
            f"Shipped **{shipped}**: chosen on the validation split as the "
            f"{objective.replace('_', ' ')} of the {passing} candidates that pass the gate "
            f"there ({_rule(gate)}), and confirmed on the test split."
        )
    return {
        "objective": objective,
        "selection_split": "val",
        "chosen": chosen,
        "selection_failures": selection_failures,
        "test_failures": test_failures,
        "confirm_on_test": confirm_on_test,
        "shipped": shipped,
        "summary": summary,
    }
