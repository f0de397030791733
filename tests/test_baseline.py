"""Baseline stage on real digits with one epoch: metrics, checkpoint round trip, bad checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.baseline import METRICS_FILE, TEACHER_CHECKPOINT, TEACHER_ONNX, baseline
from stages.config import AugmentParams
from stages.data import load_info, normalized_dataset
from stages.errors import PipelineError
from stages.models import build_model, load_model
from tests.conftest import TINY_BENCH


def _run(checkpoint: str | None = None, arch: str = "resnet18", epochs: int = 1) -> dict:
    return baseline(
        arch=arch,
        checkpoint=checkpoint,
        epochs=epochs,
        batch_size=64,
        lr=0.05,
        weight_decay=5e-4,
        seed=0,
        augment=AugmentParams(),
        bench=TINY_BENCH,
    )


@pytest.fixture
def trained(baseline_workdir: Path) -> Path:
    return baseline_workdir


def test_metrics_have_every_field_with_sane_values(trained: Path) -> None:
    metrics = json.loads((trained / METRICS_FILE).read_text())
    assert 0.5 < metrics["accuracy"] <= 1.0
    assert set(metrics["per_class_accuracy"]) == {str(i) for i in range(10)}
    assert metrics["onnx_accuracy"] == pytest.approx(metrics["accuracy"], abs=1 / 360)
    assert metrics["params"] == sum(
        p.numel() for p in build_model("resnet18", 10, 1, 8).parameters()
    )
    assert metrics["macs"] > metrics["params"]
    sizes = metrics["size_bytes"]
    assert sizes["state_dict_fp32"] >= metrics["params"] * 4
    assert (
        sizes["onnx_fp32"] == (trained / TEACHER_ONNX).stat().st_size > metrics["params"] * 4 * 0.95
    )
    for runtime in ("torch_eager", "onnxruntime"):
        for batch in ("batch_1", "batch_8", "batch_32"):
            stats = metrics["latency"][runtime][batch]
            assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
            assert stats["throughput_per_s"] > 0
    assert metrics["latency"]["end_to_end_batch_1"]["p50_ms"] > 0
    memory = metrics["memory"]["onnxruntime_batch_32"]
    assert memory["peak_rss_mb"] > memory["session_rss_delta_mb"] > sizes["onnx_fp32"] / 2**20 * 0.5
    assert metrics["throughput_per_s"]["onnxruntime"] > 0


def test_checkpoint_round_trips(trained: Path, monkeypatch) -> None:
    monkeypatch.chdir(trained)
    model, payload = load_model(TEACHER_CHECKPOINT)
    raw = torch.load(TEACHER_CHECKPOINT, weights_only=True)
    assert payload["arch"] == "resnet18" and payload["input_shape"] == [1, 8, 8]
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, raw["state_dict"][key])
    images = normalized_dataset("test", load_info()).tensors[0][:16]
    with torch.no_grad():
        first, second = model(images), load_model(TEACHER_CHECKPOINT)[0](images)
    assert torch.equal(first, second)


def test_user_checkpoint_is_loaded_not_trained(trained: Path, in_prepared: Path) -> None:
    metrics = _run(checkpoint=str(trained / TEACHER_CHECKPOINT), epochs=50)
    reference = json.loads((trained / METRICS_FILE).read_text())
    assert metrics["source"] == "checkpoint" and metrics["train_seconds"] == 0
    assert metrics["accuracy"] == reference["accuracy"]


def test_mismatched_checkpoint_is_a_clear_error(in_prepared: Path) -> None:
    wrong = build_model("resnet18", 7, 3, 32)
    torch.save(wrong.state_dict(), "wrong.pt")
    with pytest.raises(
        PipelineError, match=r"Checkpoint 'wrong.pt' does not fit a 'resnet18'.*shape mismatches"
    ):
        _run(checkpoint="wrong.pt")
    assert not TEACHER_CHECKPOINT.exists() and not METRICS_FILE.exists()


def test_pickled_module_and_corrupt_checkpoint_are_refused(in_prepared: Path) -> None:
    torch.save(build_model("resnet18", 10, 1, 8), "module.pt")
    Path("corrupt.pt").write_bytes(b"not a checkpoint")
    for name in ("module.pt", "corrupt.pt", "missing.pt"):
        with pytest.raises(PipelineError, match=f"Checkpoint '{name}'"):
            _run(checkpoint=name)
    assert not TEACHER_CHECKPOINT.exists()


def test_unknown_architecture_lists_valid_names(in_prepared: Path) -> None:
    with pytest.raises(PipelineError, match=r"teacher.arch='resnet19'.*resnet18"):
        _run(arch="resnet19")


def test_logits_match_between_torch_and_onnx(trained: Path, monkeypatch) -> None:
    import onnxruntime as ort

    monkeypatch.chdir(trained)
    model, _ = load_model(TEACHER_CHECKPOINT)
    images = normalized_dataset("test", load_info()).tensors[0][:32]
    session = ort.InferenceSession(str(TEACHER_ONNX), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"input": images.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(onnx_logits, model(images).numpy(), atol=1e-3)
