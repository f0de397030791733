"""Shared fixtures: real digits data prepared by the real stage in a temporary working folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stages.config import BenchmarkParams

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_BENCH = BenchmarkParams(
    batch_sizes=[1, 8, 32], warmup_runs=1, timed_runs=3, intra_op_threads=2
)


@pytest.fixture(scope="session")
def prepared_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding data/prepared made from digits with the default split params."""
    from stages.prepare import prepare

    workdir = tmp_path_factory.mktemp("prepared")
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        prepare(
            source="digits",
            path=None,
            image_size=None,
            channels=None,
            val_fraction=0.1,
            test_fraction=0.2,
            calibration_size=300,
            balance_tolerance=0.5,
            seed=0,
        )
    finally:
        os.chdir(cwd)
    return workdir


@pytest.fixture(scope="session")
def baseline_workdir(prepared_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/prepared plus a teacher trained for two epochs by the real baseline stage."""
    from stages.baseline import baseline
    from stages.config import AugmentParams

    workdir = tmp_path_factory.mktemp("baseline")
    shutil.copytree(prepared_workdir / "data", workdir / "data")
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        baseline(
            arch="resnet18",
            checkpoint=None,
            epochs=2,
            batch_size=64,
            lr=0.05,
            weight_decay=5e-4,
            seed=0,
            augment=AugmentParams(),
            bench=TINY_BENCH,
        )
    finally:
        os.chdir(cwd)
    return workdir


@pytest.fixture
def in_baseline(baseline_workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder with copies of the prepared data and the teacher, as the cwd."""
    shutil.copytree(baseline_workdir / "data", tmp_path / "data")
    shutil.copytree(baseline_workdir / "models", tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def in_prepared(prepared_workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder with a copy of the prepared data, as the cwd."""
    shutil.copytree(prepared_workdir / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def copy_repo(destination: Path) -> Path:
    """The repository's tracked and untracked-not-ignored files, as a new git + DVC repo."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    return destination
