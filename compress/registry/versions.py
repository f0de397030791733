"""The registry's versions: the GTO git tags of the shipped-model artifact, which one holds the
production stage, rolling back to an earlier one, and the decisions log every change appends to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import gto.api
from gto.base import VStage
from gto.exceptions import ArtifactNotFound

from compress.config.registry import RegistryParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError


def append_decision(log: Path, decision: dict) -> None:
    """One JSON line per decision, flushed to disk before the call returns."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(json.dumps(decision, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def stage_holder(repo: Path, artifact: str, stage: str) -> VStage | None:
    """GTO's record of the version that holds `stage` now (its version and commit), or None
    when none does or nothing is registered yet."""
    try:
        found = gto.api.find_versions_in_stage(str(repo), artifact, stage)
    except ArtifactNotFound:
        return None
    if not found:
        return None
    return found[0] if isinstance(found, list) else found


def version_in_stage(repo: Path, settings: RegistryParams) -> str | None:
    """The version that holds `registry.stage` now, or None."""
    holder = stage_holder(repo, settings.artifact, settings.stage)
    return holder.version if holder else None


def registered_versions(repo: Path, artifact: str) -> list[str]:
    """Every registered version of the artifact, oldest first (semantic version order)."""
    try:
        rows = gto.api.show(str(repo), artifact)
    except ArtifactNotFound:
        return []
    versions = [row["version"] for row in rows]
    return sorted(versions, key=lambda v: tuple(int(p) for p in v.lstrip("v").split(".")))


def check_retrievable(repo: Path, settings: RegistryParams, version: str) -> None:
    """The version's shipped model comes back from the DVC cache or remote (`dvc get` at its
    tag), or the rollback stops before it changes anything."""
    shipped = Artifacts.outs()["shipped_onnx"].as_posix()
    with tempfile.TemporaryDirectory() as folder:
        fetched = subprocess.run(
            [
                sys.executable,
                "-m",
                "dvc",
                "get",
                ".",
                shipped,
                "--rev",
                f"{settings.artifact}@{version}",
                "-o",
                str(Path(folder) / "model.onnx"),
            ],
            cwd=repo,
            capture_output=True,
            text=True,
        )
    if fetched.returncode != 0:
        raise PipelineError(
            f"{settings.artifact}@{version}'s '{shipped}' is in neither the DVC cache nor the "
            f"remote: {fetched.stderr.strip()} Run `dvc fetch --rev {settings.artifact}@{version}` "
            "where it was made, or `dvc push` there, then roll back again."
        )


def rollback(repo: Path, settings: RegistryParams, to: str | None = None) -> dict:
    """Assign `registry.stage` back to `to` (default: the version registered before the one in
    the stage now), once its model is retrievable; append the decision to the log."""
    current = version_in_stage(repo, settings)
    versions = registered_versions(repo, settings.artifact)
    if to is None:
        earlier = [v for v in versions if current and versions.index(v) < versions.index(current)]
        if not earlier:
            raise PipelineError(
                f"No version of {settings.artifact} before {current or 'none'} to roll back to "
                f"(registered: {', '.join(versions) or 'none'}); name one with --to."
            )
        to = earlier[-1]
    if to not in versions:
        raise PipelineError(
            f"{settings.artifact} has no version '{to}'; registered: {', '.join(versions)}."
        )
    check_retrievable(repo, settings, to)
    if current and current != to:  # GTO picks the newest version holding a stage: give it up
        gto.api.unassign(str(repo), settings.artifact, version=current, stage=settings.stage)
    gto.api.assign(str(repo), settings.artifact, settings.stage, version=to, force=True)
    decision = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "action": "rolled_back",
        "clause": "rollback",
        "reason": f"{settings.stage} assigned back to {to} (was {current})",
        "version": to,
        "production_version": current,
    }
    append_decision(Artifacts(repo).decisions_log, decision)
    return decision


def next_version(repo: Path, artifact: str) -> str:
    """The version the next registration gets: the last one's patch number plus one."""
    versions = registered_versions(repo, artifact)
    if not versions:
        return "v0.0.1"
    major, minor, patch = (int(part) for part in versions[-1].lstrip("v").split("."))
    return f"v{major}.{minor}.{patch + 1}"
