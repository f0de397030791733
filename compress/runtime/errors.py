"""The one error type for a caller's mistake (a model without a contract, an image of the wrong
shape, a path that matches nothing): its message names the culprit and the fix. The pipeline's
own `PipelineError` is a kind of it, so one handler serves both."""

from __future__ import annotations

# EX_TEMPFAIL: an I/O error that may pass on a retry; orchestrators retry this code only.
TRANSIENT_EXIT_CODE = 75


class InputError(Exception):
    """A problem in what the caller passed: the message names it and the fix."""
