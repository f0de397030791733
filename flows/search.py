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

import argparse
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.states import Cancelling

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
from compress.search.studies import budget_spent, fresh_study_name
from flows.entry import positive_int, run_flow
from flows.pool import (
    all_exited,
    deploy_trials,
    existing_deployment,
    start_workers,
    stop_workers,
    worker_log,
)
from flows.trial_runs import POLL_SECONDS, flow_run, read_record, start_run, wait_for

REPORT_DIR = Path("reports/search")


def submit(deployment: str, repo: Path, study: str, trial: optuna.Trial, params: dict) -> str:
    name, record = f"{study}-t{trial.number}", f"{study}-trial-{trial.number}"
    run_id = start_run(deployment, repo, params | TRIAL_SETTINGS, name, record)
    trial.set_user_attr("flow_run_id", run_id)
    trial.set_user_attr("record", record)
    return run_id


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
        if all_exited(workers):
            raise PipelineError(
                f"Every local worker of pool '{search.work_pool}' exited; trials cannot run. "
                f"Their output is in '{worker_log(repo)}'; or start one by hand to see why: "
                f"prefect worker start --pool {search.work_pool}"
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
def search(
    repo: str = ".", study: str = "search", max_trials: int | None = None, fresh: bool = False
) -> dict[str, Any]:
    """Search `search.space` for the best recipe; the study `study` resumes if it exists, or
    with `fresh` a new one starts beside it. `max_trials` overrides search.max_trials."""
    root = Path(repo).resolve()
    params_file = Artifacts(root).params_file
    settings = checked_search(load_params(params_file), params_file)
    if max_trials is not None:
        settings = SearchParams(**(settings.model_dump() | {"max_trials": max_trials}))
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", study):
        raise PipelineError(
            f"Study name '{study}' names the trials' artifacts and experiments: use lowercase "
            "letters, digits and dashes (e.g. search-2)."
        )
    journal = root / REPORT_DIR / "study.journal"
    study = fresh_study_name(journal, study) if fresh else study
    optuna_study = open_study(journal, study, settings.seed)
    spent = budget_spent(optuna_study, settings.max_trials)
    if spent:
        get_run_logger().warning(spent)
    deployment = existing_deployment() if not settings.start_workers else None
    deployment = deployment or deploy_trials(root, settings.work_pool)
    workers = (
        start_workers(settings.work_pool, settings.workers, worker_log(root))
        if settings.start_workers
        else []
    )
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
    return {"study": study, "trials": len(rows), "best": best}


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
    state = wait_for(run_id, workers, worker_log(repo))
    record = read_record(name, run_id) if state.type.value == "COMPLETED" else None
    result = confirmation_result(best["trial"], name, record, state.message or state.name)
    study.set_user_attr("confirmation", result)
    return result


def publish(rows: list[dict], folder: Path) -> None:
    table = [flat_row(row) for row in rows]
    create_table_artifact(key="search-trials", table=table, description="Every finished trial")
    create_markdown_artifact(
        key="search-best", markdown=(folder / "trials.md").read_text(), description="Best trial"
    )


def main() -> None:
    """`python -m flows.search [--study NAME] [--trials N] [--fresh]` (`compress search`)."""
    parser = argparse.ArgumentParser(description="Search search.space for the best recipe.")
    parser.add_argument("--repo", default=".", help="the pipeline's git + DVC repository")
    parser.add_argument("--study", default="search", help="the Optuna study, resumed if it exists")
    parser.add_argument(
        "--trials", type=positive_int, help="max trials of the study (search.max_trials)"
    )
    parser.add_argument("--fresh", action="store_true", help="a new study beside a finished one")
    args = parser.parse_args()
    params_file = Path(args.repo) / PARAMS_FILE
    checked_search(load_params(params_file), params_file)  # exit 1 naming it, before any run
    search(args.repo, args.study, args.trials, args.fresh)


if __name__ == "__main__":
    run_flow(main)
