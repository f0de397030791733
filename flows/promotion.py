"""Promotion through the registry: refuse a work tree with uncommitted code or params, commit
only the pipeline's records, register a GTO version and assign the stage, push the outs."""

from __future__ import annotations

from pathlib import Path

import gto.api
from prefect import task
from prefect.artifacts import create_markdown_artifact

from compress.config.registry import RegistryParams
from compress.core.artifacts import Artifacts
from compress.registry.model_card import write_model_card
from compress.registry.versions import next_version
from flows.changes import (
    CODE_PATHS,
    git,
    tracked_inputs,
)
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
    ]
    return [str(path.relative_to(repo)) for path in paths if path.exists()]


@task
def promote(
    repo: Path, settings: RegistryParams, figures: dict, changes: dict | None
) -> dict[str, str]:
    """Write the version's model card, commit only what produced the model
    (`pipeline_files`), register the GTO version on that commit, assign the stage, push the
    outs to the DVC remote. The shipped model's metadata names the code commit it was made
    from; the version tag points at the promotion commit, which adds the pipeline's records
    (and the card) on top of it."""
    code_commit = git(repo, "rev-parse", "HEAD")
    version = next_version(repo, settings.artifact)
    card = write_model_card(Artifacts(repo), version, changes)
    create_markdown_artifact(
        key="model-card", markdown=card.read_text(), description=f"{settings.artifact} {version}"
    )
    git(repo, "add", "--", *pipeline_files(repo))
    git(
        repo,
        "commit",
        "--allow-empty",
        "-m",
        f"model-update: promote {settings.artifact} "
        f"(accuracy {figures['accuracy']:.4f}, {figures['size_bytes']} bytes)",
    )
    gto.api.register(str(repo), settings.artifact, "HEAD", version=version)
    gto.api.assign(str(repo), settings.artifact, settings.stage, ref="HEAD", skip_registration=True)
    if settings.push and run_dvc(repo, "remote", "default").stdout.strip():
        pushed = run_dvc(repo, "push")
        if pushed.returncode != 0:
            raise StageFailed(f"dvc push failed: {pushed.stderr.strip()}")
    return {
        "version": version,
        "version_tag": f"{settings.artifact}@{version}",
        "code_commit": code_commit,
        "promotion_commit": git(repo, "rev-parse", "HEAD"),
    }
