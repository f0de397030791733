"""The distill stage on real digits with a two-epoch teacher and a few student epochs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.special import rel_entr, softmax

from compress.config.data import AugmentParams
from compress.config.distill import DistillParams
from compress.config.params import load_params
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.evaluation.uncertainty import lower_bound, paired_drop_interval
from compress.models.checkpoints import load_model
from compress.steps.distill import distill
from compress.steps.teacher_outputs import teacher_outputs
from tests.conftest import check_per_class_accuracy, labelled_test_split, onnx_logits

NO_FLIP = AugmentParams(crop_padding=1, horizontal_flip=False)


def _params(**changes) -> DistillParams:
    return DistillParams(**({"student": "mobilenet_v3_small", "epochs": 2} | changes))


@pytest.fixture(scope="module")
def distilled(baseline_artifacts: Artifacts, tmp_path_factory) -> tuple[Artifacts, dict, dict]:
    """One short distill run with the control, its returned metrics and the teacher's weights
    from before it."""
    artifacts = Artifacts(tmp_path_factory.mktemp("distill"))
    shutil.copytree(baseline_artifacts.root / "data", artifacts.root / "data")
    shutil.copytree(baseline_artifacts.root / "models", artifacts.root / "models")
    teacher_before = torch.load(artifacts.teacher_pt, weights_only=True)["state_dict"]
    params = _params(feature={"weight": 0.5})
    teacher_outputs(params, NO_FLIP, artifacts)  # now with the teacher's layer4 maps
    metrics = distill(params, NO_FLIP, artifacts)
    return artifacts, metrics, teacher_before


def test_short_run_reports_distilled_and_control(distilled: tuple[Artifacts, dict, dict]) -> None:
    artifacts, metrics, teacher_before = distilled
    written = json.loads(artifacts.distill_metrics.read_text())
    assert written["distilled"]["accuracy"] == metrics["distilled"]["accuracy"]
    for run in ("distilled", "control"):
        figures = written[run]
        assert figures["params"] * 4 < written["teacher"]["params"]
        assert figures["macs"] * 4 < written["teacher"]["macs"]
    assert written["compression_vs_teacher"]["params_ratio"] > 4
    assert written["distillation_gain_points"] == pytest.approx(
        (written["distilled"]["accuracy"] - written["control"]["accuracy"]) * 100, abs=0.01
    )
    student, payload = load_model(artifacts.student_pt)
    assert payload["arch"] == "mobilenet_v3_small" and not student.features._forward_hooks
    teacher_after = torch.load(artifacts.teacher_pt, weights_only=True)["state_dict"]
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher_after.items())
    curves = artifacts.distilled_plot.read_text().splitlines()
    assert curves[0] == "epoch,train_loss,val_accuracy" and len(curves) == 3


def _mean_kl(teacher_logits: np.ndarray, logits: np.ndarray) -> float:
    """KL(p_teacher || p_model) averaged over images, from scipy's elementwise relative
    entropy: a reference written apart from the pipeline's own log-softmax formula."""
    p_teacher = softmax(teacher_logits.astype(np.float64), axis=1)
    p_model = softmax(logits.astype(np.float64), axis=1)
    return float(rel_entr(p_teacher, p_model).sum(axis=1).mean())


def test_figures_are_the_written_files_on_the_test_split(
    distilled: tuple[Artifacts, dict, dict],
) -> None:
    """Accuracy, agreement with the teacher and KL to it, recomputed from student.onnx,
    control.onnx and teacher.onnx in plain ONNX Runtime sessions; the stage measured its torch
    models, so accuracy and agreement may differ by one image, the KL by float rounding."""
    artifacts, _, _ = distilled
    written = json.loads(artifacts.distill_metrics.read_text())
    images, labels = labelled_test_split(artifacts)
    one_image = 1 / len(labels)
    teacher = onnx_logits(artifacts.teacher_onnx, images)
    assert written["teacher"]["accuracy"] == pytest.approx(
        np.mean(teacher.argmax(axis=1) == labels), abs=one_image
    )
    check_per_class_accuracy(
        written["teacher"]["per_class_accuracy"], teacher.argmax(axis=1), labels
    )
    assert _mean_kl(teacher, teacher) == pytest.approx(0.0, abs=1e-12)
    for run, path in (("distilled", artifacts.student_onnx), ("control", artifacts.control_onnx)):
        logits, figures = onnx_logits(path, images), written[run]
        accuracy = np.mean(logits.argmax(axis=1) == labels)
        agreement = np.mean(logits.argmax(axis=1) == teacher.argmax(axis=1))
        kl = _mean_kl(teacher, logits)
        assert figures["accuracy"] == pytest.approx(accuracy, abs=one_image), run
        check_per_class_accuracy(figures["per_class_accuracy"], logits.argmax(axis=1), labels)
        assert figures["teacher_agreement"] == pytest.approx(agreement, abs=one_image), run
        assert kl > 0.01 and figures["mean_kl_to_teacher"] == pytest.approx(kl, rel=1e-3), run


def test_distillation_transfers_what_the_teacher_knows(baseline_copy: Artifacts) -> None:
    """Pure distillation (alpha 0: the KD term alone) against the control trained on labels,
    same student, seed and batches, on the test images this deliberately weak two-epoch
    teacher gets wrong: there the labels and the teacher disagree, so only a student that
    learned from the teacher repeats its answers. (Agreement over all images mixes in what
    both learn from the data, and which way it leans rested on one split.) Dropping the KD
    term leaves the student untrained; flipping its sign pushes it away from the teacher."""
    params = _params(
        student="tests.factories:tiny_cnn", alpha=0.0, epochs=6, lr_warmup_epochs=0, patience=None
    )
    distill(params, NO_FLIP, baseline_copy)
    images, labels = labelled_test_split(baseline_copy)
    teacher = onnx_logits(baseline_copy.teacher_onnx, images).argmax(axis=1)
    wrong = teacher != labels
    repeats = {
        name: onnx_logits(path, images[wrong]).argmax(axis=1) == teacher[wrong]
        for name, path in (
            ("distilled", baseline_copy.student_onnx),
            ("control", baseline_copy.control_onnx),
        )
    }
    # paired over the same images: the distilled student's share of repeated teacher answers
    # exceeds the control's beyond chance (one-sided 95 % Tango bound above 0)
    more = paired_drop_interval(repeats["distilled"], repeats["control"])
    print(
        f"\nteacher wrong on {wrong.sum()} of {len(labels)} test images; its answer repeated "
        f"there: distilled {repeats['distilled'].mean():.3f}, control "
        f"{repeats['control'].mean():.3f}; lower bound of the difference "
        f"{lower_bound(more, 0.95):.3f}"
    )
    assert wrong.sum() >= 30  # enough disagreements for the comparison to mean something
    assert lower_bound(more, 0.95) > 0


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
