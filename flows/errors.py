"""How a stage run by a flow failed: for a person to fix, or transient (a retry may pass). Kept
apart from flows/compress.py so `python -m flows.compress`, which runs that file as __main__,
raises the same classes its command-line edge (flows/entry.py) catches."""

from __future__ import annotations


class StageFailed(RuntimeError):
    """A stage failed for a reason a retry cannot fix (a data check, a gate, bad params)."""


class TransientStageError(RuntimeError):
    """A stage failed for a reason that may pass (a locked DVC repo, an I/O error)."""
