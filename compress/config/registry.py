"""The `registry:` section: the model-update cycle's registry, its promotion policy (accuracy
first, deployment budgets, approval) and schedule (read by the flows only)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import Field, model_validator

from compress.config.section import Section


class RegistryParams(Section):
    section: ClassVar[str] = "registry"

    artifact: str = Field("shipped-model", pattern=r"^[a-z0-9][a-z0-9-]*$")
    stage: str = Field("prod", pattern=r"^[a-z0-9][a-z0-9-]*$")
    tolerance: float = Field(0.005, ge=0.0, le=1.0)
    min_gain: float = Field(0.0, ge=0.0, le=1.0)
    confidence: float = Field(0.0, ge=0.0, lt=1.0)
    min_objective_gain: float = Field(0.05, ge=0.0, lt=1.0)
    max_size_bytes: int | None = Field(None, ge=1)
    max_latency_ms_batch_1: float | None = Field(None, gt=0.0)
    budget_margin: float = Field(0.1, ge=0.0, le=1.0)
    approval: Literal["never", "always", "when_uncertain"] = "when_uncertain"
    approval_timeout_hours: float = Field(24.0, gt=0.0, le=24 * 30)
    schedule: str = "0 3 * * 1"
    timezone: str = "UTC"
    concurrency_limit: int = Field(1, ge=1, le=1)
    push: bool = True

    @model_validator(mode="after")
    def _valid_schedule(self) -> RegistryParams:
        """The cron grammar Prefect's scheduler uses (cronsim) and an IANA time zone."""
        try:
            CronSim(self.schedule, datetime.now(ZoneInfo(self.timezone)))
        except (CronSimError, ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(
                f"registry.schedule '{self.schedule}' / registry.timezone '{self.timezone}' is "
                f"not a valid cron schedule ({error}; e.g. '0 3 * * 1' and 'UTC')"
            ) from error
        return self
