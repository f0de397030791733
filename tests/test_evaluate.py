"""Decision rules on crafted inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from compress.evaluation.decision import (
    choose,
    closest_failure,
    gate_failures,
    pareto_front,
    promotion_decision,
)
from compress.evaluation.quality import expected_calibration_error
from compress.evaluation.uncertainty import paired_drop_interval


def test_ece_known_values() -> None:
    labels = np.array([0, 0, 1, 1])
    perfect = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, labels) == pytest.approx(0.0)
    # all predictions class 0 with confidence 0.8, half right: |0.5 - 0.8| = 0.3
    overconfident = np.tile([0.8, 0.2], (4, 1))
    assert expected_calibration_error(overconfident, labels) == pytest.approx(0.3)
    # two bins: conf 0.6 (1 of 2 right -> 0.1), conf 0.9 (2 of 2 right -> 0.1)
    mixed = np.array([[0.6, 0.4], [0.6, 0.4], [0.1, 0.9], [0.1, 0.9]])
    assert expected_calibration_error(mixed, np.array([0, 1, 1, 1])) == pytest.approx(0.1)


def test_pareto_front_known_answer() -> None:
    points = {
        "a": (0.99, 10.0),
        "b": (0.98, 5.0),
        "c": (0.97, 6.0),
        "d": (0.99, 12.0),
        "e": (0.95, 1.0),
    }
    assert sorted(pareto_front(points)) == ["a", "b", "e"]


def _candidate(accuracy: float, worst: float, ece: float, size: int, latency: float) -> dict:
    return {
        "accuracy": accuracy,
        "per_class_accuracy": {"0": worst, "1": accuracy},
        "ece": ece,
        "size_bytes": size,
        "latency": {"batch_1": {"p50_ms": latency}},
    }


REFERENCE = _candidate(0.99, 0.99, 0.01, 1000, 10.0)
CANDIDATES = {
    "small": _candidate(0.985, 0.97, 0.02, 10, 3.0),
    "fast": _candidate(0.984, 0.975, 0.02, 50, 1.0),
    "accurate": _candidate(0.99, 0.99, 0.01, 500, 8.0),
    "too_weak": _candidate(0.97, 0.95, 0.02, 5, 0.5),
}


@pytest.mark.parametrize(
    "objective, expected",
    [("smallest", "small"), ("fastest", "fast"), ("most_accurate", "accurate")],
)
def test_gate_and_objective_pick_the_right_candidate(objective: str, expected: str) -> None:
    failures = {n: gate_failures(c, REFERENCE, 0.01, 0.03, 0.02) for n, c in CANDIDATES.items()}
    assert set(failures["too_weak"]) == {"max_accuracy_drop", "max_class_drop"}
    assert choose(CANDIDATES, failures, objective) == expected


def test_no_candidate_passes_names_the_closest() -> None:
    failures = {
        n: gate_failures(c, REFERENCE, 0.001, 0.03, 0.02)
        for n, c in CANDIDATES.items()
        if n != "accurate"
    }
    assert choose({n: CANDIDATES[n] for n in failures}, failures, "smallest") is None
    name, criterion, amount = closest_failure(failures)
    assert (name, criterion) == ("small", "max_accuracy_drop")
    assert amount == pytest.approx(0.004)


def _model(accuracy: float, size: int, latency: float) -> dict:
    return {"accuracy": accuracy, "size_bytes": size, "latency": {"batch_1": {"p50_ms": latency}}}


@pytest.mark.parametrize(
    ("new", "production", "objective", "action", "why"),
    [
        (_model(0.90, 100, 1.0), None, "smallest", "promoted", "first model"),
        (_model(0.98, 90, 1.0), _model(0.99, 100, 1.0), "smallest", "promoted", "better on"),
        (_model(0.97, 90, 1.0), _model(0.99, 100, 1.0), "smallest", "kept", "less accurate"),
        (_model(0.99, 110, 1.0), _model(0.99, 100, 1.0), "smallest", "kept", "not better"),
        (_model(0.99, 110, 0.5), _model(0.99, 100, 1.0), "fastest", "promoted", "better on"),
        (_model(0.995, 200, 2.0), _model(0.99, 100, 1.0), "most_accurate", "promoted", "better"),
        (_model(0.99, 50, 0.1), _model(0.99, 100, 1.0), "most_accurate", "kept", "not better"),
    ],
)
def test_promotion_decision(new, production, objective, action, why) -> None:
    decided, reason = promotion_decision(new, production, objective, tolerance=0.01)
    assert decided == action
    assert why in reason


def _candidate(correct: np.ndarray, reference: np.ndarray) -> dict:
    return {
        "accuracy": float(correct.mean()),
        "per_class_accuracy": {"0": float(correct.mean())},
        "ece": 0.0,
        "drop_interval": paired_drop_interval(reference, correct, 0.95),
    }


def test_gate_with_confidence_takes_the_upper_bound_and_at_zero_the_point_rule() -> None:
    """A 2-image (0.56 pt) drop on 360 images passes a 1-pt gate on the point rule; its
    one-sided 95 % upper bound (about 1.1 pt) does not."""
    reference = np.ones(360, dtype=bool)
    candidate = reference.copy()
    candidate[:2] = False
    figures, teacher = _candidate(candidate, reference), _candidate(reference, reference)
    assert gate_failures(figures, teacher, 0.01, 1.0, 1.0) == {}
    assert gate_failures(figures, teacher, 0.01, 1.0, 1.0, confidence=0.0) == {}
    upper = figures["drop_interval"]["upper_one_sided"]
    assert upper > 0.01
    assert gate_failures(figures, teacher, 0.01, 1.0, 1.0, confidence=0.95) == {
        "max_accuracy_drop": pytest.approx(upper - 0.01)
    }


def test_promotion_with_confidence_keeps_a_model_that_may_be_worse() -> None:
    production_correct = np.ones(360, dtype=bool)
    new_correct = production_correct.copy()
    new_correct[:1] = False  # one image worse, and smaller
    new = {"accuracy": new_correct.mean(), "size_bytes": 10, "latency": {}}
    new["drop_vs_production"] = paired_drop_interval(production_correct, new_correct, 0.95)
    production = {"accuracy": 1.0, "size_bytes": 20, "latency": {}}
    assert promotion_decision(new, production, "smallest", 0.005)[0] == "promoted"
    action, reason = promotion_decision(new, production, "smallest", 0.005, confidence=0.95)
    assert action == "kept" and "upper 95% bound" in reason
