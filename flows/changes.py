"""What changed since the production model: read from git and DVC, never recomputed. The data
and teacher hashes are the md5s DVC recorded in dvc.lock for the `data/input` and
`models/input` deps; image counts per class come from the data profiles `prepare` writes; the
params diff is `dvc params diff`; the code is the commits and the changed files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from compress.core.artifacts import Artifacts
from compress.core.gitrepo import git, read_at
from compress.core.lock import lock_hashes
from compress.data.loaders import matches, split_identities
from flows.compress import run_dvc

CODE_PATHS = ("compress", "stages", "flows", "dvc.yaml", "pyproject.toml", "constraints.txt")


def tracked_inputs(repo: Path) -> list[Path]:
    """The `.dvc` files under the input folders (data/input/, models/input/)."""
    artifacts = Artifacts(repo)
    folders = (artifacts.data_input_dir, artifacts.teacher_input_dir)
    return [path for folder in folders if folder.is_dir() for path in sorted(folder.rglob("*.dvc"))]


def imported_inputs(repo: Path) -> list[Path]:
    """Those written by `dvc import-url` / `dvc import`: they record where the data came from
    (a dep), so `dvc update` can refresh them."""
    return [path for path in tracked_inputs(repo) if yaml.safe_load(path.read_text()).get("deps")]


def _count_changes(before: dict[str, int], after: dict[str, int]) -> dict[str, dict[str, int]]:
    classes = sorted(set(before) | set(after))
    change = {name: after.get(name, 0) - before.get(name, 0) for name in classes}
    return {
        "added": {name: n for name, n in change.items() if n > 0},
        "removed": {name: -n for name, n in change.items() if n < 0},
    }


def data_changes(repo: Path, commit: str, old_lock: str | None, new_lock: str | None) -> dict:
    data_input = str(Artifacts.data_input_dir)
    old_profile = read_at(repo, commit, Artifacts.data_profile)
    before = json.loads(old_profile)["source"] if old_profile else {}
    after = json.loads(Artifacts(repo).data_profile.read_text())["source"]
    return {
        "input_md5": {
            "before": lock_hashes(old_lock, "prepare").get(data_input),
            "after": lock_hashes(new_lock, "prepare").get(data_input),
        },
        "content_hash": {"before": before.get("content_hash"), "after": after["content_hash"]},
        "images": {"before": before.get("images"), "after": after["images"]},
        **_count_changes(before.get("class_counts", {}), after["class_counts"]),
    }


def _unmatched(images: list[frozenset[str]], others: list[frozenset[str]]) -> int:
    known = set().union(*others)
    return sum(not matches(image, known) for image in images)


def _matched(images: list[frozenset[str]], others: list[frozenset[str]]) -> int:
    return len(images) - _unmatched(images, others)


def split_changes(production: dict[str, list[frozenset[str]]], prepared_dir: Path) -> dict:
    """Per split, the images added and removed since production's data (matched by split key
    or prepared-pixel hash), the images production trained or calibrated on that are now in
    test or validation (0 with splits by content hash while data.seed and the split fractions
    stay), and whether the split key changed since production (rows from before the key on
    source pixels: every split was redrawn once, and the comparison matched images by their
    prepared pixels; false when production has no rows to tell)."""
    current = {split: split_identities(prepared_dir / f"{split}.rows.csv") for split in production}
    rows = [image for images in production.values() for image in images]
    return {
        "split_key_changed": bool(rows) and all(len(image) == 1 for image in rows),
        "per_split": {
            split: {
                "added": _unmatched(current[split], production[split]),
                "removed": _unmatched(production[split], current[split]),
            }
            for split in production
        },
        "production_training_images_now_in_test_or_val": _matched(
            current["test"] + current["val"], production["train"] + production["calibration"]
        ),
        "production_test_or_val_images_now_in_training": _matched(
            current["train"] + current["calibration"], production["test"] + production["val"]
        ),
    }


def changes_since(
    repo: Path, commit: str, splits: dict[str, list[frozenset[str]]] | None = None
) -> dict:
    """The data, teacher, params and code of the new model against production's commit;
    with production's splits, how each split changed."""
    lock = Artifacts(repo).dvc_lock
    old_lock = read_at(repo, commit, Artifacts.dvc_lock)
    new_lock = lock.read_text() if lock.exists() else None
    teacher_input, teacher_out = str(Artifacts.teacher_input_dir), str(Artifacts.teacher_pt)
    old_baseline, new_baseline = (
        lock_hashes(old_lock, "baseline"),
        lock_hashes(new_lock, "baseline"),
    )
    params = run_dvc(repo, "params", "diff", commit, "--json")
    data = data_changes(repo, commit, old_lock, new_lock)
    if splits is not None:
        data["splits"] = split_changes(splits, Artifacts(repo).prepared_dir)
    return {
        "data": data,
        "teacher": {
            key: {"before": old_baseline.get(path), "after": new_baseline.get(path)}
            for key, path in (("input_md5", teacher_input), ("teacher_md5", teacher_out))
        },
        "params": json.loads(params.stdout or "{}") if params.returncode == 0 else {},
        "code": {
            "production_commit": commit,
            "commit": git(repo, "rev-parse", "HEAD"),
            "changed_files": git(repo, "diff", "--name-only", commit, "--", *CODE_PATHS).split(),
        },
    }
