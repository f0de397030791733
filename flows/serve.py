"""Serve the model-update cycle as a scheduled Prefect deployment.

    python -m flows.serve            # serves `model-update-cycle/scheduled` until stopped

The cron schedule, its time zone and the concurrency limit come from `registry:` in
params.yaml. The limit (1) makes a second run of the same deployment wait in the queue
(ENQUEUE) instead of failing on DVC's repository lock."""

from __future__ import annotations

from pathlib import Path

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from compress.commands.runner import run_stage
from compress.config.params import load_params
from compress.core.artifacts import Artifacts
from flows.update_cycle import update_cycle

DEPLOYMENT_NAME = "scheduled"


def build_deployment(repo: Path) -> RunnerDeployment:
    settings = load_params(Artifacts(repo).params_file).registry
    return update_cycle.to_deployment(
        name=DEPLOYMENT_NAME,
        schedule=Cron(settings.schedule, timezone=settings.timezone),
        concurrency_limit=ConcurrencyLimitConfig(
            limit=settings.concurrency_limit,
            collision_strategy=ConcurrencyLimitStrategy.ENQUEUE,
        ),
        parameters={"repo": str(repo)},
        tags=["model-update"],
        description="Re-compress, compare with production, promote through the GTO registry.",
    )


def main() -> None:
    serve(build_deployment(Path.cwd().resolve()))


if __name__ == "__main__":
    run_stage(main)
