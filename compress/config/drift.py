"""The `drift:` section: how far new data may move from production's (read by the cycle only)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from compress.config.section import Section


class DriftParams(Section):
    """How far new data may move from the data production was trained on (the update cycle)."""

    section: ClassVar[str] = "drift"

    mean_tolerance: float = Field(0.05, gt=0.0, le=1.0)
    std_tolerance: float = Field(0.05, gt=0.0, le=1.0)
    class_share_tolerance: float = Field(0.05, gt=0.0, le=1.0)
    format_share_tolerance: float = Field(0.05, gt=0.0, le=1.0)
    accept: bool = False
