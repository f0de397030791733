"""The model-update cycle on a team's inputs, in a temporary git + DVC repository whose image
folder and teacher file are tracked with `dvc add` (slow: each cycle reruns the tiny pipeline
from the stage a change touches; `pytest -m "not slow"` leaves them out).

Scenarios: cycle 1 promotes; images added to one class make `prepare` stale and the next cycle
retrains and records the added count and both data hashes; a retrained teacher file reruns
`baseline` (not `prepare`); nothing changed keeps production; new data with a shifted pixel
mean, a vanished class or another image size stops the cycle before any training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compress.core.artifacts import Artifacts
from compress.models.checkpoints import read_checkpoint
from flows.compress import StageFailed
from flows.update_cycle import update_cycle
from tests.conftest import STAGES
from tests.repos import DATA, commit_params, copy_snapshot, dvc, edit_params, run

pytestmark = pytest.mark.slow


def _promotion_policy(params: dict) -> None:
    """The default promotion policy (accuracy first); no one to approve in a test. The
    `registry` section is no stage's param: the snapshot's outs stay up to date."""
    params["registry"] |= {"tolerance": 0.005, "min_gain": 0.0, "approval": "never"}


@pytest.fixture(scope="module")
def repo(tiny_pipeline_snapshot, harness, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny-params repository (tracked inputs, its pipeline run once) after its
    first cycle, which has only the promotion to do."""
    snapshot, _ = tiny_pipeline_snapshot
    repo = copy_snapshot(snapshot, tmp_path_factory.mktemp("cycle"))
    commit_params(repo, _promotion_policy)
    first = update_cycle(repo=str(repo))
    assert first["action"] == "promoted" and first["reason"].startswith("first model"), first
    assert first["stages_run"] == [], first
    return repo


def test_nothing_changed_keeps_production(repo: Path) -> None:
    """Right after the first cycle promoted: DVC reruns nothing and the model is the same."""
    unchanged = update_cycle(repo=str(repo))
    assert (unchanged["action"], unchanged["reason"]) == ("kept", "nothing changed"), unchanged
    assert unchanged["stages_run"] == [] and unchanged["drift"]["failed"] == []


def _add_images(repo: Path, label: str, count: int) -> None:
    """New images of one class: existing ones shifted by a pixel (new content, not copies)."""
    folder = repo / DATA / label
    for index, path in enumerate(sorted(folder.glob("*.png"))[:count]):
        pixels = np.roll(np.asarray(Image.open(path)), 1, axis=1)
        Image.fromarray(pixels).save(folder / f"added_{index:03d}.png")


def test_added_images_rerun_everything_and_are_recorded(repo: Path) -> None:
    _add_images(repo, "3", 30)
    status = dvc(repo, "status")
    assert "prepare:" in status.stdout and "modified:           data/input" in status.stdout

    grown = update_cycle(repo=str(repo))
    assert grown["inputs"]["added"] == [f"{DATA}.dvc"]
    assert grown["stages_run"][0] == "prepare" and grown["drift"]["failed"] == []
    data = grown["changes"]["data"]
    assert (data["added"], data["removed"]) == ({"3": 30}, {})
    assert data["images"]["after"] == data["images"]["before"] + 30
    assert None not in data["input_md5"].values()
    assert data["input_md5"]["before"] != data["input_md5"]["after"]
    assert data["content_hash"]["before"] != data["content_hash"]["after"]
    assert grown["changes"]["code"]["changed_files"] == []
    assert grown["stages_run"] == STAGES
    # splits by content hash: no image production trained on is now in test or validation,
    # and production is compared on every current test image, the new ones counted apart
    splits = data["splits"]
    assert splits["production_training_images_now_in_test_or_val"] == 0
    assert splits["production_test_or_val_images_now_in_training"] == 0
    per_split = splits["per_split"]
    assert per_split["test"]["removed"] == per_split["val"]["removed"] == 0
    # 30 new images; images passing between train and calibration count on both sides
    assert (
        sum(s["added"] for s in per_split.values()) - sum(s["removed"] for s in per_split.values())
        == 30
    )
    images = grown["test_images"]
    assert images["excluded_production_trained_on"] == 0
    assert images["new_since_production"] == per_split["test"]["added"] > 0
    new_images = grown["figures"]["production"]["accuracy_on_new_test_images"]
    print(f"\n30 images added to class 3: {splits}, {images}, production on new: {new_images}")
    print(f"decision: {grown['action']}, clause {grown['clause']} ({grown['reason']})")


def test_a_retrained_teacher_file_reruns_baseline_not_prepare(repo: Path) -> None:
    """The team switches to its own teacher file, then overwrites it with a retrained one."""
    teacher = repo / "models/input/teacher.pt"
    weights = read_checkpoint(Artifacts(repo).teacher_pt)["state_dict"]
    torch.save(weights, teacher)
    assert dvc(repo, "add", "--quiet", "models/input/teacher.pt").returncode == 0
    edit_params(repo, lambda p: p["teacher"].update(checkpoint="models/input/teacher.pt"))
    for command in (("git", "add", "--all"), ("git", "commit", "-qm", "our own teacher")):
        assert run(repo, *command).returncode == 0  # the cycle refuses uncommitted params
    assert dvc(repo, "repro", "baseline").returncode == 0
    torch.save(weights | {"fc.bias": weights["fc.bias"] + 0.5}, teacher)
    status = dvc(repo, "status")
    assert "baseline:" in status.stdout and "modified:           models/input" in status.stdout
    assert "prepare:" not in status.stdout

    retrained = update_cycle(repo=str(repo))
    assert retrained["inputs"]["added"] == [f"{DATA}.dvc", "models/input/teacher.pt.dvc"]
    assert retrained["stages_run"][0] == "baseline"
    teacher_change = retrained["changes"]["teacher"]
    assert teacher_change["input_md5"]["before"] != teacher_change["input_md5"]["after"]
    assert retrained["changes"]["params"]["params.yaml"]["teacher.checkpoint"]["new"] == (
        "models/input/teacher.pt"
    )


def _brighten(folder: Path) -> None:
    for path in folder.rglob("*.png"):
        pixels = np.asarray(Image.open(path)).astype(np.int16)
        Image.fromarray(np.clip(pixels + 60, 0, 255).astype(np.uint8)).save(path)


def _drop_class(folder: Path) -> None:
    shutil.rmtree(folder / "9")


def _resize_a_third(folder: Path) -> None:
    for path in sorted(folder.rglob("*.png"))[::3]:
        Image.open(path).resize((16, 16), Image.Resampling.NEAREST).save(path)


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (_brighten, "channel mean within ±0.05"),
        (_drop_class, "no class vanished"),
        (_resize_a_third, "image size mix within ±0.05"),
    ],
)
def test_drifted_data_stops_the_cycle_before_training(repo: Path, change, check: str) -> None:
    folder = repo / DATA
    original = repo.parent / "original-data"
    if not original.exists():
        shutil.copytree(folder, original)
    teacher_mtime = Artifacts(repo).teacher_pt.stat().st_mtime_ns
    change(folder)
    try:
        with pytest.raises(StageFailed, match=check):
            update_cycle(repo=str(repo))
    finally:
        shutil.rmtree(folder)
        shutil.copytree(original, folder)
    last = json.loads(Artifacts(repo).decisions_log.read_text().splitlines()[-1])
    assert last["action"] == "kept" and "drifted" in last["reason"] and check in last["reason"]
    assert Artifacts(repo).teacher_pt.stat().st_mtime_ns == teacher_mtime  # nothing trained
