"""Atomic writes: an out appears whole or not at all, with the mode the user's umask gives a new
file (a model server or a teammate running as another user can read it)."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from compress.commands.runner import run_stage
from compress.config.gate import GateParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.models.checkpoints import save_checkpoint
from compress.models.onnx_export import export_onnx
from compress.runtime.errors import TRANSIENT_EXIT_CODE, is_transient
from compress.steps.validate_teacher import validate_teacher


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_kind_of_out_is_0644_under_umask_022(umask_022, tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    atomic.write_json(tmp_path / "metrics/a.json", {"a": 1})
    atomic.write_text(tmp_path / "reports/r.md", "# r\n")
    atomic.write_csv(tmp_path / "plots/p.csv", [{"x": 1}])
    save_checkpoint(tmp_path / "models/m.pt", model, "none", (1, 2, 2), 2)
    export_onnx(model, (1, 2, 2), tmp_path / "models/m.onnx")
    atomic.replace_dir(tmp_path / "models/dir", lambda d: (d / "f.txt").write_text("x"))
    for name in ("metrics/a.json", "reports/r.md", "plots/p.csv", "models/m.pt", "models/m.onnx"):
        assert _mode(tmp_path / name) == 0o644, name
    assert _mode(tmp_path / "models/dir") == 0o755
    assert _mode(tmp_path / "models/dir/f.txt") == 0o644


def test_a_stage_out_follows_a_stricter_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        artifacts = Artifacts(tmp_path)
        artifacts.baseline_metrics.parent.mkdir(parents=True)
        figures = {"accuracy": 0.99, "per_class_accuracy": {str(i): 0.99 for i in range(10)}}
        artifacts.baseline_metrics.write_text(json.dumps(figures | {"validation": figures}))
        validate_teacher(GateParams(), artifacts)
    finally:
        os.umask(previous)
    assert _mode(artifacts.teacher_gate) == 0o640


def test_a_failed_writer_leaves_neither_out_nor_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="Writing '.*out.json' failed: No space left") as raised:
        atomic.write_with(target, fail)
    assert raised.value.errno == errno.ENOSPC  # stays transient: the stage exits 75
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]


def _failing_replace(monkeypatch: pytest.MonkeyPatch, code: int, when) -> None:
    """os.replace as the atomic module calls it, failing with `code` when `when(src, dst)`."""
    real = os.replace

    def replace(source, destination) -> None:
        if when(Path(source), Path(destination)):
            raise OSError(code, os.strerror(code))
        real(source, destination)

    monkeypatch.setattr(atomic.os, "replace", replace)


@pytest.mark.parametrize(
    ("code", "exit_code", "said"),
    [
        (errno.ENOSPC, TRANSIENT_EXIT_CODE, "transient I/O error"),
        (errno.EIO, TRANSIENT_EXIT_CODE, "transient I/O error"),
        (errno.EACCES, 1, "Cannot write '"),
        (errno.EROFS, 1, "Cannot write '"),
    ],
)
def test_exit_codes_follow_the_errno_at_the_write_path(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    code: int,
    exit_code: int,
    said: str,
) -> None:
    """A full disk or an I/O error may pass on a retry (75, which the flow retries); no
    permission or a read-only folder is the user's to fix (1, the path named)."""
    target = tmp_path / "metrics/out.json"
    _failing_replace(monkeypatch, code, lambda source, destination: destination == target)
    with pytest.raises(SystemExit) as exited:
        run_stage(lambda: atomic.write_json(target, {"a": 1}))
    message = capsys.readouterr().err
    assert exited.value.code == exit_code, message
    assert said in message and str(target) in message
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_errors_without_errno_are_never_transient() -> None:
    """A library's OSError without an errno gives no reason to retry: the user's (exit 1)."""
    assert not is_transient(FileNotFoundError("no such model"))
    assert not is_transient(PermissionError("not yours"))
    assert not is_transient(OSError("connection dropped"))


def test_a_folder_is_swapped_whole_even_when_the_swap_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new folder's rename fails after the old one was moved aside: the old folder is put
    back whole. The next call (a rerun) cleans leftovers of a killed one and swaps."""
    target = tmp_path / "models/openvino"
    atomic.replace_dir(target, lambda folder: (folder / "old.xml").write_text("old"))
    _failing_replace(  # the new folder's rename only, not the old one's way back
        monkeypatch,
        errno.EIO,
        lambda source, destination: destination == target and not source.name.endswith(".old"),
    )
    with pytest.raises(OSError):
        atomic.replace_dir(target, lambda folder: (folder / "new.xml").write_text("new"))
    assert [p.name for p in target.iterdir()] == ["old.xml"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["openvino"]
    monkeypatch.undo()
    # what a kill -9 between the two renames leaves: no target, the old folder aside, the new
    # one half-built; the next call puts the old one back before it builds
    os.replace(target, target.parent / ".openvino.abc123.old")
    (target.parent / ".openvino.def456").mkdir()

    def build(folder: Path) -> None:
        assert [p.name for p in target.iterdir()] == ["old.xml"]
        (folder / "new.xml").write_text("new")

    atomic.replace_dir(target, build)
    assert [p.name for p in target.iterdir()] == ["new.xml"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["openvino"]
