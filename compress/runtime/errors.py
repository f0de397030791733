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

# A full disk or quota, a device or network-mount hiccup, a busy or interrupted call: the same
# command may succeed later. Anything else (EACCES, EPERM, EROFS, ENOENT, ENOTDIR, EISDIR, ...)
# needs the user to fix a path or a permission: retrying cannot help.
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
        errno.ECONNRESET,
    }
)


class InputError(Exception):
    """A problem in what the caller passed: the message names it and the fix."""


USER_OS_ERRORS = (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


def is_transient(error: OSError) -> bool:
    """Transient by errno; without one (raised by a library), a missing path or a permission
    is the user's, anything else may pass on a retry."""
    if error.errno is None:
        return not isinstance(error, USER_OS_ERRORS)
    return error.errno in TRANSIENT_ERRNOS


def exit_for(error: Exception, advice: str) -> NoReturn:
    """Print one paragraph and exit: 1 for the caller's mistakes (an InputError, a permission
    or missing path), 75 for an I/O error a retry may cure."""
    if isinstance(error, OSError) and is_transient(error):
        print(f"\nERROR: transient I/O error: {error}. {advice}\n", file=sys.stderr)
        sys.exit(TRANSIENT_EXIT_CODE)
    if isinstance(error, OSError):
        print(
            f"\nERROR: {error}. Fix the path or its permissions, then rerun (a retry alone "
            "cannot help).\n",
            file=sys.stderr,
        )
        sys.exit(USER_ERROR_EXIT_CODE)
    print(f"\nERROR: {error}\n", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT_CODE)
