"""The `gate:` section: the teacher's quality gate (`validate_teacher`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from compress.config.section import Section


class GateParams(Section):
    section: ClassVar[str] = "gate"

    min_accuracy: float = Field(0.95, ge=0.0, le=1.0)
    min_class_accuracy: float = Field(0.85, ge=0.0, le=1.0)
