"""The command-line edge of the flows (`python -m flows.<name>`, which `compress run`, `compress
cycle` and `compress search` call): a stage that failed for a reason a person must fix exits 1
with its paragraph, a transient one with the transient code, as the stages do."""

from __future__ import annotations

import argparse
import errno
from collections.abc import Callable
from typing import Any

import yaml

from compress.commands.runner import run_stage
from compress.core.errors import PipelineError
from flows.errors import StageFailed, TransientStageError


def run_flow(call: Callable[[], Any]) -> None:
    def guarded() -> None:
        try:
            call()
        except StageFailed as error:
            raise PipelineError(str(error)) from error
        except TransientStageError as error:
            raise OSError(errno.EAGAIN, str(error)) from error

    run_stage(guarded)


def parse_settings(settings: list[str]) -> dict[str, Any]:
    """`key=value` pairs as params overrides; each value read as YAML (0.6, true, [a, b])."""
    overrides = {}
    for setting in settings:
        key, equals, value = setting.partition("=")
        if not equals or not key:
            raise PipelineError(
                f"--set '{setting}' is not key=value: write e.g. --set prune.target_ratio=0.6."
            )
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a trial budget)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of at least 1")
    return int(text)
