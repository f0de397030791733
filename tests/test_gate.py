from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.errors import PipelineError
from stages.validate_teacher import validate_teacher


def _write_baseline(tmp_path: Path, accuracy: float, worst: float) -> Path:
    metrics = tmp_path / "baseline.json"
    per_class = {str(i): 0.99 for i in range(10)} | {"7": worst}
    metrics.write_text(json.dumps({"accuracy": accuracy, "per_class_accuracy": per_class}))
    return metrics


@pytest.mark.parametrize("accuracy, passes", [(0.951, True), (0.95, True), (0.9499, False)])
def test_accuracy_threshold(tmp_path: Path, accuracy: float, passes: bool) -> None:
    baseline, gate = _write_baseline(tmp_path, accuracy, 0.9), tmp_path / "gate.json"
    if passes:
        validate_teacher(0.95, 0.85, baseline, gate)
    else:
        with pytest.raises(
            PipelineError, match=r"test accuracy 0.9499 is below gate.min_accuracy 0.9500 by 0.01"
        ):
            validate_teacher(0.95, 0.85, baseline, gate)
    assert json.loads(gate.read_text())["passed"] is passes


@pytest.mark.parametrize("worst, passes", [(0.85, True), (0.8499, False)])
def test_class_threshold(tmp_path: Path, worst: float, passes: bool) -> None:
    baseline, gate = _write_baseline(tmp_path, 0.99, worst), tmp_path / "gate.json"
    if passes:
        validate_teacher(0.95, 0.85, baseline, gate)
    else:
        with pytest.raises(PipelineError, match="class '7' accuracy 0.8499"):
            validate_teacher(0.95, 0.85, baseline, gate)
    written = json.loads(gate.read_text())
    assert written["passed"] is passes and written["worst_class"] == "7"
