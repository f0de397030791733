"""Promotion through the registry, in an order that never lets the registry name a model the
remote lacks: refuse a work tree with uncommitted code or params before any work; at promotion,
refuse when HEAD moved since the cycle started (an approval pause is long); push the outs to
the DVC remote; commit exactly the pipeline's records, the decision line included; register
the GTO version and move the stage to it, its only holder. A failing step undoes the commit
and the tags, so the registry is as it was."""

from __future__ import annotations

from pathlib import Path

import gto.api
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from compress.config.registry import RegistryParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.core.errors import error_from_output
from compress.core.gitrepo import git
from compress.evaluation.model_card import write_model_card
from compress.registry.log import append_decision
from compress.registry.versions import move_stage, next_version, tags_undone_on_failure
from flows.changes import CODE_PATHS, tracked_inputs
from flows.compress import StageFailed, run_dvc


def refuse_uncommitted_code(repo: Path) -> None:
    """A cycle records the commit that produced the model: code or params changed but not
    committed would make that record false, so the cycle refuses before any work."""
    changed = git(
        repo, "status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS, "params.yaml"
    ).splitlines()
    if changed:
        files = ", ".join(line.split(maxsplit=1)[-1] for line in changed[:10])
        raise StageFailed(
            f"The work tree has uncommitted changes to code or params ({files}"
            f"{' ...' if len(changed) > 10 else ''}): commit or stash them, then run the cycle "
            "again. The promoted model's provenance is the commit it was made from."
        )


def pipeline_files(repo: Path) -> list[str]:
    """What a promotion commits: dvc.lock, the inputs' .dvc files, the metrics, plots and
    reports the stages write to git, the shipped manifest and the registry log; never code."""
    artifacts = Artifacts(repo)
    paths = [
        artifacts.dvc_lock,
        *tracked_inputs(repo),
        artifacts.data_profile.parent,
        artifacts.report.parent,  # the evaluation report and the model card
        artifacts.pareto_size_plot.parents[1],
        artifacts.shipped_json,
        artifacts.decisions_log,
        artifacts.release_card,
    ]
    return [str(path.relative_to(repo)) for path in paths if path.exists()]


def push_outs(repo: Path, settings: RegistryParams) -> None:
    """`dvc push` to the default remote (when `registry.push` and a remote is set), before
    anything names the model; a failure raises the error its output names (errno table)."""
    if not settings.push or not run_dvc(repo, "remote", "default").stdout.strip():
        return
    pushed = run_dvc(repo, "push")
    if pushed.returncode != 0:
        raise error_from_output(
            "dvc push",
            pushed.stderr or pushed.stdout,
            "Nothing was promoted: the registry is unchanged. Fix the remote (space, "
            "permissions, reachability), then run the cycle again.",
        )


def commit_pipeline_files(repo: Path, message: str) -> str:
    """Commit the pipeline files alone (`--only`): whatever else a person staged stays staged
    and out of the promotion commit."""
    files = pipeline_files(repo)
    git(repo, "add", "--", *files)
    git(repo, "commit", "--only", "--allow-empty", "-m", message, "--", *files)
    return git(repo, "rev-parse", "HEAD")


def head_moved(repo: Path, code_commit: str) -> dict | None:
    """A refusal when HEAD is no longer the commit the cycle started from (someone committed
    during the approval pause): the model's provenance would be false."""
    head = git(repo, "rev-parse", "HEAD")
    if head == code_commit:
        return None
    return {
        "action": "kept",
        "clause": "head_moved",
        "reason": f"promotion refused: HEAD moved from {code_commit[:8]} (the cycle's start) to "
        f"{head[:8]} while the cycle ran; the model was made from {code_commit[:8]}. Run the "
        "cycle again from the new HEAD.",
    }


def snapshot(path: Path) -> str | None:
    """A record's text before a promotion writes it (None: it did not exist)."""
    return path.read_text() if path.exists() else None


def restore(path: Path, text: str | None) -> None:
    """Put a record back as `snapshot` found it, so a failed promotion leaves nothing new."""
    if text is None:
        path.unlink(missing_ok=True)
    else:
        atomic.write_text(path, text)


@task
def promote(repo: Path, settings: RegistryParams, decision: dict) -> dict:
    """Promote the cycle's new model (`decision`, which holds `code_commit`, the commit the
    cycle started from) in a safe order: push, card, decision line, commit, version tag, stage.
    Returns the decision as logged plus the promotion commit; a refusal (HEAD moved) returns
    a keep, for the cycle to record. A failing step leaves git and the registry as they were
    and raises."""
    code_commit = decision["code_commit"]
    refusal = head_moved(repo, code_commit)
    if refusal:
        return decision | refusal
    push_outs(repo, settings)
    version = next_version(repo, settings.artifact)
    logged = decision | {"version": version, "version_tag": f"{settings.artifact}@{version}"}
    artifacts = Artifacts(repo)
    records_before = {
        path: snapshot(path) for path in (artifacts.decisions_log, artifacts.release_card)
    }
    card = write_model_card(artifacts, version, decision["changes"])
    append_decision(artifacts.decisions_log, logged)
    new = decision["figures"]["new"]
    try:
        with tags_undone_on_failure(repo):
            commit = commit_pipeline_files(
                repo,
                f"model-update: promote {settings.artifact} {version} (accuracy "
                f"{new['accuracy']:.4f}, {new['size_bytes']} bytes)",
            )
            gto.api.register(str(repo), settings.artifact, commit, version=version)
            move_stage(repo, settings, version)
    except BaseException:
        if git(repo, "rev-parse", "HEAD") != code_commit:
            git(repo, "reset", "--soft", code_commit)
        for path, text in records_before.items():
            restore(path, text)
        raise
    create_markdown_artifact(
        key="model-card", markdown=card.read_text(), description=f"{settings.artifact} {version}"
    )
    get_run_logger().info("Promoted %s@%s (commit %s)", settings.artifact, version, commit[:8])
    return logged | {"promotion_commit": commit}
