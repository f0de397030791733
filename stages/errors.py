"""One error type for every problem a user can fix, and the CLI edge that prints it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

# EX_TEMPFAIL: an I/O error that may pass on a retry; orchestrators retry this code only.
TRANSIENT_EXIT_CODE = 75


class PipelineError(Exception):
    """A problem in the user's inputs or params: the message names the culprit and the fix."""


def run_stage(main: Callable[[], None], validate_params: bool = True) -> None:
    """Run a stage's main() after validating params.yaml: log setup, and turn a PipelineError into one readable paragraph
    and exit code 1 instead of a traceback; an OSError (disk full, read-only folder, a vanished
    network mount) into one paragraph and TRANSIENT_EXIT_CODE."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("great_expectations", "torch_pruning", "nncf"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if validate_params:  # the whole params.yaml, so a typo anywhere fails before any work
            from stages.config import check_all

            check_all()
        main()
    except PipelineError as error:
        print(f"\nERROR: {error}\n", file=sys.stderr)
        sys.exit(1)
    except OSError as error:
        print(
            f"\nERROR: I/O error: {error}. Nothing was half-written (outs are written to a "
            "temporary file and renamed); free disk space or fix the folder's permissions, "
            "then rerun.\n",
            file=sys.stderr,
        )
        sys.exit(TRANSIENT_EXIT_CODE)
