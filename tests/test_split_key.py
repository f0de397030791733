"""The move to a split key on source pixels, as the update cycle meets it: production's rows
were written under the old key (one hash, of the prepared pixels), the new rows hold the new
key beside that hash. The comparison must still leave out every image production trained on,
and the change record must say that the splits were redrawn."""

from __future__ import annotations

import csv
from pathlib import Path

from compress.core.artifacts import Artifacts
from compress.data.loaders import split_identities
from flows.changes import split_changes
from flows.production import comparison_images

SPLITS = ("train", "calibration", "val", "test")


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_production_split_under_the_old_key_is_matched_by_its_prepared_pixels(
    tmp_path: Path,
) -> None:
    """Ten images; production (old key) trained on 0-5 and tested on 6-9; the new key
    redraws them: test now holds 3, 4 (trained on by production) and 8, 9."""
    old = {"train": [0, 1, 2, 3], "calibration": [4, 5], "val": [6, 7], "test": [8, 9]}
    new = {"train": [0, 1, 6], "calibration": [2, 5], "val": [7], "test": [3, 4, 8, 9]}
    production = {}
    for split in SPLITS:
        _write(
            tmp_path / "old" / f"{split}.rows.csv",
            [{"label": 0, "hash": f"px{i}"} for i in old[split]],
        )
        production[split] = split_identities(tmp_path / "old" / f"{split}.rows.csv")
        rows = [{"label": 0, "hash": f"key{i}", "pixel_hash": f"px{i}"} for i in new[split]]
        _write(Artifacts(tmp_path).prepared_dir / f"{split}.rows.csv", rows)

    images = comparison_images(tmp_path, production)
    assert images["compared"].tolist() == [False, False, True, True]  # 3 and 4 were trained on
    assert images["new"].tolist() == [True, True, False, False]  # 8 and 9 were test already
    changes = split_changes(production, Artifacts(tmp_path).prepared_dir)
    assert changes["split_key_changed"] is True
    assert changes["production_training_images_now_in_test_or_val"] == 2
    assert changes["production_test_or_val_images_now_in_training"] == 1  # image 6
    assert changes["per_split"]["test"] == {"added": 2, "removed": 0}


def test_production_with_no_rows_is_no_key_change(tmp_path: Path) -> None:
    """A production without images says nothing about its key: no redraw is reported."""
    production = {split: [] for split in SPLITS}
    for split in SPLITS:
        rows = [{"label": 0, "hash": f"key{split}", "pixel_hash": f"px{split}"}]
        _write(Artifacts(tmp_path).prepared_dir / f"{split}.rows.csv", rows)
    changes = split_changes(production, Artifacts(tmp_path).prepared_dir)
    assert changes["split_key_changed"] is False
    assert changes["per_split"]["test"] == {"added": 1, "removed": 0}
    assert changes["production_training_images_now_in_test_or_val"] == 0
