"""One error type for every problem a user can fix in the pipeline's inputs or params: a kind of
the runtime's `InputError`, so one handler turns both into exit code 1."""

from __future__ import annotations

from compress.runtime.errors import InputError


class PipelineError(InputError):
    """A problem in the user's inputs or params: the message names the culprit and the fix."""
