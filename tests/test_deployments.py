"""prefect.yaml: `prefect deploy --all` in a copy of the repository creates the scheduled
model-update cycle and the search's trial deployment on a local Prefect server, run from the
copy's directory; its schedule, limit and pool agree with params.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.settings import PREFECT_API_URL
from prefect.workers.process import ProcessWorker

from compress.config.params import load_params
from tests.repos import REPO_ROOT, copy_repo

SPEC = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {deployment["name"]: deployment for deployment in SPEC["deployments"]}


def test_prefect_yaml_copies_the_params_it_declares() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    cycle, trial = DEPLOYMENTS["scheduled"], DEPLOYMENTS["search-trial"]
    assert cycle["schedules"] == [
        {"cron": params.registry.schedule, "timezone": params.registry.timezone}
    ]
    assert cycle["concurrency_limit"]["limit"] == params.registry.concurrency_limit
    assert trial["work_pool"]["name"] == params.search.work_pool


def test_deploy_all_creates_the_cycle_and_the_search_trial(harness, tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo").resolve()
    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        for pool in {d["work_pool"]["name"] for d in DEPLOYMENTS.values()}:
            client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template)
            )
    bin_dir = Path(sys.executable).parent
    env = os.environ | {
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        [str(bin_dir / "prefect"), "--no-prompt", "deploy", "--all"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with get_client(sync_client=True) as client:
        cycle = client.read_deployment_by_name("model-update-cycle/scheduled")
        trial = client.read_deployment_by_name("compress/search-trial")
    assert [s.schedule.cron for s in cycle.schedules] == ["0 3 * * 1"]
    assert cycle.global_concurrency_limit.limit == 1
    assert cycle.concurrency_options.collision_strategy == "ENQUEUE"
    assert (cycle.work_pool_name, trial.work_pool_name) == ("model-update", "compress-search")
    for deployment in (cycle, trial):
        (step,) = deployment.pull_steps
        assert step["prefect.deployments.steps.set_working_directory"]["directory"] == str(repo)
