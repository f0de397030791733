"""The work pool the search's trials run on: the `compress/search-trial` deployment and the
local `process` workers that run it (or the team's own deployment and workers, kept as they are)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO

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


def worker_log(repo: Path) -> Path:
    """Where the local workers write: what a crashed worker said, kept for the error message."""
    return repo / "reports" / "search" / "workers.log"


def all_exited(workers: list[subprocess.Popen]) -> bool:
    """Whether the search started local workers and every one of them has exited."""
    return bool(workers) and all(worker.poll() is not None for worker in workers)


def start_workers(pool: str, count: int, log: Path) -> list[subprocess.Popen]:
    """`prefect worker start` processes of this environment, one flow run each at a time, their
    output appended to `log`."""
    prefect = str(Path(sys.executable).parent / "prefect")
    env = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()} | torch_threads(count)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as sink:  # each worker holds its own copy of the descriptor
        return start(prefect, pool, count, env, sink)


def torch_threads(workers: int) -> dict[str, str]:
    """Each of `workers` trials on this machine gets an equal share of its cores for torch
    (OMP_NUM_THREADS, unless set already): trials side by side with a thread per core each
    slow each other many times over on a small machine."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}


def start(prefect: str, pool: str, count: int, env: dict, sink: IO[str]) -> list[subprocess.Popen]:
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
            stdout=sink,
            stderr=subprocess.STDOUT,
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
