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

import hashlib
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import gto.api
from gto.exceptions import ArtifactNotFound
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from compress.config.drift import DriftParams
from compress.config.params import Params, load_params
from compress.config.registry import RegistryParams
from compress.core.artifacts import Artifacts
from compress.data.drift import check_drift, drift_report
from compress.data.loaders import eval_loader, load_info
from compress.evaluation.benchmark import compare_onnx_latency
from compress.evaluation.decision import promotion_decision
from compress.evaluation.inference import split_logits
from compress.evaluation.uncertainty import paired_drop_interval
from compress.runtime.runners import onnxruntime_runner
from flows.changes import changes_since, git, imported_inputs, read_at, tracked_inputs
from flows.compress import StageFailed, compress, run_dvc


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@task
def pull_from_remote(repo: Path) -> str:
    """`dvc pull` what the default remote has; an empty or unset remote is skipped quietly."""
    remote = run_dvc(repo, "remote", "default").stdout.strip()
    if not remote:
        return "no default remote"
    result = run_dvc(repo, "pull", "--allow-missing")
    output = (result.stdout + result.stderr).strip()
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


@task
def production_model(repo: Path, artifact: str, stage: str, workdir: Path) -> dict | None:
    """The model the registry has in `stage`: version, commit and a copy of its ONNX file."""
    try:
        found = gto.api.find_versions_in_stage(str(repo), artifact, stage)
    except ArtifactNotFound:  # nothing registered yet
        found = None
    if not found:
        return None
    version = found[0] if isinstance(found, list) else found
    commit = version.commit_hexsha
    copy = workdir / "production.onnx"
    shipped = str(Artifacts.outs()["shipped_onnx"])
    result = run_dvc(repo, "get", ".", shipped, "--rev", commit, "-o", str(copy))
    if result.returncode != 0:
        raise StageFailed(
            f"The production model {artifact}@{version.version} (commit {commit[:8]}) is not "
            f"in the DVC cache or remote: {result.stderr.strip()} Run `dvc pull` or `dvc fetch "
            f"--rev {commit}`."
        )
    return {"version": version.version, "commit": commit, "path": copy}


@task
def measure_side_by_side(
    repo: Path, models: dict[str, Path], threads: int, timed_runs: int, confidence: float
) -> dict[str, dict]:
    """Accuracy on the prepared test split, size and ORT latency at batch 1 (interleaved), for
    both models in this one process; the new model's drop against production on the same
    images with its paired interval."""
    prepared = Artifacts(repo).prepared_dir
    info = load_info(prepared)
    latency = compare_onnx_latency(models, info.input_shape, [1], 5, timed_runs, threads, 3)
    runners = {name: onnxruntime_runner(path, threads) for name, path in models.items()}
    logits, labels = split_logits(runners, eval_loader("test", info, prepared))
    correct = {name: logits[name].argmax(axis=1) == labels for name in models}
    figures = {
        name: {
            "accuracy": float(correct[name].mean()),
            "size_bytes": path.stat().st_size,
            "latency": {"batch_1": {"p50_ms": latency[name]["batch_1"]["p50_ms"]}},
            "md5": md5(path),
        }
        for name, path in models.items()
    }
    if "production" in models:
        figures["new"]["drop_vs_production"] = paired_drop_interval(
            correct["production"], correct["new"], confidence or 0.95
        )
    return figures


@task
def promote(repo: Path, settings: RegistryParams, figures: dict) -> str:
    """Commit what produced the model (tracked files only: dvc.lock, params, metrics), register
    a GTO version, assign the stage, push the outs to the DVC remote."""
    git(repo, "add", "--update")
    inputs = (Artifacts.data_input_dir, Artifacts.teacher_input_dir, Artifacts.data_profile)
    git(repo, "add", *map(str, inputs))
    git(
        repo,
        "commit",
        "--allow-empty",
        "-m",
        f"model-update: promote {settings.artifact} "
        f"(accuracy {figures['accuracy']:.4f}, {figures['size_bytes']} bytes)",
    )
    registered = gto.api.register(str(repo), settings.artifact, "HEAD")
    version = registered.version if hasattr(registered, "version") else str(registered)
    gto.api.assign(str(repo), settings.artifact, settings.stage, ref="HEAD", skip_registration=True)
    if settings.push and run_dvc(repo, "remote", "default").stdout.strip():
        pushed = run_dvc(repo, "push")
        if pushed.returncode != 0:
            raise StageFailed(f"dvc push failed: {pushed.stderr.strip()}")
    return version


def record(repo: Path, decision: dict) -> None:
    """Append to registry/decisions.jsonl and publish the decision in the Prefect UI."""
    path = Artifacts(repo).decisions_log
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log_file:
        log_file.write(json.dumps(decision, sort_keys=True) + "\n")
    rows = "\n".join(
        f"| {name} | {f['accuracy']:.4f} | {f['size_bytes']} | {f['latency']['batch_1']['p50_ms']:.3f} |"
        for name, f in decision.get("figures", {}).items()
    )
    changes = decision.get("changes") or {}
    create_markdown_artifact(
        key="model-update-decision",
        markdown=f"# {decision['action']}: {decision['reason']}\n\n"
        "| model | accuracy | bytes | p50 b1 ms |\n|---|---|---|---|\n"
        + rows
        + "\n\n## Changed since production\n\n```json\n"
        + json.dumps(changes, indent=2, sort_keys=True)
        + "\n```\n",
        description="Promotion decision of the model-update cycle",
    )


def _compare(root: Path, production: dict | None, params: Params) -> dict:
    """Keep when the new shipped model is production's file; otherwise measure both on the
    same test images and let the promotion rule decide."""
    models = {"new": Artifacts(root).shipped_onnx}
    if production is not None and md5(production["path"]) == md5(models["new"]):
        return {"action": "kept", "reason": "nothing changed"}
    if production is not None:
        models["production"] = production["path"]
    evaluation = params.evaluate
    figures = measure_side_by_side(
        root, models, evaluation.intra_op_threads, evaluation.timed_runs, evaluation.gate.confidence
    )
    action, reason = promotion_decision(
        figures["new"],
        figures.get("production"),
        evaluation.objective,
        params.registry.tolerance,
        evaluation.gate.confidence,
    )
    return {"action": action, "reason": reason, "figures": figures}


def _stop(root: Path, decision: dict, error: StageFailed, started: float) -> None:
    decision |= {
        "action": "kept",
        "reason": f"the pipeline stopped: {error}",
        "seconds": round(time.perf_counter() - started, 1),
    }
    record(root, decision)
    raise error


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
    decision: dict = {"time": datetime.now(UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory() as workdir:
        try:
            decision["inputs"] = update_inputs(root)
            pull_from_remote(root)
            production = production_model(root, settings.artifact, settings.stage, Path(workdir))
            runs = []
            if production is not None:
                runs += compress(repo=str(root), until="prepare")
                decision["drift"] = check_new_data(root, production["commit"], params.drift)
            runs += compress(repo=str(root))
            decision["stages_run"] = list(dict.fromkeys(r["stage"] for r in runs if r["ran"]))
        except StageFailed as error:
            _stop(root, decision, error, started)
        decision |= _compare(root, production, params)
    decision |= {
        "candidate": json.loads(Artifacts(root).shipped_json.read_text())["candidate"],
        "objective": params.evaluate.objective,
        "production_version": production["version"] if production else None,
        "changes": changes_since(root, production["commit"]) if production else None,
    }
    if decision["action"] == "promoted":
        decision["version"] = promote(root, settings, decision["figures"]["new"])
    decision["seconds"] = round(time.perf_counter() - started, 1)
    get_run_logger().info("Decision: %s (%s)", decision["action"], decision["reason"])
    record(root, decision)
    return decision


if __name__ == "__main__":
    update_cycle()
