"""The teacher gate decides on validation: a perfect test split never rescues a teacher that
misses the gate on validation (test is shown beside it, not deciding)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.config.gate import GateParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.steps.validate_teacher import validate_teacher

GATE = GateParams(min_accuracy=0.95, min_class_accuracy=0.85)


def _write_baseline(tmp_path: Path, accuracy: float, worst: float) -> Artifacts:
    artifacts = Artifacts(tmp_path)
    per_class = {str(i): 0.99 for i in range(10)} | {"7": worst}
    artifacts.baseline_metrics.parent.mkdir(parents=True, exist_ok=True)
    validation = {"accuracy": accuracy, "per_class_accuracy": per_class}
    test = {"accuracy": 1.0, "per_class_accuracy": {str(i): 1.0 for i in range(10)}}
    artifacts.baseline_metrics.write_text(json.dumps(test | {"validation": validation}))
    return artifacts


@pytest.mark.parametrize("accuracy, passes", [(0.951, True), (0.95, True), (0.9499, False)])
def test_accuracy_threshold(tmp_path: Path, accuracy: float, passes: bool) -> None:
    artifacts = _write_baseline(tmp_path, accuracy, 0.9)
    if passes:
        validate_teacher(GATE, artifacts)
    else:
        with pytest.raises(
            PipelineError,
            match=r"validation accuracy 0.9499 is below gate.min_accuracy 0.9500 by 0.01",
        ):
            validate_teacher(GATE, artifacts)
    assert json.loads(artifacts.teacher_gate.read_text())["passed"] is passes


@pytest.mark.parametrize("worst, passes", [(0.85, True), (0.8499, False)])
def test_class_threshold(tmp_path: Path, worst: float, passes: bool) -> None:
    artifacts = _write_baseline(tmp_path, 0.99, worst)
    if passes:
        validate_teacher(GATE, artifacts)
    else:
        with pytest.raises(PipelineError, match="class '7' validation accuracy 0.8499"):
            validate_teacher(GATE, artifacts)
    written = json.loads(artifacts.teacher_gate.read_text())
    assert written["passed"] is passes and written["worst_class"] == "7"
