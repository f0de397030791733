"""Baseline step on real digits with one epoch: metrics, checkpoint round trip, bad checkpoints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from compress.config.data import AugmentParams
from compress.config.teacher import TeacherParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.loaders import load_info, load_split, normalize_tensor
from compress.models.builders import build_model
from compress.models.checkpoints import load_model
from compress.steps.baseline import baseline
from tests.conftest import (
    TINY_BENCH,
    check_latency_figures,
    check_per_class_accuracy,
    labelled_test_split,
    onnx_logits,
)
from tests.repos import PLAIN_TEACHER


def _run(
    artifacts: Artifacts, checkpoint: str | None = None, arch: str = "resnet18", epochs: int = 1
) -> dict:
    params = TeacherParams(arch=arch, checkpoint=checkpoint, epochs=epochs, **PLAIN_TEACHER)
    return baseline(params, AugmentParams(), TINY_BENCH, artifacts)


def _test_images(artifacts: Artifacts, count: int) -> torch.Tensor:
    info = load_info(artifacts.prepared_dir)
    return normalize_tensor(load_split("test", artifacts.prepared_dir)[0], info)[:count]


def test_metrics_have_every_field_with_sane_values(baseline_artifacts: Artifacts) -> None:
    metrics = json.loads(baseline_artifacts.baseline_metrics.read_text())
    assert set(metrics["per_class_accuracy"]) == {str(i) for i in range(10)}
    assert metrics["params"] == sum(
        p.numel() for p in build_model("resnet18", 10, 1, 8).parameters()
    )
    assert metrics["macs"] > metrics["params"]
    sizes = metrics["size_bytes"]
    assert sizes["state_dict_fp32"] >= metrics["params"] * 4
    onnx_bytes = baseline_artifacts.teacher_onnx.stat().st_size
    assert sizes["onnx_fp32"] == onnx_bytes > metrics["params"] * 4 * 0.95
    memory = metrics["memory"]["onnxruntime_batch_32"]
    assert memory["peak_rss_mb"] > memory["session_rss_delta_mb"] > sizes["onnx_fp32"] / 2**20 * 0.5


def test_accuracy_is_the_written_files_on_the_test_split(baseline_artifacts: Artifacts) -> None:
    """Recomputed from teacher.onnx in a plain ONNX Runtime session: the ONNX figure exactly,
    the torch figures (overall and per class) within one image of the file's."""
    metrics = json.loads(baseline_artifacts.baseline_metrics.read_text())
    images, labels = labelled_test_split(baseline_artifacts)
    predictions = onnx_logits(baseline_artifacts.teacher_onnx, images).argmax(axis=1)
    from_file = float(np.mean(predictions == labels))
    assert metrics["onnx_accuracy"] == from_file > 0.5  # a trained teacher, not chance (0.1)
    assert metrics["accuracy"] == pytest.approx(from_file, abs=1 / len(labels))
    check_per_class_accuracy(metrics["per_class_accuracy"], predictions, labels)


def test_latency_figures_are_consistent(baseline_artifacts: Artifacts) -> None:
    """Percentile order, throughput from the median latency, 32 images slower than one, and
    the headline throughput is the largest batch's."""
    latency = json.loads(baseline_artifacts.baseline_metrics.read_text())["latency"]
    for runtime in ("torch_eager", "onnxruntime"):
        for batch in TINY_BENCH.batch_sizes:
            check_latency_figures(latency[runtime][f"batch_{batch}"], batch)
        assert latency[runtime]["batch_32"]["p50_ms"] > latency[runtime]["batch_1"]["p50_ms"]
    check_latency_figures(latency["end_to_end_batch_1"], 1)
    throughput = json.loads(baseline_artifacts.baseline_metrics.read_text())["throughput_per_s"]
    assert throughput == {
        runtime: latency[runtime]["batch_32"]["throughput_per_s"]
        for runtime in ("torch_eager", "onnxruntime")
    }


def test_checkpoint_round_trips(baseline_artifacts: Artifacts) -> None:
    checkpoint = baseline_artifacts.teacher_pt
    model, payload = load_model(checkpoint)
    raw = torch.load(checkpoint, weights_only=True)
    assert payload["arch"] == "resnet18" and payload["input_shape"] == [1, 8, 8]
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, raw["state_dict"][key])
    images = _test_images(baseline_artifacts, 16)
    with torch.no_grad():
        first, second = model(images), load_model(checkpoint)[0](images)
    assert torch.equal(first, second)


def test_user_checkpoint_is_loaded_not_trained(
    baseline_artifacts: Artifacts, prepared_copy: Artifacts
) -> None:
    user_teacher = prepared_copy.teacher_input_dir / "teacher.pt"
    user_teacher.parent.mkdir(parents=True)
    shutil.copy(baseline_artifacts.teacher_pt, user_teacher)
    metrics = _run(prepared_copy, checkpoint="models/input/teacher.pt", epochs=50)
    reference = json.loads(baseline_artifacts.baseline_metrics.read_text())
    assert metrics["source"] == "checkpoint" and metrics["train_seconds"] == 0
    assert metrics["accuracy"] == reference["accuracy"]


def test_mismatched_checkpoint_is_a_clear_error(prepared_copy: Artifacts) -> None:
    wrong = prepared_copy.teacher_input_dir / "wrong.pt"
    wrong.parent.mkdir(parents=True)
    torch.save(build_model("resnet18", 7, 3, 32).state_dict(), wrong)
    with pytest.raises(
        PipelineError, match=r"Checkpoint '.*wrong.pt' does not fit a 'resnet18'.*shape mismatches"
    ):
        _run(prepared_copy, checkpoint=str(wrong))
    assert not prepared_copy.teacher_pt.exists() and not prepared_copy.baseline_metrics.exists()


def test_pickled_module_and_corrupt_checkpoint_are_refused(prepared_copy: Artifacts) -> None:
    root = prepared_copy.teacher_input_dir
    root.mkdir(parents=True)
    torch.save(build_model("resnet18", 10, 1, 8), root / "module.pt")
    (root / "corrupt.pt").write_bytes(b"not a checkpoint")
    for name in ("module.pt", "corrupt.pt", "missing.pt"):
        with pytest.raises(PipelineError, match=f"Checkpoint '.*{name}'"):
            _run(prepared_copy, checkpoint=str(root / name))
    assert not prepared_copy.teacher_pt.exists()


def test_a_checkpoint_outside_models_input_is_refused(
    baseline_artifacts: Artifacts, prepared_copy: Artifacts
) -> None:
    """DVC tracks models/input/ (baseline depends on it): a file elsewhere could change unseen."""
    with pytest.raises(PipelineError, match=r"teacher.checkpoint '.*' is outside models/input/"):
        _run(prepared_copy, checkpoint=str(baseline_artifacts.teacher_pt))
    assert not prepared_copy.teacher_pt.exists()


def test_unknown_architecture_lists_valid_names(prepared_copy: Artifacts) -> None:
    with pytest.raises(PipelineError, match=r"teacher.arch='resnet19'.*resnet18"):
        _run(prepared_copy, arch="resnet19")


def test_logits_match_between_torch_and_onnx(baseline_artifacts: Artifacts) -> None:
    model, _ = load_model(baseline_artifacts.teacher_pt)
    images = _test_images(baseline_artifacts, 32)
    session = ort.InferenceSession(
        str(baseline_artifacts.teacher_onnx), providers=["CPUExecutionProvider"]
    )
    onnx_logits = session.run(None, {"input": images.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(onnx_logits, model(images).numpy(), atol=1e-3)
