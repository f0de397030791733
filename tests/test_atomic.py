"""Atomic writes: an out appears whole or not at all, with the mode the user's umask gives a new
file (a model server or a teammate running as another user can read it)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from compress.config.gate import GateParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.models.checkpoints import save_checkpoint
from compress.models.onnx_export import export_onnx
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
        per_class = {str(i): 0.99 for i in range(10)}
        artifacts.baseline_metrics.write_text(
            json.dumps({"accuracy": 0.99, "per_class_accuracy": per_class})
        )
        validate_teacher(GateParams(), artifacts)
    finally:
        os.umask(previous)
    assert _mode(artifacts.teacher_gate) == 0o640


def test_a_failed_writer_leaves_neither_out_nor_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(PipelineError, match="Writing '.*out.json' failed: No space left"):
        atomic.write_with(target, fail)
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]
