"""What a compress flow run shows in the Prefect UI: the table of candidates, the gate decision
with the report, and links to the Pareto plots."""

from __future__ import annotations

import json
from pathlib import Path

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from compress.core.artifacts import Artifacts


def publish_results(repo: Path) -> None:
    """Table of candidates, the gate decision with the report, links to the Pareto plots."""
    artifacts = Artifacts(repo)
    evaluation = artifacts.evaluate_metrics
    if not evaluation.exists():
        return
    candidates = json.loads(evaluation.read_text())["candidates"]
    rows = [
        {
            "candidate": name,
            "accuracy": round(figures["accuracy"], 4),
            "size_mb": round(figures["size_bytes"] / 1e6, 3),
            "p50_b1_ms": round(figures["latency"]["batch_1"]["p50_ms"], 3),
            **{k: v for k, v in figures.get("vs_teacher", {}).items() if not isinstance(v, dict)},
        }
        for name, figures in candidates.items()
    ]
    create_table_artifact(key="compression-candidates", table=rows, description="All candidates")
    shipped, report = artifacts.shipped_json, artifacts.report
    decision = json.loads(shipped.read_text()) if shipped.exists() else {}
    create_markdown_artifact(
        key="compression-decision",
        markdown=(
            f"# Shipped: `{decision.get('candidate', 'none')}`\n\n"
            + (report.read_text() if report.exists() else "")
        ),
        description="Acceptance gate decision and the compression report",
    )
    for plot in (artifacts.pareto_size_plot, artifacts.pareto_latency_plot):
        if plot.exists():
            create_link_artifact(
                key=plot.stem.replace("_", "-"), link=plot.resolve().as_uri(), link_text=plot.name
            )
