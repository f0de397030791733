"""The distill stage on real digits with a two-epoch teacher and a few student epochs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from compress.config.data import AugmentParams
from compress.config.distill import DistillParams
from compress.config.params import load_params
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.models.checkpoints import load_model
from compress.steps.distill import distill

NO_FLIP = AugmentParams(crop_padding=1, horizontal_flip=False)


def _params(**changes) -> DistillParams:
    return DistillParams(**({"student": "mobilenet_v3_small", "epochs": 2} | changes))


def test_short_run_reports_distilled_and_control(baseline_copy: Artifacts) -> None:
    teacher_before = torch.load(baseline_copy.teacher_pt, weights_only=True)["state_dict"]
    metrics = distill(_params(feature={"weight": 0.5}), NO_FLIP, baseline_copy)
    written = json.loads(baseline_copy.distill_metrics.read_text())
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
    assert baseline_copy.student_onnx.stat().st_size > 0 and baseline_copy.control_onnx.is_file()
    student, payload = load_model(baseline_copy.student_pt)
    assert payload["arch"] == "mobilenet_v3_small" and not student.features._forward_hooks
    teacher_after = torch.load(baseline_copy.teacher_pt, weights_only=True)["state_dict"]
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher_after.items())
    curves = baseline_copy.distilled_plot.read_text().splitlines()
    assert curves[0] == "epoch,train_loss,val_accuracy" and len(curves) == 3


def test_control_off_is_skipped_with_a_note(baseline_copy: Artifacts) -> None:
    metrics = distill(_params(control=False, epochs=1), NO_FLIP, baseline_copy)
    assert "control" not in metrics
    assert (baseline_copy.control_dir / "skipped.txt").is_file()


def test_student_not_smaller_than_teacher_fails_before_training(baseline_copy: Artifacts) -> None:
    with pytest.raises(
        PipelineError, match=r"distill.student='resnet34'.*is not smaller than the teacher"
    ):
        distill(_params(student="resnet34"), NO_FLIP, baseline_copy)
    assert not baseline_copy.student_pt.exists()


def test_unknown_student_architecture(baseline_copy: Artifacts) -> None:
    with pytest.raises(PipelineError, match=r"distill.student='tinynet'.*Valid"):
        distill(_params(student="tinynet"), NO_FLIP, baseline_copy)


def test_missing_teacher_artifact(baseline_copy: Artifacts) -> None:
    baseline_copy.teacher_pt.unlink()
    with pytest.raises(PipelineError, match=r"Checkpoint '.*models/teacher.pt' not found"):
        distill(_params(), NO_FLIP, baseline_copy)


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
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"distill": changes}))
    with pytest.raises(PipelineError, match=f"`{culprit}`"):
        load_params(params_file)
