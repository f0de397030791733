"""Temporary git + DVC copies of this repository for the end-to-end tests: the copy itself,
a team's image folder, tiny params, and the commands run inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from sklearn.datasets import load_digits

from flows.search import REPORT_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = "data/input/digits"  # tracked with `dvc add`, as a team's image folder is
# The teacher's recipe without warm-up or mixing, at the rate these tests were written for: the
# tests' teachers train an epoch or two and check orchestration and bookkeeping, not the recipe
# (benchmarks/teacher_recipe.py measures it; the default's lower rate is for 30 epochs)
PLAIN_TEACHER = {"warmup_epochs": 0, "lr": 0.05, "mixup_alpha": 0.0, "cutmix_alpha": 0.0}


def run(repo: Path, *command: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return run(repo, "dvc", *args)


def edit_params(repo: Path, edit) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    edit(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def commit_params(repo: Path, edit) -> None:
    """Change params.yaml and commit it, as a team does before a cycle (which refuses
    uncommitted code or params)."""
    edit_params(repo, edit)
    assert run(repo, "git", "commit", "-qam", "params").returncode == 0


def tiny_repo(repo: Path) -> None:
    digit_images(repo / DATA)
    edit_params(repo, tiny_params)


def tiny_params(params: dict) -> None:
    params["data"] |= {"source": "imagefolder", "path": DATA, "image_size": 16, "channels": 1}
    params["teacher"] |= {"epochs": 1, **PLAIN_TEACHER}
    params["distill"] |= {"epochs": 1, "student": "mobilenet_v2"}  # the layer names below
    params["prune"] |= {"finetune_epochs": 1, "rounds": 1}
    params["quantize"]["qat"]["epochs"] = 1
    # orchestration tests: the default float layers, without the per-layer sensitivity pass
    params["quantize"] |= {"keep_fp32": ["first_conv", "classifier"], "sensitivity": False}
    params["evaluate"] |= {"timed_runs": 5, "warmup_runs": 1, "repeats": 1}
    params["evaluate"]["gate"] = {
        "max_accuracy_drop": 1.0,
        "max_class_drop": 1.0,
        "max_ece_increase": 1.0,
    }
    params["benchmark"] |= {"warmup_runs": 1, "timed_runs": 3}
    params["gate"] = {"min_accuracy": 0.0, "min_class_accuracy": 0.0}
    # the size objective alone decides in these tests: never "more accurate", always within
    # tolerance; no approval asked unless a test asks for it
    params["registry"] |= {"tolerance": 1.0, "min_gain": 1.0, "approval": "never"}


def git_repo(repo: Path, remote: Path) -> None:
    for command in (
        ("git", "config", "user.email", "ci@example.com"),
        ("git", "config", "user.name", "ci"),
        ("dvc", "remote", "modify", "--local", "local", "url", str(remote)),
        ("dvc", "add", "--quiet", DATA),
        ("git", "add", "--all"),
        ("git", "commit", "-qm", "init"),
    ):
        assert run(repo, *command).returncode == 0, command


def digit_images(root: Path, keep: Callable[[int, int], bool] = lambda index, label: True) -> None:
    """scikit-learn's digits as 8-bit PNG files in class folders under `root`, the way a
    team's data comes (those `keep(index, label)` selects): the pipeline runs on an image
    folder, so `predict` can be checked on the very files."""
    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        if keep(index, int(label)):
            folder = root / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.round(image * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index:04d}.png")


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


def copy_snapshot(snapshot: Path, root: Path) -> Path:
    """A copy of a snapshot repository under `root` (outs, DVC cache, git history), its local
    remote a folder of its own; `root/repo` is returned."""
    repo = shutil.copytree(
        snapshot, root / "repo", symlinks=True, ignore=shutil.ignore_patterns("tmp")
    )
    remote = root / "remote"
    assert dvc(repo, "remote", "modify", "--local", "local", "url", str(remote)).returncode == 0
    return repo
