"""Flow `compress`: the DVC pipeline as Prefect tasks, one per stage of `dvc.yaml`, in DAG order.

DVC still decides what is up to date (`dvc repro --single-item`), so an unchanged stage is
reported as skipped. The flow adds what a scheduler needs: per-stage logs and durations,
retries with back-off for transient failures only, and artifacts that show the outcome in the
Prefect UI. With `params` overrides the pipeline runs as a DVC experiment in a temporary
directory (`dvc exp run --temp -S ...`), so the user's `params.yaml` is never edited."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.tasks import exponential_backoff

from compress.config.params import load_params
from compress.core.artifacts import Artifacts
from compress.runtime.errors import TRANSIENT_EXIT_CODE
from compress.search.recipe_search import trial_summary
from flows.entry import parse_settings, run_flow
from flows.errors import StageFailed, TransientStageError
from flows.publish import publish_results

# Output of DVC or of a stage that says "try again later": a lock held by another DVC process
# or a stage that exited with the transient code (an I/O error).
TRANSIENT_PATTERNS = (
    "Unable to acquire lock",
    "lock is held",
    f"exited with {TRANSIENT_EXIT_CODE}",
)


@dataclass
class StageRun:
    stage: str
    ran: bool
    seconds: float


def _environment() -> dict[str, str]:
    """This interpreter's environment first on PATH, so that a flow served from a virtual
    environment runs that environment's `dvc` and the stages' `python`."""
    bin_dir = str(Path(sys.executable).parent)
    return os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["dvc", *args], cwd=repo, capture_output=True, text=True, env=_environment()
    )


def stream_dvc(repo: Path, log: Callable[[str], None], *args: str) -> tuple[int, str]:
    """Run `dvc` and log its output (and the stage's: epochs, rounds) line by line as it comes,
    so a long stage shows progress in the Prefect UI. Returns the exit code and the output."""
    process = subprocess.Popen(
        ["dvc", *args],
        cwd=repo,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        log(line.rstrip())
    return process.wait(), "".join(lines)


def pipeline_stages(repo: Path, until: str | None = None) -> list[str]:
    """Stage names in DAG order, read from dvc.yaml through DVC; with `until`, only that stage
    and the stages it depends on."""
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(str(repo)) as dvc_repo:
        graph = dvc_repo.index.graph  # edges point from a stage to the stages it depends on
        ordered = [
            stage
            for stage in reversed(list(nx.topological_sort(graph)))
            if isinstance(stage, PipelineStage)
        ]
        if until is None:
            return [stage.name for stage in ordered]
        by_name = {stage.name: stage for stage in ordered}
        if until not in by_name:
            raise StageFailed(
                f"Unknown stage '{until}' for the flow parameter `until`; the stages in "
                f"dvc.yaml are: {', '.join(by_name)}."
            )
        needed = nx.descendants(graph, by_name[until]) | {by_name[until]}
        return [stage.name for stage in ordered if stage in needed]


def stage_changed(repo: Path, stage: str) -> bool:
    """Whether DVC would rerun the stage: `dvc status --json` lists it with what changed, and
    answers `{}` for a stage that is up to date (its upstream stages ran before it)."""
    result = run_dvc(repo, "status", "--json", stage)
    if result.returncode != 0:
        message = f"`dvc status {stage}` failed: {result.stderr.strip()[-2000:]}"
        if any(pattern in result.stderr for pattern in TRANSIENT_PATTERNS):
            raise TransientStageError(message)
        raise StageFailed(message)
    return bool(json.loads(result.stdout or "{}"))


def failure_message(output: str) -> str:
    """The stage's own ERROR paragraph and DVC's summary line; the output's tail when the stage
    died without one (a traceback)."""
    errors = re.findall(r"^ERROR: .*$", output, flags=re.MULTILINE)
    if len(errors) > 1:
        return "\n".join(errors)
    return "\n".join([*errors, output.strip()[-2000:]])


def _retry_only_transient(task: Any, task_run: Any, state: Any) -> bool:
    error = state.data if isinstance(state.data, BaseException) else None
    return isinstance(error, TransientStageError)


@task(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_only_transient,
    task_run_name="{stage}",
)
def dvc_stage(repo: Path, stage: str) -> StageRun:
    """`dvc repro --single-item <stage>` when `dvc status` says its deps, params or outs changed
    (DVC then runs it, or restores its outs from the run cache); skipped when up to date."""
    logger = get_run_logger()
    started = time.perf_counter()
    if not stage_changed(repo, stage):
        logger.info("Stage '%s' skipped (up to date)", stage)
        return StageRun(stage, False, round(time.perf_counter() - started, 2))
    returncode, output = stream_dvc(repo, logger.info, "repro", "--single-item", stage)
    seconds = time.perf_counter() - started
    if returncode != 0:
        message = f"Stage '{stage}' failed after {seconds:.1f} s:\n{failure_message(output)}"
        logger.error(message)
        if any(pattern in output for pattern in TRANSIENT_PATTERNS):
            raise TransientStageError(message)
        raise StageFailed(message)
    logger.info("Stage '%s' ran in %.1f s", stage, seconds)
    return StageRun(stage, True, round(seconds, 2))


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=_retry_only_transient)
def dvc_experiment(
    repo: Path,
    overrides: dict[str, Any],
    until: str | None,
    experiment: str | None = None,
    record: str | None = None,
) -> dict[str, Any]:
    """The pipeline with params overrides, as a DVC experiment in a temporary directory (named
    `experiment` when given). With `record`, the experiment's stages and evaluation are also
    published as a Prefect artifact under that key, for a search that runs it on a worker."""
    logger = get_run_logger()
    settings = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    name = experiment or f"compress-{time.strftime('%Y%m%d-%H%M%S')}"
    lock_before = stage_locks(
        (repo / "dvc.lock").read_text() if (repo / "dvc.lock").exists() else ""
    )
    args = ["exp", "run", "--temp", "--name", name]
    args += [arg for s in settings for arg in ("-S", s)]
    started = time.perf_counter()
    returncode, output = stream_dvc(repo, logger.info, *args, *([until] if until else []))
    if returncode != 0:
        message = f"Experiment with {', '.join(settings)} failed:\n{failure_message(output)}"
        if any(pattern in output for pattern in TRANSIENT_PATTERNS):
            raise TransientStageError(message)
        raise StageFailed(message)
    diff = run_dvc(repo, "exp", "diff", "HEAD", name, "--md").stdout
    create_markdown_artifact(
        key="compress-experiment",
        markdown=f"# Experiment `{name}`\n\nOverrides: `{' '.join(settings)}`\n\n{diff}\n\n"
        f"Apply it to the workspace with `dvc exp apply {name}`.",
        description="Params overrides run as a DVC experiment",
    )
    summary = {
        "experiment": name,
        "overrides": overrides,
        "seconds": round(time.perf_counter() - started, 1),
        **stages_run_and_skipped(lock_before, stage_locks(experiment_file(repo, name, LOCK))),
    }
    if record:
        evaluation = json.loads(experiment_file(repo, name, Artifacts.evaluate_metrics))
        summary["evaluation"] = trial_summary(evaluation)
        create_markdown_artifact(
            key=record,
            markdown=f"```json\n{json.dumps(summary, indent=1)}\n```",
            description=f"Trial result: experiment {name}",
        )
    return summary


LOCK = Path("dvc.lock")


def stage_locks(text: str) -> dict[str, Any]:
    """Each stage's entry in a dvc.lock: the md5 of its deps, params and outs as last run."""
    return (yaml.safe_load(text) or {}).get("stages", {})


def stages_run_and_skipped(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[str]]:
    """Which stages an experiment reran (or restored from DVC's run cache: new deps, params or
    outs in its dvc.lock) and which it left as they were, from the two lock files."""
    ran = [stage for stage, entry in after.items() if before.get(stage) != entry]
    return {"stages_ran": ran, "stages_skipped": sorted(set(after) - set(ran))}


def experiment_file(repo: Path, name: str, path: Path) -> str:
    """A git-tracked file (a metric) as the experiment `name` committed it."""
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    ref = next((r for r in refs if r.endswith(f"/{name}")), None)
    if ref is None:
        raise StageFailed(f"Experiment '{name}' has no git ref under refs/exps.")
    shown = subprocess.run(
        ["git", "show", f"{ref}:{path}"], cwd=repo, capture_output=True, text=True, check=True
    )
    return shown.stdout


@flow(name="compress", log_prints=True)
def compress(
    repo: str = ".",
    until: str | None = None,
    params: dict[str, Any] | None = None,
    experiment: str | None = None,
    record: str | None = None,
) -> list[dict]:
    """Run the pipeline's DVC stages as tasks. `until`: stop after this stage (and what it
    needs). `params`: overrides such as {"prune.target_ratio": 0.6}, run as a DVC experiment
    (named `experiment`; its result published under the artifact key `record`)."""
    root = Path(repo).resolve()
    load_params(Artifacts(root).params_file)
    if params:
        return [dvc_experiment(root, params, until, experiment, record)]
    runs = []
    for stage in pipeline_stages(root, until):
        runs.append(asdict(dvc_stage(root, stage)))
    publish_results(root)
    logger = get_run_logger()
    logger.info(
        "Stages run: %s; skipped: %s",
        ", ".join(r["stage"] for r in runs if r["ran"]) or "none",
        ", ".join(r["stage"] for r in runs if not r["ran"]) or "none",
    )
    return runs


def main() -> None:
    """`python -m flows.compress [--until STAGE] [--set KEY=VALUE ...]` (`compress run`)."""
    parser = argparse.ArgumentParser(description="Run the pipeline's stages as a Prefect flow.")
    parser.add_argument("--repo", default=".", help="the pipeline's git + DVC repository")
    parser.add_argument("--until", help="stop after this stage and the stages it needs")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params override (repeatable); with any, the run is a DVC experiment in a "
        "temporary directory and params.yaml is left as it is",
    )
    parser.add_argument("--experiment", help="the experiment's name (with --set)")
    args = parser.parse_args()
    run_flow(lambda: compress(args.repo, args.until, parse_settings(args.set), args.experiment))


if __name__ == "__main__":
    main()
