"""Shared fixtures: real digits data prepared by the real stage in a temporary working folder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from compress.config.benchmark import BenchmarkParams
from compress.config.data import AugmentParams, DataParams
from compress.config.teacher import TeacherParams
from compress.core.artifacts import Artifacts
from compress.steps.baseline import baseline
from compress.steps.prepare import prepare
from flows.search import REPORT_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_BENCH = BenchmarkParams(
    batch_sizes=[1, 8, 32], warmup_runs=1, timed_runs=3, intra_op_threads=2
)
DIGITS = DataParams(image_size=8)  # the native 8x8 digits keep the tests fast


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
    """data/prepared plus a teacher trained for two epochs by the real baseline step."""
    artifacts = Artifacts(tmp_path_factory.mktemp("baseline"))
    shutil.copytree(prepared_artifacts.root / "data", artifacts.root / "data")
    baseline(TeacherParams(epochs=2), AugmentParams(), TINY_BENCH, artifacts)
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


def copy_repo(destination: Path) -> Path:
    """The repository's tracked and untracked-not-ignored files, as a new git + DVC repo; not
    the committed search's study, which a search in the copy would resume."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file() and not Path(name).is_relative_to(REPORT_DIR):
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    return destination


@pytest.fixture(scope="module")
def harness():
    """Prefect's test harness (an embedded database) for the flows of one test module."""
    with prefect_test_harness(server_startup_timeout=120):
        yield
