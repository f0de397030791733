"""Shared fixtures: real digits data prepared by the real stage in a temporary working folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from prefect.testing.utilities import prefect_test_harness

from compress.config.benchmark import BenchmarkParams
from compress.config.data import AugmentParams, DataParams
from compress.config.distill import DistillParams
from compress.config.teacher import TeacherParams
from compress.core.artifacts import Artifacts
from compress.data.loaders import load_info, load_split, normalize_tensor
from compress.runtime.runners import EVAL_BATCH_SIZE
from compress.steps.baseline import baseline
from compress.steps.prepare import prepare
from compress.steps.teacher_outputs import teacher_outputs
from flows.compress import compress
from tests.repos import PLAIN_TEACHER, copy_repo, git_repo, tiny_repo

TINY_BENCH = BenchmarkParams(
    batch_sizes=[1, 8, 32], warmup_runs=1, timed_runs=3, intra_op_threads=2
)
DIGITS = DataParams(image_size=8)  # the native 8x8 digits keep the tests fast


def labelled_test_split(artifacts: Artifacts) -> tuple[np.ndarray, np.ndarray]:
    """The whole prepared test split, normalized, as the arrays an ONNX file takes, and its
    labels: the reference the tests run the written model files on."""
    images, labels = load_split("test", artifacts.prepared_dir)
    normalized = normalize_tensor(images, load_info(artifacts.prepared_dir))
    return normalized.numpy(), labels.numpy()


def onnx_logits(path: Path, images: np.ndarray) -> np.ndarray:
    """A written ONNX file's logits from a plain ONNX Runtime session, not the pipeline's
    runners: what anyone deploying the file would get."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def onnx_accuracy(path: Path, artifacts: Artifacts) -> float:
    """Test accuracy of a written ONNX file, computed from the file alone."""
    images, labels = labelled_test_split(artifacts)
    return float(np.mean(onnx_logits(path, images).argmax(axis=1) == labels))


def forward_in_stage_batches(teacher: torch.nn.Module, items: list) -> torch.Tensor:
    """The teacher on the items' pixels, batched as the stage batches them (a CPU kernel's
    rounding may depend on the batch size)."""
    pixels = torch.stack([item[0] for item in items])
    with torch.no_grad():
        return torch.cat([teacher(batch) for batch in pixels.split(EVAL_BATCH_SIZE)])


def check_per_class_accuracy(
    written: dict[str, float], predictions: np.ndarray, labels: np.ndarray
) -> None:
    """Each class's written accuracy (classes in label order) within one image of that class
    of the recall recomputed from `predictions`: pins which classes a model gets right, which
    the overall accuracy of a model stuck on one class (0.1 on digits, any class) does not."""
    for index, (name, accuracy) in enumerate(written.items()):
        in_class = labels == index
        expected = float(np.mean(predictions[in_class] == index))
        assert accuracy == pytest.approx(expected, abs=1 / in_class.sum()), name


def check_latency_figures(stats: dict[str, float], batch: int) -> None:
    """Percentiles in order, and a throughput that is the batch over the median latency
    within a loose factor: figures a broken timer (or a swapped key) would not give."""
    assert stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"], stats
    from_latency = batch / (stats["p50_ms"] / 1000)
    assert 0.3 * from_latency <= stats["throughput_per_s"] <= 3 * from_latency, stats


# every stage of dvc.yaml, in the order the DAG runs them
STAGES = [
    "prepare",
    "baseline",
    "validate_teacher",
    "teacher_outputs",
    "distill",
    "prune",
    "quantize",
    "evaluate",
]


@pytest.fixture(scope="session")
def prepared_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """A folder holding data/prepared made from digits with the default split params."""
    artifacts = Artifacts(tmp_path_factory.mktemp("prepared"))
    prepare(DIGITS, artifacts)
    return artifacts


@pytest.fixture(scope="session")
def baseline_artifacts(
    prepared_artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory
) -> Artifacts:
    """data/prepared plus a teacher trained for two epochs by the real baseline step, and its
    outputs on the default views (data/teacher_outputs)."""
    artifacts = Artifacts(tmp_path_factory.mktemp("baseline"))
    shutil.copytree(prepared_artifacts.root / "data", artifacts.root / "data")
    baseline(TeacherParams(epochs=2, **PLAIN_TEACHER), AugmentParams(), TINY_BENCH, artifacts)
    teacher_outputs(DistillParams(), AugmentParams(), artifacts)
    return artifacts


@pytest.fixture
def baseline_copy(baseline_artifacts: Artifacts, tmp_path: Path) -> Artifacts:
    """A fresh folder with copies of the prepared data and the teacher."""
    shutil.copytree(baseline_artifacts.root / "data", tmp_path / "data")
    shutil.copytree(baseline_artifacts.root / "models", tmp_path / "models")
    return Artifacts(tmp_path)


@pytest.fixture
def prepared_copy(prepared_artifacts: Artifacts, tmp_path: Path) -> Artifacts:
    """A fresh folder with a copy of the prepared data."""
    shutil.copytree(prepared_artifacts.root / "data", tmp_path / "data")
    return Artifacts(tmp_path)


@pytest.fixture(scope="session")
def tiny_pipeline_snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A tiny-params repository (with its local remote beside it) after one run of the
    compress flow, under a Prefect harness of its own, and the flow's stage runs. Nobody
    changes it: the end-to-end modules copy it (`copy_snapshot`) instead of each running the
    same tiny pipeline again."""
    root = tmp_path_factory.mktemp("tiny-pipeline")
    repo = copy_repo(root / "repo")
    tiny_repo(repo)
    git_repo(repo, root / "remote")
    with prefect_test_harness(server_startup_timeout=120):
        runs = compress(repo=str(repo))
    return repo, runs


@pytest.fixture(scope="module")
def harness():
    """Prefect's test harness (an embedded database) for the flows of one test module."""
    with prefect_test_harness(server_startup_timeout=120):
        yield
