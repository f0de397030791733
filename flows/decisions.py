"""Every decision of the model-update cycle: appended to registry/decisions.jsonl and published
as a Prefect artifact with its clause, figures and what changed since production."""

from __future__ import annotations

import json
from pathlib import Path

from prefect.artifacts import create_markdown_artifact

from compress.core.artifacts import Artifacts
from compress.registry.log import append_decision


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def record(repo: Path, decision: dict) -> None:
    """Append to registry/decisions.jsonl and publish the decision in the Prefect UI."""
    append_decision(Artifacts(repo).decisions_log, decision)
    publish_decision(decision, key="model-update-decision", title=decision["action"])


def publish_decision(decision: dict, key: str, title: str) -> None:
    """The decision as a Prefect markdown artifact: the clause, the figures, what changed."""
    rows = "\n".join(
        f"| {name} | {f['accuracy']:.4f} | {_share(f['accuracy_on_new_test_images'])} | "
        f"{f['size_bytes']} | {f['latency']['batch_1']['p50_ms']:.3f} |"
        for name, f in decision.get("figures", {}).items()
    )
    changes = decision.get("changes") or {}
    images = decision.get("test_images", {})
    create_markdown_artifact(
        key=key,
        markdown=f"# {title}: {decision['reason']}\n\n"
        f"Clause: `{decision.get('clause')}`; uncertain: {decision.get('uncertain')}.\n\n"
        f"Test images compared: {images.get('compared')} (never trained on by either model; "
        f"{images.get('new_since_production')} new since production, "
        f"{images.get('excluded_production_trained_on')} left out: production trained on them)"
        "\n\n| model | accuracy | on new test images | bytes | p50 b1 ms |\n|---|---|---|---|---|\n"
        + rows
        + "\n\n## Changed since production\n\n```json\n"
        + json.dumps(changes, indent=2, sort_keys=True)
        + "\n```\n",
        description=f"{title} (model-update cycle)",
    )
