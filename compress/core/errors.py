"""One error type for every problem a user can fix in the pipeline's inputs or params: a kind of
the runtime's `InputError`, so one handler turns both into exit code 1; and a failed external
command's output turned into the error the errno table sorts."""

from __future__ import annotations

import errno
import os

from compress.runtime.errors import InputError


class PipelineError(InputError):
    """A problem in the user's inputs or params: the message names the culprit and the fix."""


def error_from_output(command: str, output: str, advice: str) -> Exception:
    """A failed command's output as the error the errno table sorts: an OSError carrying the
    errno whose message the output names (a full disk: transient, exit 75; a permission: the
    user's, exit 1), else a PipelineError (exit 1)."""
    message = f"`{command}` failed: {output.strip()} {advice}"
    for code in sorted(errno.errorcode, key=lambda c: -len(os.strerror(c))):
        if os.strerror(code) in output:
            return OSError(code, message)
    return PipelineError(message)
