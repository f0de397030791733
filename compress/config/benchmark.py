"""The `benchmark:` section: how the training stages time their models."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from compress.config.section import Section


class BenchmarkParams(Section):
    section: ClassVar[str] = "benchmark"

    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8, 32], min_length=1)
    warmup_runs: int = Field(5, ge=0, le=1000)
    timed_runs: int = Field(30, ge=3, le=100_000)
    intra_op_threads: int = Field(2, ge=1, le=256)
