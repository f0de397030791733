"""The work pool the search's trials run on: the `compress/search-trial` deployment and the
local `process` workers that run it (or the team's own deployment and workers, kept as they are)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import PREFECT_API_URL
from prefect.workers.process import ProcessWorker

from flows.compress import compress

DEPLOYMENT = "search-trial"


def deploy_trials(repo: Path, pool: str) -> str:
    """The compress flow as a deployment on the pool (a `process` pool is created if missing)."""
    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template)
            )
        except ObjectAlreadyExists:
            pass
    # a module path, not flows/compress.py: loaded as a file it would shadow the package
    source = compress.from_source(source=str(repo), entrypoint="flows.compress.compress")
    source.deploy(
        name=DEPLOYMENT,
        work_pool_name=pool,
        build=False,
        push=False,
        print_next_steps=False,
        ignore_warnings=True,
        job_variables={"env": {"PATH": os.environ.get("PATH", "")}},
    )
    return f"compress/{DEPLOYMENT}"


def existing_deployment() -> str | None:
    """A `compress/search-trial` deployed by the team (e.g. from git, with an image) is kept."""
    name = f"compress/{DEPLOYMENT}"
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None
    return name


def start_workers(pool: str, count: int) -> list[subprocess.Popen]:
    """`prefect worker start` processes of this environment, one flow run each at a time."""
    prefect = str(Path(sys.executable).parent / "prefect")
    env = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()}
    return [
        subprocess.Popen(
            [
                prefect,
                "worker",
                "start",
                "--pool",
                pool,
                "--type",
                "process",
                "--limit",
                "1",
                "--name",
                f"{pool}-{index}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
