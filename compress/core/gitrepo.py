"""The few git reads and writes the registry and the model-update cycle share: a command's
output, and a tracked file as it was at a commit."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its output; a failure raises CalledProcessError."""
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def read_at(repo: Path, commit: str, relative: Path) -> str | None:
    """A git-tracked file as it was at `commit`; None when it did not exist there."""
    shown = subprocess.run(
        ["git", "show", f"{commit}:{relative.as_posix()}"], cwd=repo, capture_output=True, text=True
    )
    return shown.stdout if shown.returncode == 0 else None
