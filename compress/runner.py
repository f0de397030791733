"""The edge of every stage: logging set up once, and a user's mistake turned into one readable
paragraph and exit code 1, a transient I/O error into TRANSIENT_EXIT_CODE, instead of a
traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from compress.errors import TRANSIENT_EXIT_CODE, PipelineError

QUIET_LIBRARIES = ("great_expectations", "torch_pruning", "nncf")


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in QUIET_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): a PipelineError exits 1 with its paragraph, an OSError (disk full,
    read-only folder, a vanished network mount) exits TRANSIENT_EXIT_CODE."""
    configure_logging()
    try:
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
