"""Write outs to a temporary file next to the target and rename it into place, so a killed
or failed run never leaves a half-written out that DVC or a later stage could take as valid.
Every out gets the mode the user's umask gives a new file (0644 under umask 022), not the
owner-only mode of a temporary file, so a model server or a teammate can read it."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compress.core.errors import PipelineError


def new_file_mode(directory: bool = False) -> int:
    """The mode `open()` / `mkdir()` would give a new file or folder under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto the target on success."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(handle)
        os.chmod(tmp_name, new_file_mode())
    except OSError as error:
        raise PipelineError(
            f"Cannot write '{target}': {error.strerror}. Check that the folder "
            f"'{target.parent}' exists, is writable and that the disk is not full."
        ) from error
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as error:
        raise PipelineError(
            f"Writing '{target}' failed: {error.strerror}. Nothing was written; free disk "
            f"space or fix the folder's permissions and run the stage again."
        ) from error
    finally:
        tmp_path.unlink(missing_ok=True)


def write_with(target: str | Path, writer: Callable[[Path], Any]) -> None:
    """Call writer(tmp_path) and move the result onto target atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)


def write_json(target: str | Path, payload: Any) -> None:
    write_with(target, lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))


def write_text(target: str | Path, text: str) -> None:
    write_with(target, lambda tmp: tmp.write_text(text))


def replace_dir(target: str | Path, builder: Callable[[Path], None]) -> None:
    """Build a whole folder out in a temporary sibling, then swap it in."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tmp_dir.chmod(new_file_mode(directory=True))
        builder(tmp_dir)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp_dir, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_csv(target: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rows with the same keys as a CSV file (DVC plots read it directly)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text(target, buffer.getvalue())
