"""The `registry:` section: the model-update cycle's registry, promotion tolerance and schedule
(read by the flows only)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import Field, model_validator

from compress.config.section import Section


class RegistryParams(Section):
    section: ClassVar[str] = "registry"

    artifact: str = Field("shipped-model", pattern=r"^[a-z0-9][a-z0-9-]*$")
    stage: str = Field("prod", pattern=r"^[a-z0-9][a-z0-9-]*$")
    tolerance: float = Field(0.005, ge=0.0, le=1.0)
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
