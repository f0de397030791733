"""Flow `search`: the best recipe for the goals in `search:`, not the first that passes.

Optuna (multi-objective TPE, goals as constraints) proposes params; each trial is a flow run of
the `compress/search-trial` deployment on the Prefect work pool `search.work_pool`, i.e. the
compress flow with params overrides as a DVC experiment (`dvc exp run --temp`), so it is
reproducible, `dvc exp apply <name>` brings it into the workspace, and stages it does not change
are not recomputed (DVC's run cache). Locally the flow creates a `process` pool and starts
`search.workers` workers. The deployment runs the repository from its local path; to spread
trials over machines, give the pool's workers the repository at that path (a shared volume or
an image built with it) or deploy from git instead, and set `start_workers: false`. The study
lives in a journal file under reports/search/, so a killed search resumes where it stopped.

    python -m flows.search          # needs a Prefect server: PREFECT_API_URL"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import optuna
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.client.schemas.objects import State
from prefect.deployments import run_deployment
from prefect.states import Cancelling

from compress.commands.runner import run_stage
from compress.config.file import PARAMS_FILE
from compress.config.params import load_params
from compress.config.search import SearchParams, checked_search
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.search.recipe_search import (
    CONFIRMATION_SETTINGS,
    GOALS,
    TRIAL_SETTINGS,
    best_trial,
    confirmation_result,
    distributions,
    flat_row,
    open_study,
    overrides,
    trial_model,
    write_search_report,
)
from flows.pool import deploy_trials, existing_deployment, start_workers, stop_workers

REPORT_DIR = Path("reports/search")
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


def submit(deployment: str, repo: Path, study: str, trial: optuna.Trial, params: dict) -> str:
    name, record = f"{study}-t{trial.number}", f"{study}-trial-{trial.number}"
    run_id = start_run(deployment, repo, params | TRIAL_SETTINGS, name, record)
    trial.set_user_attr("flow_run_id", run_id)
    trial.set_user_attr("record", record)
    return run_id


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


def finish(study: optuna.Study, trial: optuna.Trial, state: str, search: SearchParams) -> None:
    """Tell Optuna how the trial's flow run went; its row goes into the trial's user attrs."""
    run_id = trial.user_attrs["flow_run_id"]
    record = read_record(trial.user_attrs["record"], run_id) if state == "COMPLETED" else None
    if record is None:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    model = trial_model(record["evaluation"], search)
    params = {k: v for k, v in record["overrides"].items() if k not in TRIAL_SETTINGS}
    row = {"trial": trial.number, "experiment": record["experiment"], "params": params}
    row |= {key: value for key, value in model.items() if key != "values"}
    row |= {key: record[key] for key in ("stages_ran", "stages_skipped", "seconds")}
    trial.set_user_attr("row", row)
    for goal, shortfall in zip(GOALS, model["violations"], strict=True):
        trial.set_constraint(goal, shortfall)  # TPE learns which params meet the goals
    study.tell(trial, model["values"])


def requeue(study: optuna.Study, trial: optuna.Trial, run_id: str | None, why: str) -> None:
    """Cancel the trial's flow run (a worker still running it kills its process) and queue its
    params again, not counted against max_trials: a resumed search runs it, and the stages it
    completed come back from DVC's run cache."""
    if run_id:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Cancelling(), force=True)
    trial.set_user_attr("requeued", True)
    params = trial.params
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial(params)
    get_run_logger().info("Trial %d %s: queued again", trial.number, why)


def in_flight(study: optuna.Study, search: SearchParams) -> None:
    """Trials a killed search left running: a flow run that completed meanwhile is collected;
    one still pending, orphaned, or ended otherwise (the kill that stopped the search takes its
    workers and their flow runs along: CRASHED, FAILED) is queued again, so it does not count
    against max_trials as a failed recipe."""
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial = optuna.Trial(study, frozen._trial_id)
        run_id = frozen.user_attrs.get("flow_run_id")
        done, state = flow_run(run_id) if run_id else (False, "NOT SUBMITTED")
        if done and state == "COMPLETED":
            finish(study, trial, state, search)
            get_run_logger().info("Trial %d completed while the search was down", trial.number)
        else:  # a run that ended needs no cancelling
            requeue(study, trial, None if done else run_id, f"was cut off ({state})")


DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
NOT_STARTED = ("SCHEDULED", "PENDING")


def run_trials(
    study: optuna.Study,
    search: SearchParams,
    deployment: str,
    repo: Path,
    name: str,
    workers: list[subprocess.Popen],
) -> None:
    """Keep `search.workers` trials in flight until the budget or the goals say stop."""
    logger = get_run_logger()
    started, space = time.monotonic(), distributions(search.space)
    in_flight(study, search)
    pending: dict[str, optuna.Trial] = {}
    while True:
        finished = [
            trial
            for trial in study.get_trials(deepcopy=False, states=DONE)
            if not trial.user_attrs.get("requeued")
        ]
        met = any(t.user_attrs.get("row", {}).get("passes") for t in finished)
        stop = (search.stop_when_goals_met and met) or (
            time.monotonic() - started > search.max_minutes * 60
        )
        while (
            not stop
            and len(pending) < search.workers
            and len(finished) + len(pending) < search.max_trials
        ):
            trial = study.ask(space)
            params = overrides(trial.params, search.space)
            pending[submit(deployment, repo, name, trial, params)] = trial
            logger.info("Trial %d submitted: %s", trial.number, params)
        if not pending:
            return
        if workers and all(worker.poll() is not None for worker in workers):
            raise PipelineError(
                f"Every local worker of pool '{search.work_pool}' exited; trials cannot run. "
                f"Start one by hand to see why: prefect worker start --pool {search.work_pool}"
            )
        time.sleep(POLL_SECONDS)
        for run_id, trial in list(pending.items()):
            done, state = flow_run(run_id)
            if done:
                finish(study, trial, state, search)
                logger.info("Trial %d: %s", trial.number, state)
                del pending[run_id]
            elif stop and state in NOT_STARTED:  # no worker took it within the budget
                requeue(study, trial, run_id, f"had not started when the budget ran out ({state})")
                del pending[run_id]


@flow(name="search", log_prints=True)
def search(repo: str = ".", study: str = "search") -> dict[str, Any]:
    """Search `search.space` for the best recipe; the study `study` resumes if it exists."""
    root = Path(repo).resolve()
    params_file = Artifacts(root).params_file
    settings = checked_search(load_params(params_file), params_file)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", study):
        raise PipelineError(
            f"Study name '{study}' names the trials' artifacts and experiments: use lowercase "
            "letters, digits and dashes (e.g. search-2)."
        )
    optuna_study = open_study(root / REPORT_DIR / "study.journal", study, settings.seed)
    deployment = existing_deployment() if not settings.start_workers else None
    deployment = deployment or deploy_trials(root, settings.work_pool)
    workers = start_workers(settings.work_pool, settings.workers) if settings.start_workers else []
    try:
        run_trials(optuna_study, settings, deployment, root, study, workers)
        completed = optuna_study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        rows = [trial.user_attrs["row"] for trial in completed]
        best = best_trial(rows, settings.objective)
        confirmation = best and confirm(optuna_study, best, deployment, root, workers)
    finally:
        stop_workers(workers)
    best = write_search_report(rows, settings, confirmation, root / REPORT_DIR)
    publish(rows, root / REPORT_DIR)
    return {"trials": len(rows), "best": best}


def confirm(
    study: optuna.Study, best: dict, deployment: str, repo: Path, workers: list[subprocess.Popen]
) -> dict:
    """The best trial read on the test split, once: its params rerun with evaluate's
    confirmation (the other stages come back from DVC's run cache). A resumed search whose best
    trial is unchanged reuses the confirmation kept in the study."""
    kept = study.user_attrs.get("confirmation")
    if kept and kept["trial"] == best["trial"]:
        return kept
    name = f"{study.study_name}-t{best['trial']}-confirmed"
    run_id = start_run(deployment, repo, best["params"] | CONFIRMATION_SETTINGS, name, name)
    get_run_logger().info("Confirming trial %d on the test split: %s", best["trial"], name)
    state = wait_for(run_id, workers)
    record = read_record(name, run_id) if state.type.value == "COMPLETED" else None
    result = confirmation_result(best["trial"], name, record, state.message or state.name)
    study.set_user_attr("confirmation", result)
    return result


def wait_for(run_id: str, workers: list[subprocess.Popen]) -> State:
    """The final state of a flow run, polled while a worker can still run it."""
    while True:
        state = read_state(run_id)
        if state.is_final():
            return state
        if workers and all(worker.poll() is not None for worker in workers):
            raise PipelineError(
                "Every local worker exited before the best trial's confirmation ran; run the "
                "search again to confirm it."
            )
        time.sleep(POLL_SECONDS)


def publish(rows: list[dict], folder: Path) -> None:
    table = [flat_row(row) for row in rows]
    create_table_artifact(key="search-trials", table=table, description="Every finished trial")
    create_markdown_artifact(
        key="search-best", markdown=(folder / "trials.md").read_text(), description="Best trial"
    )


def main() -> None:
    checked_search(load_params(), PARAMS_FILE)  # exit 1 naming it, before any flow run
    search()


if __name__ == "__main__":
    run_stage(main)
