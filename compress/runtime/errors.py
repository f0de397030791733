"""The one error type for a caller's mistake (a model without a contract, an image of the wrong
shape, a path that matches nothing): its message names the culprit and the fix. The pipeline's
own `PipelineError` is a kind of it, so one handler serves both. And the one table that sorts
I/O errors into transient (retry) and the user's to fix."""

from __future__ import annotations

import errno
import sys
from typing import NoReturn

# EX_TEMPFAIL: an I/O error that may pass on a retry; orchestrators retry this code only.
TRANSIENT_EXIT_CODE = 75
USER_ERROR_EXIT_CODE = 1

# A full disk or quota, a device or network-mount hiccup (a stale handle, a vanished mount), a
# busy or interrupted call: the same command may succeed later. Anything else (EACCES, EPERM,
# EROFS, ENOENT, ENOTDIR, EISDIR, ...), and an OSError without an errno, needs the user to fix a
# path or a permission: retrying cannot help.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EAGAIN,
        errno.EINTR,
        errno.EBUSY,
        errno.ETIMEDOUT,
        errno.ESTALE,
        errno.ENOTCONN,
        errno.ECONNRESET,
    }
)


class InputError(Exception):
    """A problem in what the caller passed: the message names it and the fix."""


def is_transient(error: OSError) -> bool:
    """Transient by errno only. An OSError without one (a library's own, which knows no cause)
    gives no reason to expect a retry to pass, and retrying it would only delay the paragraph
    that names its path: it is the user's (exit 1)."""
    return error.errno in TRANSIENT_ERRNOS


def _describe(error: OSError) -> str:
    """The error's text, with the path it carries when the text does not name it (a library's
    OSError may set `filename` and leave it out of its message)."""
    text = str(error)
    if error.filename is not None and str(error.filename) not in text:
        return f"{text} (path: {error.filename})"
    return text


def exit_for(error: Exception, advice: str) -> NoReturn:
    """Print one paragraph and exit: 1 for the caller's mistakes (an InputError, a permission
    or missing path, an OSError without an errno), 75 for an I/O error a retry may cure; the
    path is named whenever the error carries one."""
    if isinstance(error, OSError) and is_transient(error):
        print(f"\nERROR: transient I/O error: {_describe(error)}. {advice}\n", file=sys.stderr)
        sys.exit(TRANSIENT_EXIT_CODE)
    if isinstance(error, OSError):
        print(
            f"\nERROR: {_describe(error)}. Fix the path or its permissions, then rerun (a retry "
            "alone cannot help).\n",
            file=sys.stderr,
        )
        sys.exit(USER_ERROR_EXIT_CODE)
    print(f"\nERROR: {error}\n", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT_CODE)
