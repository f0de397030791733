"""Structured pruning: physically fewer channels, same predictions in ONNX Runtime, a checkpoint
that rebuilds in a fresh process with weights_only=True, and the stage on real digits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from torch import nn

from compress.compression.pruning import MacsPruner
from compress.config.benchmark import BenchmarkParams
from compress.config.data import AugmentParams
from compress.config.distill import DistillParams
from compress.config.params import load_params
from compress.config.prune import PruneParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.models.builders import build_model, classifier_layer, count_macs_params
from compress.models.checkpoints import architecture, load_model, save_checkpoint
from compress.models.onnx_export import export_onnx
from compress.steps.distill import distill
from compress.steps.prune import prune
from compress.steps.teacher_outputs import teacher_outputs
from tests.conftest import labelled_test_split, onnx_logits

SHAPE = (1, 16, 16)
TINY_BENCH = BenchmarkParams(batch_sizes=[1, 32], warmup_runs=1, timed_runs=5, intra_op_threads=2)
NO_FLIP = AugmentParams(crop_padding=1, horizontal_flip=False)


def _out_channels(model: nn.Module) -> dict[str, int]:
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_a_round_removes_channels_and_onnx_agrees(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 10, *SHAPE[:2]).eval()
    before = _out_channels(model)
    classifier_width = classifier_layer(model, 10).out_features
    macs_before, _ = count_macs_params(model, SHAPE)
    pruner = MacsPruner(model, SHAPE, 10, "l1", global_pruning=False, max_layer_ratio=0.8)
    pruner.prune_to(macs_before * 0.85)
    after = _out_channels(model)
    assert sum(after.values()) < sum(before.values())
    assert any(after[name] < before[name] for name in before)
    assert classifier_layer(model, 10).out_features == classifier_width == 10
    images = torch.randn(8, *SHAPE)
    export_onnx(model, SHAPE, tmp_path / "pruned.onnx")
    session = ort.InferenceSession(
        str(tmp_path / "pruned.onnx"), providers=["CPUExecutionProvider"]
    )
    with torch.no_grad():
        np.testing.assert_allclose(
            session.run(None, {"input": images.numpy()})[0], model(images).numpy(), atol=1e-4
        )


@pytest.mark.parametrize("global_pruning", [False, True])
def test_schedule_hits_the_macs_target_and_respects_max_layer_ratio(global_pruning: bool) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 10, *SHAPE[:2]).eval()
    before = _out_channels(model)
    macs_before, _ = count_macs_params(model, SHAPE)
    pruner = MacsPruner(model, SHAPE, 10, "l2", global_pruning=global_pruning, max_layer_ratio=0.6)
    for round_index in range(1, 5):
        pruner.prune_to(macs_before * (1 - 0.5 * round_index / 4))
    macs_after, _ = count_macs_params(model, SHAPE)
    assert abs(macs_after / (0.5 * macs_before) - 1) < 0.05
    for name, channels in _out_channels(model).items():
        assert channels >= int(before[name] * (1 - 0.6)), name


def test_checkpoint_rebuilds_in_a_fresh_process(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 10, *SHAPE[:2]).eval()
    pruner = MacsPruner(model, SHAPE, 10, "random", global_pruning=False, max_layer_ratio=0.8)
    pruner.prune_to(count_macs_params(model, SHAPE)[0] * 0.6)
    checkpoint = tmp_path / "pruned.pt"
    save_checkpoint(
        checkpoint, model, "mobilenet_v3_small", SHAPE, 10, pruning_history=pruner.history()
    )
    images = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))
    torch.save(images, tmp_path / "images.pt")
    code = (
        "import sys, torch\n"
        "from compress.models.checkpoints import load_model\n"
        "model, _ = load_model(sys.argv[1])\n"
        "images = torch.load(sys.argv[2], weights_only=True)\n"
        "with torch.no_grad():\n"
        "    torch.save(model(images), sys.argv[3])\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(checkpoint),
            str(tmp_path / "images.pt"),
            str(tmp_path / "logits.pt"),
        ],
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "logits.pt", weights_only=True), model(images))


def test_channel_shuffle_student_is_a_clear_error() -> None:
    model = build_model("shufflenet_v2_x0_5", 10, *SHAPE[:2]).eval()
    with pytest.raises(PipelineError, match="channel shuffles"):
        MacsPruner(model, SHAPE, 10, "l1", global_pruning=False, max_layer_ratio=0.8)


@pytest.fixture
def distilled_copy(baseline_copy: Artifacts) -> Artifacts:
    distill(
        DistillParams(student="mobilenet_v3_small", epochs=1, control=False),
        NO_FLIP,
        baseline_copy,
    )
    return baseline_copy


def test_stage_prunes_the_distilled_student(distilled_copy: Artifacts) -> None:
    artifacts = distilled_copy
    teacher_before = torch.load(artifacts.teacher_pt, weights_only=True)["state_dict"]
    params = PruneParams(target_ratio=0.5, rounds=2, finetune_epochs=1, importance="taylor")
    metrics = prune(params, DistillParams(epochs=1), NO_FLIP, TINY_BENCH, artifacts)
    assert json.loads(artifacts.prune_metrics.read_text())["pruned"] == metrics["pruned"]
    assert [row["round"] for row in metrics["rounds"]] == [0, 1, 2]
    assert metrics["vs_distilled"]["macs"] == pytest.approx(0.5, abs=0.025)
    assert metrics["pruned"]["onnx_bytes"] < metrics["distilled"]["onnx_bytes"]
    model, _ = load_model(artifacts.pruned_pt)
    assert (
        count_macs_params(
            model, tuple(torch.load(artifacts.pruned_pt, weights_only=True)["input_shape"])
        )[0]
        == metrics["pruned"]["macs"]
    )
    assert metrics["pruned"]["params"] == sum(p.numel() for p in model.parameters())
    teacher_after = torch.load(artifacts.teacher_pt, weights_only=True)["state_dict"]
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher_after.items())
    assert artifacts.prune_plot.read_text().startswith("round,macs,params,")
    _check_against_the_written_files(metrics, artifacts)


LIVE_TEACHER = DistillParams(epochs=1, teacher_views=None)  # the KD loss runs the teacher


def _noisy_teacher(artifacts: Artifacts) -> None:
    """The teacher's weights replaced by noise in place: any loss that reads its outputs
    changes."""
    payload = torch.load(artifacts.teacher_pt, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    payload["state_dict"] = {
        key: torch.randn(value.shape, generator=generator) if value.is_floating_point() else value
        for key, value in payload["state_dict"].items()
    }
    torch.save(payload, artifacts.teacher_pt)


def test_the_labels_only_control_reads_no_teacher_output(
    distilled_copy: Artifacts, tmp_path: Path
) -> None:
    """`prune.control`: the same rounds from the same start, fine-tuned on labels alone. Run
    twice, the second time with the teacher's weights replaced by noise: the distillation
    fine-tuning changes, the control's rounds do not, to the last digit, so its loss never
    reads the teacher. Its figures land in metrics/prune.json beside the KD fine-tune's."""
    params = PruneParams(target_ratio=0.5, rounds=1, finetune_epochs=1, control=True)
    teacher_outputs(LIVE_TEACHER, NO_FLIP, distilled_copy)  # none stored: the teacher runs live
    first = prune(params, LIVE_TEACHER, NO_FLIP, TINY_BENCH, distilled_copy)
    _noisy_teacher(distilled_copy)
    second = prune(params, LIVE_TEACHER, NO_FLIP, TINY_BENCH, distilled_copy)

    assert second["labels_only_control"] == first["labels_only_control"]
    assert second["rounds"] != first["rounds"]  # the KD fine-tune did read the noisy teacher
    written = json.loads(distilled_copy.prune_metrics.read_text())
    control = written["labels_only_control"]
    assert [row["round"] for row in control["rounds"]] == [0, 1]
    assert control["rounds"][1]["macs"] == written["rounds"][1]["macs"]  # the same cut
    gain = written["kd_finetune_gain_points"]
    assert gain["test"] == round(
        (written["pruned"]["test_accuracy"] - control["test_accuracy"]) * 100, 2
    )


def test_pruning_starts_from_the_control_when_distillation_did_worse(
    baseline_copy: Artifacts,
) -> None:
    """A small CNN distilled with its labels-only control (10 epochs each), then the distilled
    one made worse on purpose (its weights scaled down 100x): pruning starts from the control,
    and the metrics say so and why, with both validation accuracies."""
    artifacts = baseline_copy
    student = DistillParams(student="tests.factories:tiny_cnn", epochs=10, lr=0.2, control=True)
    distill(student, NO_FLIP, artifacts)
    worse, payload = load_model(artifacts.student_pt)
    with torch.no_grad():
        for parameter in worse.parameters():
            parameter.mul_(0.01)
    save_checkpoint(
        artifacts.student_pt, worse, payload["arch"], SHAPE, 10, **architecture(payload)
    )
    params = PruneParams(target_ratio=0.3, rounds=1, finetune_epochs=1, control=False)
    metrics = prune(params, student, NO_FLIP, TINY_BENCH, artifacts)

    start = metrics["start"]
    assert start["model"] == "control", start
    assert start["val_accuracy"]["control"] > start["val_accuracy"]["distilled"] + 0.3
    assert "more accurate on validation" in start["why"]
    assert metrics["rounds"][0]["val_accuracy_pruned"] == start["val_accuracy"]["control"]
    assert "labels_only_control" not in metrics


def _check_against_the_written_files(metrics: dict, artifacts: Artifacts) -> None:
    """Sizes are the files', test accuracies those of student.onnx and pruned.onnx in plain
    ONNX Runtime sessions (within one image: the stage measured its torch models), and each
    model's latencies are ordered by batch size with the ratios they give."""
    files = {
        "teacher": artifacts.teacher_onnx,
        "distilled": artifacts.student_onnx,
        "pruned": artifacts.pruned_onnx,
    }
    for name, path in files.items():
        assert metrics[name]["onnx_bytes"] == path.stat().st_size, name
        latency = metrics[name]["latency_p50_ms"]
        assert latency["batch_32"] > latency["batch_1"], name
    images, labels = labelled_test_split(artifacts)
    for name in ("distilled", "pruned"):
        from_file = np.mean(onnx_logits(files[name], images).argmax(axis=1) == labels)
        assert metrics[name]["test_accuracy"] == pytest.approx(from_file, abs=1 / len(labels))
    for batch in ("batch_1", "batch_32"):
        ratio = (
            metrics["pruned"]["latency_p50_ms"][batch]
            / metrics["distilled"]["latency_p50_ms"][batch]
        )
        assert metrics["vs_distilled"][f"latency_p50_{batch}"] == pytest.approx(ratio, abs=1e-4)


def test_missing_or_corrupt_student_is_a_clear_error(baseline_copy: Artifacts) -> None:
    with pytest.raises(PipelineError, match="Checkpoint '.*models/student.pt' not found"):
        prune(PruneParams(), DistillParams(), NO_FLIP, TINY_BENCH, baseline_copy)
    baseline_copy.student_pt.write_bytes(b"\x00" * 10)
    with pytest.raises(PipelineError, match="Checkpoint '.*models/student.pt' cannot be loaded"):
        prune(PruneParams(), DistillParams(), NO_FLIP, TINY_BENCH, baseline_copy)
    assert not baseline_copy.pruned_pt.exists()


@pytest.mark.parametrize(
    "changes, culprit",
    [
        ({"target_ratio": 1.0}, "prune.target_ratio"),
        ({"rounds": 0}, "prune.rounds"),
        ({"max_layer_ratio": 0}, "prune.max_layer_ratio"),
        ({"importance": "l3"}, "prune.importance"),
    ],
)
def test_bad_prune_params_name_the_key(tmp_path: Path, changes: dict, culprit: str) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"prune": changes}))
    with pytest.raises(PipelineError, match=f"`{culprit}`"):
        load_params(params_file)
