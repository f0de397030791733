"""Reading dvc.lock: the md5 DVC recorded for each dep and out of a stage (what made a file),
for the shipped model's provenance, the model card and the update cycle's change record."""

from __future__ import annotations

import yaml


def lock_hashes(lock_text: str | None, stage: str) -> dict[str, str]:
    """path -> md5 of every dep and out of `stage` in a dvc.lock text (empty without one)."""
    if not lock_text:
        return {}
    entry = (yaml.safe_load(lock_text) or {}).get("stages", {}).get(stage, {})
    return {
        item["path"]: item.get("md5", "") for item in entry.get("deps", []) + entry.get("outs", [])
    }
