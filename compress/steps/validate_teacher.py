"""Step `validate_teacher`: the quality gate. A teacher that is not good enough to distill from
stops the pipeline here, with the figure that failed and by how much. The gate decides on the
validation split (retraining until a gate passes must not tune the teacher to the test split,
which is read once per decision, to confirm); test accuracy is shown beside it."""

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
            f"validation accuracy {accuracy:.4f} is below gate.min_accuracy {min_accuracy:.4f} "
            f"by {(min_accuracy - accuracy) * 100:.2f} points"
        )
    for name, value in per_class_accuracy.items():
        if value < min_class_accuracy:
            failures.append(
                f"class '{name}' validation accuracy {value:.4f} is below gate.min_class_accuracy "
                f"{min_class_accuracy:.4f} by {(min_class_accuracy - value) * 100:.2f} points"
            )
    return failures


def validate_teacher(params: GateParams, artifacts: Artifacts) -> None:
    min_accuracy, min_class_accuracy = params.min_accuracy, params.min_class_accuracy
    metrics_file = artifacts.baseline_metrics
    if not metrics_file.is_file():
        raise PipelineError(f"'{metrics_file}' not found: run `dvc repro baseline` first.")
    baseline = json.loads(metrics_file.read_text())
    if "validation" not in baseline:
        raise PipelineError(
            f"'{metrics_file}' has no validation figures (written before the gate read them): "
            "run `dvc repro baseline`."
        )
    validation = baseline["validation"]
    failures = check_teacher(
        validation["accuracy"], validation["per_class_accuracy"], min_accuracy, min_class_accuracy
    )
    worst_class = min(validation["per_class_accuracy"].items(), key=lambda item: item[1])
    atomic.write_json(
        artifacts.teacher_gate,
        {
            "passed": not failures,
            "split": "val",
            "accuracy": validation["accuracy"],
            "test_accuracy": baseline["accuracy"],  # shown, not deciding
            "min_accuracy": min_accuracy,
            "worst_class": worst_class[0],
            "worst_class_accuracy": worst_class[1],
            "min_class_accuracy": min_class_accuracy,
            "failures": failures,
        },
    )
    if failures:
        raise PipelineError(
            "The teacher is too weak to distill from: " + "; ".join(failures) + f" (test "
            f"accuracy {baseline['accuracy']:.4f}, shown, not deciding). Train it longer "
            "(teacher.epochs), use a stronger teacher.arch or checkpoint, or lower the gate in "
            "params.yaml."
        )
    log.info(
        "Teacher passes the gate on validation: accuracy %.4f >= %.4f, worst class '%s' %.4f "
        ">= %.4f (test accuracy %.4f)",
        validation["accuracy"],
        min_accuracy,
        worst_class[0],
        worst_class[1],
        min_class_accuracy,
        baseline["accuracy"],
    )
