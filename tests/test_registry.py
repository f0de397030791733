"""The registry on a real git + DVC repository with GTO tags (no pipeline: each version's
shipped model is a small file tracked with `dvc add`): one holder of the stage after every
promotion and rollback, under both of GTO's sorts; rollbacks repeat and go forward; a failed
step leaves the tags as they were; the decision log survives a torn line and remembers what a
person rolled back or rejected."""

from __future__ import annotations

import errno
import json
import logging
import subprocess
import sys
from pathlib import Path

import gto.api
import pytest

from compress.config.registry import RegistryParams
from compress.core.artifacts import Artifacts, file_digest
from compress.core.errors import PipelineError, error_from_output
from compress.core.gitrepo import git
from compress.registry.log import append_decision, barred_models, keep_if_barred, read_decisions
from compress.registry.versions import (
    move_stage,
    next_version,
    rollback,
    shown_in_stage,
    stage_holders,
    tags_undone_on_failure,
)

SETTINGS = RegistryParams()
ARTIFACTS = "artifacts:\n  shipped-model:\n    path: models/shipped.onnx\n    type: model\n"


def _dvc(repo: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "ci")
    _dvc(repo, "init", "-q")
    (repo / "dvc.yaml").write_text(ARTIFACTS)
    git(repo, "add", "--all")
    git(repo, "commit", "-qm", "init")
    return repo


def _release(repo: Path, content: bytes, register: bool = True) -> str:
    """A new shipped model with its manifest, committed; registered and moved into the stage
    as a promotion does. Returns its md5."""
    artifacts = Artifacts(repo)
    artifacts.shipped_onnx.parent.mkdir(exist_ok=True)
    artifacts.shipped_onnx.write_bytes(content)
    _dvc(repo, "add", "-q", "models/shipped.onnx")
    md5 = file_digest(artifacts.shipped_onnx, "md5")
    artifacts.shipped_json.write_text(json.dumps({"files": {"models/shipped.onnx": md5}}))
    git(repo, "add", "--all")
    git(repo, "commit", "-qm", f"release {content!r}")
    if register:
        version = next_version(repo, "shipped-model")
        gto.api.register(str(repo), "shipped-model", "HEAD", version=version)
        move_stage(repo, SETTINGS, version)
    return md5


def _holders(repo: Path) -> list[str]:
    return [h.version for h in stage_holders(repo, "shipped-model", "prod")]


def _one_holder(repo: Path, version: str) -> None:
    assert _holders(repo) == [version]
    assert shown_in_stage(repo, SETTINGS) == {"timestamp": version, "semver": version}


def test_promotions_and_rollbacks_leave_one_holder_under_both_sorts(repo: Path) -> None:
    md5 = [_release(repo, f"model {n}".encode()) for n in (1, 2, 3)]
    _one_holder(repo, "v0.0.3")  # each promotion unassigned the one before

    back = rollback(repo, SETTINGS, "v0.0.1")
    _one_holder(repo, "v0.0.1")
    assert (back["from_version"], back["from_md5"], back["md5"]) == ("v0.0.3", md5[2], md5[0])
    assert rollback(repo, SETTINGS, "v0.0.1")["action"] == "none"  # repeatable, a no-op
    with pytest.raises(PipelineError, match="No version before v0.0.1"):
        rollback(repo, SETTINGS)

    forward = rollback(repo, SETTINGS, "v0.0.2")  # a rollback forward
    _one_holder(repo, "v0.0.2")
    assert forward["from_version"] == "v0.0.1"
    log = read_decisions(Artifacts(repo).decisions_log)
    assert [d["version"] for d in log] == ["v0.0.1", "v0.0.2"]
    # v0.0.3 stays out (rolled back from); v0.0.1 too (moved away from); v0.0.2 was put back
    assert set(barred_models(log)) == {md5[2], md5[0]}


def test_a_registry_with_several_holders_is_mended_by_a_rollback(repo: Path) -> None:
    """What promotions did before: assign without unassigning. GTO then names different
    versions under its two sorts; `rollback --to` leaves one."""
    for n in (1, 2, 3):
        _release(repo, f"model {n}".encode(), register=False)
        gto.api.register(str(repo), "shipped-model", "HEAD", version=f"v0.0.{n}")
        gto.api.assign(str(repo), "shipped-model", "prod", version=f"v0.0.{n}")
    gto.api.unassign(str(repo), "shipped-model", version="v0.0.3", stage="prod")
    assert _holders(repo) == ["v0.0.2", "v0.0.1"]
    rollback(repo, SETTINGS, "v0.0.1")
    _one_holder(repo, "v0.0.1")


def test_a_failed_step_leaves_the_tags_as_they_were(repo: Path) -> None:
    _release(repo, b"model 1")
    git(repo, "commit", "-q", "--allow-empty", "-m", "a promotion commit")
    before = git(repo, "tag", "--list")
    with pytest.raises(RuntimeError, match="push failed"), tags_undone_on_failure(repo):
        gto.api.register(str(repo), "shipped-model", "HEAD", version="v0.0.2")
        move_stage(repo, SETTINGS, "v0.0.2")
        raise RuntimeError("push failed")
    assert git(repo, "tag", "--list") == before
    _one_holder(repo, "v0.0.1")


def test_a_torn_line_is_reported_and_the_log_stays_readable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "decisions.jsonl"
    log.write_text('{"action": "promoted", "time": "t1"}\n{"action": "kep')  # killed mid-line
    with caplog.at_level(logging.WARNING):
        assert read_decisions(log) == [{"action": "promoted", "time": "t1"}]
    assert 'line 2 is not a whole decision, skipped: {"action": "kep' in caplog.text
    append_decision(log, {"action": "kept", "time": "t2"})
    assert [d["time"] for d in read_decisions(log)] == ["t1", "t2"]
    assert not list(tmp_path.glob(".decisions.jsonl.*"))  # written whole, then renamed


def test_a_rejected_model_is_kept_without_a_new_vote() -> None:
    rejected = {
        "time": "2026-12-01T03:00:00+00:00",
        "action": "kept",
        "clause": "non_inferior_and_better",
        "figures": {"new": {"md5": "aaa"}},
        "approval": {"answer": "rejected", "approver": "bob", "reason": "odd errors"},
    }
    barred = barred_models([rejected])
    again = {"action": "promoted", "clause": "more_accurate", "reason": "+1 pt"}
    kept = keep_if_barred(again | {"figures": {"new": {"md5": "aaa"}}}, barred)
    assert (kept["action"], kept["clause"]) == ("kept", "rejected_before")
    assert "rejected by bob (odd errors), at 2026-12-01T03:00:00+00:00" in kept["reason"]
    other = again | {"figures": {"new": {"md5": "bbb"}}}
    assert keep_if_barred(other, barred) == other


@pytest.mark.parametrize(
    ("output", "code"),
    [
        ("ERROR: failed to push: [Errno 1] Operation not permitted: '/remote/ab'", errno.EPERM),
        ("ERROR: failed to push: No space left on device", errno.ENOSPC),
        ("ERROR: failed to push: [Errno 20] Not a directory: '/remote'", errno.ENOTDIR),
    ],
)
def test_a_failed_commands_output_is_sorted_by_the_errno_table(output: str, code: int) -> None:
    error = error_from_output("dvc push", output, "Fix the remote.")
    assert isinstance(error, OSError) and error.errno == code
    assert "`dvc push` failed" in str(error) and "Fix the remote." in str(error)
    assert isinstance(error_from_output("dvc push", "ERROR: unexpected", ""), PipelineError)
