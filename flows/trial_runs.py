"""The search's trials as flow runs of the `compress/search-trial` deployment: started, polled
and read back through the Prefect API (their result is an artifact, so this works across
machines)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.client.schemas.objects import State
from prefect.deployments import run_deployment

from compress.core.errors import PipelineError
from flows.pool import all_exited

POLL_SECONDS = 5


def start_run(deployment: str, repo: Path, params: dict, name: str, record: str) -> str:
    """A flow run of the trial deployment: the pipeline with `params` as experiment `name`,
    its result published under the artifact key `record`. Returns the flow run's id."""
    run = run_deployment(
        deployment,
        parameters={"repo": str(repo), "params": params, "experiment": name, "record": record},
        timeout=0,
        as_subflow=False,
        flow_run_name=name,
    )
    return str(run.id)


def read_state(run_id: str) -> State:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def flow_run(run_id: str) -> tuple[bool, str]:
    """(finished, state name) of a trial's flow run."""
    state = read_state(run_id)
    return state.is_final(), state.type.value


def read_record(key: str, run_id: str) -> dict[str, Any] | None:
    """The trial's result the compress flow published as an artifact (works across machines)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run_id)]),
            )
        )
    if not found:
        return None
    text = str(found[0].data).strip().removeprefix("```json").removesuffix("```")
    return json.loads(text)


def wait_for(run_id: str, workers: list[subprocess.Popen], log: Path) -> State:
    """The final state of a flow run, polled while a worker can still run it."""
    while True:
        state = read_state(run_id)
        if state.is_final():
            return state
        if all_exited(workers):
            raise PipelineError(
                "Every local worker exited before the best trial's confirmation ran (their "
                f"output is in '{log}'); run the search again to confirm it."
            )
        time.sleep(POLL_SECONDS)
