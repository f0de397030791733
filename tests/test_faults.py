"""Faults on real full devices: /dev/full (every write fails with ENOSPC) and, where this machine
lets a process mount one in a namespace of its own, a 64 KiB tmpfs. A failed write must reach the
stage's exit code through its errno (`compress.runtime.errors`): a full disk or a vanished mount
exits 75 (the flow retries it), anything else, an OSError without an errno included, exits 1
naming the path. torch and OpenVINO write through their own C++ streams, whose full-disk errors
carry no errno: the pipeline writes their bytes with Python's file I/O instead."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compress.commands.runner import run_stage
from compress.core import atomic
from compress.evaluation.inference import save_openvino_ir
from compress.models.checkpoints import write_torch_file
from compress.models.onnx_export import export_onnx
from compress.runtime.errors import TRANSIENT_EXIT_CODE, USER_ERROR_EXIT_CODE
from compress.runtime.runners import load_runner
from tests.repos import REPO_ROOT

FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")


def _stage(code: str, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`code` run as a stage's command in a fresh process, from the repository root."""
    command = [*prefix, sys.executable, "-c", code, *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


@needs_dev_full
def test_a_checkpoint_on_a_full_disk_fails_with_enospc_where_torch_save_does_not() -> None:
    state = torch.nn.Linear(4, 2).state_dict()
    with pytest.raises(RuntimeError):  # no errno: the table could not sort it
        torch.save(state, FULL)
    with pytest.raises(OSError) as raised:
        write_torch_file(state, FULL)
    assert raised.value.errno == errno.ENOSPC


SAVE_TO = """
import sys
from pathlib import Path
import torch
from compress.commands.runner import run_stage
from compress.models.checkpoints import write_torch_file
run_stage(lambda: write_torch_file(torch.nn.Linear(4, 2).state_dict(), Path(sys.argv[1])))
"""


@needs_dev_full
def test_a_stage_whose_checkpoint_fills_the_disk_exits_with_the_transient_code() -> None:
    done = _stage(SAVE_TO, str(FULL))
    assert done.returncode == TRANSIENT_EXIT_CODE, done.stderr
    assert "transient I/O error" in done.stderr and "No space left on device" in done.stderr
    assert "Traceback" not in done.stderr


def _errno_less(path: Path) -> OSError:
    """What a library raises: an OSError with a path but no errno (nor the path in its text)."""
    error = OSError("unexpected end of data")
    error.filename = str(path)
    return error


@pytest.mark.parametrize(
    ("make", "code", "said"),
    [
        (
            lambda p: OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN), str(p)),
            TRANSIENT_EXIT_CODE,
            "transient",
        ),
        (
            lambda p: OSError(errno.ESTALE, os.strerror(errno.ESTALE), str(p)),
            TRANSIENT_EXIT_CODE,
            "transient",
        ),
        (_errno_less, USER_ERROR_EXIT_CODE, "a retry alone cannot help"),
    ],
    ids=["vanished mount", "stale handle", "no errno"],
)
def test_exit_codes_follow_the_errno_and_name_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture, make, code: int, said: str
) -> None:
    path = tmp_path / "models/teacher.pt"

    def main() -> None:
        raise make(path)

    with pytest.raises(SystemExit) as exited:
        run_stage(main)
    message = capsys.readouterr().err
    assert exited.value.code == code, message
    assert said in message and str(path) in message


def test_an_atomic_write_failing_without_errno_is_the_users_and_names_the_out(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    target = tmp_path / "metrics/out.json"

    def fail(tmp: Path) -> None:
        raise OSError("the library's own failure")

    with pytest.raises(SystemExit) as exited:
        run_stage(lambda: atomic.write_with(target, fail))
    message = capsys.readouterr().err
    assert exited.value.code == USER_ERROR_EXIT_CODE, message
    assert f"Cannot write '{target}': the library's own failure" in message
    assert list(target.parent.iterdir()) == []


@pytest.fixture
def big_onnx(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """An ONNX model whose weights (257 KiB) cannot fit the 64 KiB disk."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 256)).eval()
    export_onnx(model, (1, 16, 16), tmp_path / "model.onnx")
    return tmp_path / "model.onnx", model


def test_the_openvino_ir_is_saved_whole_through_the_scratch_folder(
    tmp_path: Path, big_onnx: tuple[Path, torch.nn.Module]
) -> None:
    onnx_path, model = big_onnx
    (tmp_path / "ir").mkdir()
    save_openvino_ir(onnx_path, tmp_path / "ir/shipped.xml")
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == ["shipped.bin", "shipped.xml"]
    image = torch.rand(1, 1, 16, 16)
    logits = load_runner("openvino", tmp_path / "ir/shipped.xml", 1)(image.numpy())
    torch.testing.assert_close(torch.from_numpy(logits), model(image), rtol=1e-4, atol=1e-5)


FILL_TINY_DISK = """
import sys
from pathlib import Path
import torch
from compress.commands.runner import run_stage
from compress.core import atomic
from compress.evaluation.inference import save_openvino_ir
from compress.models.checkpoints import save_checkpoint
disk, onnx_path, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 256))
writes = {
    "checkpoint": lambda: save_checkpoint(disk / "m.pt", model, "none", (1, 16, 16), 256),
    "openvino": lambda: atomic.replace_dir(
        disk / "openvino", lambda folder: save_openvino_ir(onnx_path, folder / "shipped.xml")
    ),
}
run_stage(writes[out])
"""


def _on_tiny_disk(disk: Path) -> tuple[str, ...]:
    """A command prefix that runs the rest with a 64 KiB tmpfs mounted on `disk`, in a user
    and mount namespace of its own (nothing outside it sees the mount)."""
    mount = 'mount -t tmpfs -o size=64k tmpfs "$0" && exec "$@"'
    return ("unshare", "--map-root-user", "--mount", "sh", "-c", mount, str(disk))


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Path:
    """The mount point of the 64 KiB disk; skipped where no user namespace can mount one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("unshare") is None:
        pytest.skip("no unshare: cannot mount a small tmpfs")
    probe = subprocess.run([*_on_tiny_disk(disk), "true"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")
    return disk


@pytest.mark.parametrize("out", ["checkpoint", "openvino"])
def test_a_model_file_filling_a_real_disk_exits_with_the_transient_code(
    tiny_disk: Path, big_onnx: tuple[Path, torch.nn.Module], out: str
) -> None:
    """The whole path on a real filesystem: the atomic temporary file, torch's and OpenVINO's
    serialization, the stage's exit code. Before the bytes went through Python's file I/O,
    both failed with a RuntimeError (a traceback, exit 1)."""
    done = _stage(
        FILL_TINY_DISK, str(tiny_disk), str(big_onnx[0]), out, prefix=_on_tiny_disk(tiny_disk)
    )
    assert done.returncode == TRANSIENT_EXIT_CODE, done.stderr
    assert "transient I/O error" in done.stderr and str(tiny_disk) in done.stderr
