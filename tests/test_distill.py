"""The distill stage on real digits with a two-epoch teacher and a few student epochs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stages.config import DistillParams
from stages.distill import CONTROL_DIR, METRICS_FILE, STUDENT_CHECKPOINT, STUDENT_ONNX, distill
from stages.errors import PipelineError
from stages.models import load_model


def _params(**changes) -> DistillParams:
    return DistillParams(**({"student": "mobilenet_v3_small", "epochs": 2} | changes))


def test_short_run_reports_distilled_and_control(in_baseline: Path) -> None:
    teacher_before = torch.load("models/teacher.pt", weights_only=True)["state_dict"]
    metrics = distill("mobilenet_v3_small", _params(feature={"weight": 0.5}), 1, False)
    written = json.loads(METRICS_FILE.read_text())
    assert written["distilled"]["accuracy"] == metrics["distilled"]["accuracy"]
    for run in ("distilled", "control"):
        figures = written[run]
        assert 0.0 <= figures["accuracy"] <= 1.0 and 0.0 <= figures["teacher_agreement"] <= 1.0
        assert figures["mean_kl_to_teacher"] >= 0.0
        assert figures["params"] * 4 < written["teacher"]["params"]
        assert figures["macs"] * 4 < written["teacher"]["macs"]
    assert written["compression_vs_teacher"]["params_ratio"] > 4
    assert written["distillation_gain_points"] == pytest.approx(
        (written["distilled"]["accuracy"] - written["control"]["accuracy"]) * 100, abs=0.01
    )
    assert STUDENT_ONNX.stat().st_size > 0 and (CONTROL_DIR / "control.onnx").is_file()
    student, payload = load_model(STUDENT_CHECKPOINT)
    assert payload["arch"] == "mobilenet_v3_small" and not student.features._forward_hooks
    teacher_after = torch.load("models/teacher.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher_after.items())
    curves = Path("plots/distill/distilled.csv").read_text().splitlines()
    assert curves[0] == "epoch,train_loss,val_accuracy" and len(curves) == 3


def test_control_off_is_skipped_with_a_note(in_baseline: Path) -> None:
    metrics = distill("mobilenet_v3_small", _params(control=False, epochs=1), 1, False)
    assert "control" not in metrics
    assert (CONTROL_DIR / "skipped.txt").is_file()


def test_student_not_smaller_than_teacher_fails_before_training(in_baseline: Path) -> None:
    with pytest.raises(
        PipelineError, match=r"distill.student='resnet34'.*is not smaller than the teacher"
    ):
        distill("resnet34", _params(), 1, False)
    assert not STUDENT_CHECKPOINT.exists()


def test_unknown_student_architecture(in_baseline: Path) -> None:
    with pytest.raises(PipelineError, match=r"distill.student='tinynet'.*Valid"):
        distill("tinynet", _params(), 1, False)


def test_missing_teacher_artifact(in_baseline: Path) -> None:
    Path("models/teacher.pt").unlink()
    with pytest.raises(PipelineError, match=r"Checkpoint 'models/teacher.pt' not found"):
        distill("mobilenet_v3_small", _params(), 1, False)


@pytest.mark.parametrize(
    "changes, culprit",
    [
        ({"alpha": 1.5}, "distill.alpha"),
        ({"temperature": 0}, "distill.temperature"),
        ({"kd_loss": "js"}, "distill.kd_loss"),
        ({"temperature_schedule": "cosine"}, "distill.temperature_schedule"),
    ],
)
def test_bad_distill_params_name_the_key(tmp_path: Path, changes: dict, culprit: str) -> None:
    import yaml

    from stages.config import load

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"distill": changes}))
    with pytest.raises(PipelineError, match=f"`{culprit}`"):
        load("distill", DistillParams, params_file)
