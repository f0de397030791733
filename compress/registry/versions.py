"""The registry's versions: the GTO git tags of the shipped-model artifact, the one version that
holds the production stage, moving the stage (a promotion or a rollback) so that exactly one
version holds it after every move, and undoing a move's tags when a step fails."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import gto.api
from gto.base import VersionSort, VStage
from gto.exceptions import ArtifactNotFound

from compress.config.registry import RegistryParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.core.gitrepo import git, read_at
from compress.registry.log import append_decision


def stage_holders(repo: Path, artifact: str, stage: str) -> list[VStage]:
    """Every version holding `stage` (GTO lets several hold it; this registry keeps one)."""
    try:
        found = gto.api.find_versions_in_stage(str(repo), artifact, stage, versions_per_stage=-1)
    except ArtifactNotFound:
        return []
    return list(found or [])


def stage_holder(repo: Path, artifact: str, stage: str) -> VStage | None:
    """GTO's record of the version that holds `stage` now (its version and commit), or None
    when none does or nothing is registered yet."""
    holders = stage_holders(repo, artifact, stage)
    return holders[0] if holders else None


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


def next_version(repo: Path, artifact: str) -> str:
    """The version the next registration gets: the last one's patch number plus one."""
    versions = registered_versions(repo, artifact)
    if not versions:
        return "v0.0.1"
    major, minor, patch = (int(part) for part in versions[-1].lstrip("v").split("."))
    return f"v{major}.{minor}.{patch + 1}"


def shown_in_stage(repo: Path, settings: RegistryParams) -> dict[str, str | None]:
    """What `gto show` names in the stage under each of its sorts."""
    shown = {}
    for sort in (VersionSort.Timestamp, VersionSort.SemVer):
        rows = gto.api.show(str(repo), sort=sort)
        shown[sort.value] = rows.get(settings.artifact, {}).get("stage", {}).get(settings.stage)
    return shown


def check_one_holder(repo: Path, settings: RegistryParams, version: str) -> None:
    """Exactly `version` holds the stage, and `gto show` says so under either sort."""
    holders = [h.version for h in stage_holders(repo, settings.artifact, settings.stage)]
    shown = shown_in_stage(repo, settings)
    if holders != [version] or set(shown.values()) != {version}:
        raise PipelineError(
            f"After moving {settings.stage} to {settings.artifact}@{version}, GTO has "
            f"{holders or 'none'} in it ({shown}); the move was undone."
        )


def move_stage(repo: Path, settings: RegistryParams, version: str) -> None:
    """Assign the stage to `version`, unassign every other holder, then check that one
    version holds it: MLflow's alias semantics (one alias, one version) on GTO's tags."""
    gto.api.assign(str(repo), settings.artifact, settings.stage, version=version, force=True)
    for holder in stage_holders(repo, settings.artifact, settings.stage):
        if holder.version != version:
            gto.api.unassign(
                str(repo), settings.artifact, version=holder.version, stage=settings.stage
            )
    check_one_holder(repo, settings, version)


@contextmanager
def tags_undone_on_failure(repo: Path) -> Iterator[None]:
    """GTO's registry is git tags: a step that fails part-way has its new tags deleted, so the
    registry is as it was before."""
    before = set(git(repo, "tag", "--list").split())
    try:
        yield
    except BaseException:
        created = sorted(set(git(repo, "tag", "--list").split()) - before)
        if created:
            git(repo, "tag", "--delete", *created)
        raise


def shipped_md5(repo: Path, commit: str) -> str | None:
    """md5 of the shipped ONNX file a commit records in its shipped manifest."""
    manifest = read_at(repo, commit, Artifacts.shipped_json)
    if manifest is None:
        return None
    return json.loads(manifest).get("files", {}).get(Artifacts.shipped_onnx.as_posix())


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


def _rollback_target(current: str | None, versions: list[str], to: str | None) -> str:
    """`to`, or the version registered before the one in the stage now."""
    if to is None:
        earlier = [v for v in versions if current and versions.index(v) < versions.index(current)]
        if not earlier:
            raise PipelineError(
                f"No version before {current or 'none'} to roll back to (registered: "
                f"{', '.join(versions) or 'none'}); name one with --to."
            )
        to = earlier[-1]
    if to not in versions:
        raise PipelineError(f"No version '{to}'; registered: {', '.join(versions) or 'none'}.")
    return to


def rollback(repo: Path, settings: RegistryParams, to: str | None = None) -> dict:
    """Move `registry.stage` to `to` (default: the version registered before the one in the
    stage now; a newer one rolls forward), once its model is retrievable, so that it is the
    stage's only holder; log the decision with both models' md5, so the cycle keeps the model
    rolled back from out of production. The workspace (dvc.lock, models/) is left as it is."""
    current = version_in_stage(repo, settings)
    to = _rollback_target(current, registered_versions(repo, settings.artifact), to)
    holders = [h.version for h in stage_holders(repo, settings.artifact, settings.stage)]
    if holders == [to]:
        return {"action": "none", "reason": f"{to} already holds {settings.stage}"}
    check_retrievable(repo, settings, to)
    with tags_undone_on_failure(repo):
        move_stage(repo, settings, to)
    tags = {v: f"{settings.artifact}@{v}" for v in (to, current) if v}
    decision = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "action": "rolled_back",
        "clause": "rollback",
        "reason": f"{settings.stage} moved to {to} (was {current})",
        "version": to,
        "md5": shipped_md5(repo, tags[to]),
        "from_version": current,
        "from_md5": shipped_md5(repo, tags[current]) if current else None,
        "production_version": current,
    }
    append_decision(Artifacts(repo).decisions_log, decision)
    return decision
