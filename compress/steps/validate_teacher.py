"""Step `validate_teacher`: the quality gate. A teacher that is not good enough to distill from
stops the pipeline here, with the figure that failed and by how much."""

from __future__ import annotations

import json
import logging

from compress.config.gate import GateParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError

log = logging.getLogger(__name__)


def check_teacher(
    accuracy: float,
    per_class_accuracy: dict[str, float],
    min_accuracy: float,
    min_class_accuracy: float,
) -> list[str]:
    """The failed criteria, each a sentence with the shortfall; empty when the teacher passes."""
    failures = []
    if accuracy < min_accuracy:
        failures.append(
            f"test accuracy {accuracy:.4f} is below gate.min_accuracy {min_accuracy:.4f} "
            f"by {(min_accuracy - accuracy) * 100:.2f} points"
        )
    for name, value in per_class_accuracy.items():
        if value < min_class_accuracy:
            failures.append(
                f"class '{name}' accuracy {value:.4f} is below gate.min_class_accuracy "
                f"{min_class_accuracy:.4f} by {(min_class_accuracy - value) * 100:.2f} points"
            )
    return failures


def validate_teacher(params: GateParams, artifacts: Artifacts) -> None:
    min_accuracy, min_class_accuracy = params.min_accuracy, params.min_class_accuracy
    metrics_file = artifacts.baseline_metrics
    if not metrics_file.is_file():
        raise PipelineError(f"'{metrics_file}' not found: run `dvc repro baseline` first.")
    baseline = json.loads(metrics_file.read_text())
    failures = check_teacher(
        baseline["accuracy"], baseline["per_class_accuracy"], min_accuracy, min_class_accuracy
    )
    worst_class = min(baseline["per_class_accuracy"].items(), key=lambda item: item[1])
    atomic.write_json(
        artifacts.teacher_gate,
        {
            "passed": not failures,
            "accuracy": baseline["accuracy"],
            "min_accuracy": min_accuracy,
            "worst_class": worst_class[0],
            "worst_class_accuracy": worst_class[1],
            "min_class_accuracy": min_class_accuracy,
            "failures": failures,
        },
    )
    if failures:
        raise PipelineError(
            "The teacher is too weak to distill from: " + "; ".join(failures) + ". Train it longer "
            "(teacher.epochs), use a stronger teacher.arch or checkpoint, or lower the gate in params.yaml."
        )
    log.info(
        "Teacher passes the gate: accuracy %.4f >= %.4f, worst class '%s' %.4f >= %.4f",
        baseline["accuracy"],
        min_accuracy,
        worst_class[0],
        worst_class[1],
        min_class_accuracy,
    )
