"""One error type for every problem a user can fix, and the exit code of a transient one."""

from __future__ import annotations

# EX_TEMPFAIL: an I/O error that may pass on a retry; orchestrators retry this code only.
TRANSIENT_EXIT_CODE = 75


class PipelineError(Exception):
    """A problem in the user's inputs or params: the message names the culprit and the fix."""
