"""Flow `model-update-cycle`: bring the tracked inputs up to date, pull, check new data for
drift, re-compress, compare with production, promote or keep.

The model registry follows DVC's conventions: the shipped model is the `artifacts:` entry named
by `registry.artifact` in dvc.yaml; GTO git tags hold its versions and the `registry.stage`
(default `prod`) assignment, so `gto show` lists every version and which one serves. Older
versions stay retrievable as fallbacks (`dvc get . models/shipped.onnx --rev <tag>`). Every
decision is appended to registry/decisions.jsonl and published as a Prefect artifact, with what
changed since production: data and teacher hashes, images added or removed per class, the
params diff, the code commits and the stages DVC reran."""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task

from compress.config.drift import DriftParams
from compress.config.params import load_params
from compress.config.registry import RegistryParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.core.gitrepo import git, read_at
from compress.data.drift import check_drift, drift_report
from compress.evaluation.shipping import check_shipped
from compress.registry.log import barred_models, keep_if_barred, read_decisions
from flows.approval import announce_approval_route, ask_for_approval, needs_approval
from flows.changes import changes_since, imported_inputs, tracked_inputs
from flows.compress import StageFailed, compress, run_dvc
from flows.decisions import publish_decision, record
from flows.entry import run_flow
from flows.production import compare, production_model, production_splits
from flows.promotion import promote, refuse_uncommitted_code


@task
def pull_from_remote(repo: Path) -> str:
    """`dvc pull` what the default remote has (outs it lacks are rebuilt by the pipeline); an
    unset remote is skipped, a failed pull stops the cycle with DVC's error."""
    remote = run_dvc(repo, "remote", "default").stdout.strip()
    if not remote:
        return "no default remote"
    result = run_dvc(repo, "pull", "--allow-missing")
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise StageFailed(
            f"`dvc pull` failed: {output} Check the remote '{remote}' is reachable, then run "
            "the cycle again."
        )
    get_run_logger().info("dvc pull: %s", output or "nothing to pull")
    return output


@task
def update_inputs(repo: Path) -> dict[str, list[str]]:
    """Bring the tracked inputs up to date before anything runs: `dvc update` every input
    brought in with `dvc import-url` (new images or a new teacher at the source become new
    hashes), and `dvc commit` every input added with `dvc add` whose files changed in place
    (images copied into data/input/, a retrained teacher saved over the old one), so the new
    version is versioned, pushed with the model and what DVC reruns from."""
    updated: dict[str, list[str]] = {"imported": [], "added": []}
    imports = set(imported_inputs(repo))
    for dvc_file in tracked_inputs(repo):
        relative = str(dvc_file.relative_to(repo))
        command = ("update", relative) if dvc_file in imports else ("commit", "--force", relative)
        result = run_dvc(repo, *command)
        if result.returncode != 0:
            raise StageFailed(
                f"`dvc {' '.join(command)}` failed: {result.stderr.strip()} Check that the "
                "input's source is reachable and its files readable, then run the cycle again."
            )
        updated["imported" if dvc_file in imports else "added"].append(relative)
    get_run_logger().info("Tracked inputs brought up to date: %s", updated)
    return updated


@task
def check_new_data(repo: Path, production_commit: str, tolerances: DriftParams) -> dict:
    """The new data profile against production's, before any training: a drift stops the
    cycle, naming each check, the split and the figures, unless `drift.accept` is set."""
    logger = get_run_logger()
    reference = read_at(repo, production_commit, Artifacts.data_profile)
    if reference is None:
        logger.info("Production's commit has no data profile: no drift check")
        return {"checked": False}
    current = json.loads(Artifacts(repo).data_profile.read_text())
    results = check_drift(json.loads(reference), current, tolerances)
    failed = [r for r in results if not r.success]
    if failed and not tolerances.accept:
        raise StageFailed(drift_report(results))
    if failed:
        logger.warning("Drift accepted (drift.accept): %s", drift_report(results))
    return {
        "checked": True,
        "accepted": bool(failed),
        "failed": [f"{r.split}: {r.check} — {r.detail}" for r in failed],
    }


def _stop(root: Path, decision: dict, error: Exception, started: float, clause: str) -> None:
    """Record the keep with the error that stopped the cycle, then raise it."""
    what = "the pipeline stopped" if clause == "pipeline_stopped" else "the promotion failed"
    decision |= {
        "action": "kept",
        "clause": clause,
        "reason": f"{what}: {error}",
        "seconds": round(time.perf_counter() - started, 1),
    }
    record(root, decision)
    raise error


def _decide(root: Path, decision: dict, settings: RegistryParams) -> dict:
    """The policy's answer, then what people decided before (a model rolled back or rejected
    stays out), then a person's approval where the policy asks for one."""
    decision = keep_if_barred(
        decision, barred_models(read_decisions(Artifacts(root).decisions_log))
    )
    if needs_approval(decision, settings):
        decision |= ask_for_approval(decision, settings)
    return decision


@flow(name="model-update-cycle")
def update_cycle(repo: str = ".") -> dict:
    """Refresh the inputs, check new data against production's before training, run the
    compress flow (DVC reruns only what changed), compare the new shipped model with production
    on the same test set, promote it through the registry when it is better, and record the
    decision with what changed since production."""
    started = time.perf_counter()
    root = Path(repo).resolve()
    params = load_params(Artifacts(root).params_file)
    settings = params.registry
    refuse_uncommitted_code(root)
    announce_approval_route(settings)
    decision: dict = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_commit": git(root, "rev-parse", "HEAD"),
    }
    with tempfile.TemporaryDirectory() as workdir:
        try:
            decision["inputs"] = update_inputs(root)
            pull_from_remote(root)
            production = production_model(root, settings.artifact, settings.stage, Path(workdir))
            runs, splits = [], None
            if production is not None:
                runs += compress(repo=str(root), until="prepare")
                decision["drift"] = check_new_data(root, production["commit"], params.drift)
                splits = production_splits(root, production["commit"], Path(workdir))
            runs += compress(repo=str(root))
            decision["stages_run"] = list(dict.fromkeys(r["stage"] for r in runs if r["ran"]))
            shipped = check_shipped(Artifacts(root))
        except (StageFailed, PipelineError) as error:
            _stop(root, decision, error, started, "pipeline_stopped")
        decision = _decide(root, decision | compare(root, production, splits, params), settings)
    decision |= {
        "candidate": shipped["candidate"],
        "objective": params.evaluate.objective,
        "production_version": production["version"] if production else None,
        "changes": changes_since(root, production["commit"], splits) if production else None,
    }
    decision["seconds"] = round(time.perf_counter() - started, 1)
    if decision["action"] == "promoted":
        try:
            decision = promote(root, settings, decision)
        except (StageFailed, PipelineError, OSError, subprocess.CalledProcessError) as error:
            _stop(root, decision, error, started, "promotion_failed")
    get_run_logger().info("Decision: %s (%s)", decision["action"], decision["reason"])
    if decision["action"] == "promoted":  # its line is in the promotion commit already
        publish_decision(decision, key="model-update-decision", title=decision["action"])
    else:
        record(root, decision)
    return decision


def main() -> None:
    """`python -m flows.update_cycle [--repo PATH]`: one cycle; what stops it exits by the
    errno table (1: a person must fix something, named; 75: a transient I/O error, retry)."""
    parser = argparse.ArgumentParser(description="Run one model-update cycle.")
    parser.add_argument("--repo", default=".", help="the pipeline's git + DVC repository")
    repo = parser.parse_args().repo
    run_flow(lambda: update_cycle(repo=repo))


if __name__ == "__main__":
    main()
