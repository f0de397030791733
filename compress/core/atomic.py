"""Write outs to a temporary file next to the target, flush it, and rename it into place, so a
killed or failed run (or a power cut) never leaves a half-written out that DVC or a later stage
could take as valid.
Every out gets the mode the user's umask gives a new file (0644 under umask 022), not the
owner-only mode of a temporary file, so a model server or a teammate can read it."""

from __future__ import annotations

import csv
import errno
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
from compress.runtime.errors import is_transient


def new_file_mode(directory: bool = False) -> int:
    """The mode `open()` / `mkdir()` would give a new file or folder under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entries to the disk: a rename is durable only once the
    folder holding it is synced, and the renamed file's data only once the file is. Some
    network and FUSE filesystems cannot sync a folder (EINVAL, ENOTSUP): nothing more to do."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    except OSError as error:
        if not (path.is_dir() and error.errno in (errno.EINVAL, errno.ENOTSUP)):
            raise
    finally:
        os.close(handle)


def _write_failed(target: Path, error: OSError) -> Exception:
    """A transient error stays an OSError (exit 75: a retry may pass); a permission, a missing
    folder or an error without an errno (whose `strerror` is None, so its text stands in)
    becomes the user's PipelineError (exit 1) naming the path."""
    reason = error.strerror or str(error)
    if is_transient(error):
        return OSError(
            error.errno,
            f"Writing '{target}' failed: {reason}. Nothing was written; free disk "
            "space (or wait for the mount) and run the stage again",
        )
    return PipelineError(
        f"Cannot write '{target}': {reason}. Nothing was written; check that the "
        f"folder '{target.parent}' exists and is writable by this user, then run again."
    )


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success flush it to disk, rename it
    onto the target and flush the folder."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(handle)
        os.chmod(tmp_name, new_file_mode())
    except OSError as error:
        raise _write_failed(target, error) from error
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        fsync_path(tmp_path)
        os.replace(tmp_path, target)
        fsync_path(target.parent)
    except OSError as error:
        raise _write_failed(target, error) from error
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


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
        fsync_path(path)
    fsync_path(folder)


def _recover(target: Path) -> None:
    """What a run killed mid-swap left: when the target is missing, the old folder it had
    moved aside (`.<name>.*.old`) goes back; then the other hidden leftovers go."""
    leftovers = sorted(p for p in target.parent.glob(f".{target.name}.*") if p.is_dir())
    set_aside = [p for p in leftovers if p.name.endswith(".old")]
    if not target.exists() and set_aside:
        os.replace(set_aside[-1], target)
    for leftover in leftovers:
        shutil.rmtree(leftover, ignore_errors=True)


def replace_dir(target: str | Path, builder: Callable[[Path], None]) -> None:
    """Build a whole folder out in a temporary sibling, flush it, then swap it in by renames
    only: the old folder is moved aside, the new one renamed in, the old one removed. A kill
    never leaves a mix of old and new files: between the two renames the target is missing
    and the old folder waits aside, and the next call puts it back before it starts."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _recover(target)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as error:
        raise _write_failed(target, error) from error
    aside = target.parent / f"{tmp_dir.name}.old"
    try:
        tmp_dir.chmod(new_file_mode(directory=True))
        builder(tmp_dir)
        _fsync_tree(tmp_dir)
        if target.exists():
            os.replace(target, aside)
        os.replace(tmp_dir, target)
        fsync_path(target.parent)
    except OSError as error:
        if aside.exists() and not target.exists():
            os.replace(aside, target)  # put the old folder back
        raise _write_failed(target, error) from error
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if target.exists():  # never the only copy
            shutil.rmtree(aside, ignore_errors=True)


def write_csv(target: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rows with the same keys as a CSV file (DVC plots read it directly)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text(target, buffer.getvalue())
