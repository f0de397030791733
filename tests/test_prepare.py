from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stages.data import load_info, load_split
from stages.data_checks import image_hashes
from stages.errors import PipelineError
from stages.prepare import deduplicate, prepare

SPLITS = ("train", "val", "test", "calibration")


def _load_all(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        name: tuple(t.numpy() for t in load_split(name, root / "data/prepared")) for name in SPLITS
    }


def test_splits_are_disjoint(prepared_workdir: Path) -> None:
    splits = _load_all(prepared_workdir)
    hashes = {name: set(image_hashes(images)) for name, (images, _) in splits.items()}
    for index, first in enumerate(SPLITS):
        for second in SPLITS[index + 1 :]:
            assert not hashes[first] & hashes[second], f"{first} and {second} share samples"
    assert sum(len(labels) for _, labels in splits.values()) == 1797


def test_splits_are_stratified_and_calibration_covers_every_class(prepared_workdir: Path) -> None:
    splits = _load_all(prepared_workdir)
    overall = (
        np.bincount(np.concatenate([labels for _, labels in splits.values()]), minlength=10) / 1797
    )
    for name, (_, labels) in splits.items():
        shares = np.bincount(labels, minlength=10) / len(labels)
        assert np.all(shares > 0), f"{name} misses a class"
        assert np.abs(shares - overall).max() < 0.02, f"{name} is not stratified: {shares}"
    assert len(splits["calibration"][1]) == 300
    assert set(splits["calibration"][1]) == set(range(10))


def test_splits_are_reproducible(
    prepared_workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    prepare("digits", None, None, None, 0.1, 0.2, 300, 0.5, seed=0)
    again, first = _load_all(tmp_path), _load_all(prepared_workdir)
    for name in SPLITS:
        np.testing.assert_array_equal(again[name][0], first[name][0])
        np.testing.assert_array_equal(again[name][1], first[name][1])


def test_normalization_statistics_come_from_train(prepared_workdir: Path) -> None:
    info = load_info(prepared_workdir / "data/prepared")
    train_images, _ = load_split("train", prepared_workdir / "data/prepared")
    assert info.mean[0] == pytest.approx(float(train_images.mean()), abs=1e-5)
    assert info.std[0] == pytest.approx(float(train_images.std(unbiased=False)), abs=1e-5)
    assert (info.channels, info.image_size, info.num_classes) == (1, 8, 10)
    checks = json.loads((prepared_workdir / "metrics/data_checks.json").read_text())
    assert checks["success"] and len(checks["checks"]) == 4 * 8 - 1


def test_deduplicate_drops_copies_and_conflicting_labels() -> None:
    images = np.stack(
        [np.full((1, 2, 2), value, dtype=np.float32) for value in (0.1, 0.2, 0.1, 0.3, 0.3)]
    )
    labels = np.array([0, 1, 0, 2, 3])
    kept_images, kept_labels, dropped = deduplicate(images, labels)
    assert dropped == 3
    assert kept_labels.tolist() == [0, 1]


def test_calibration_size_smaller_than_class_count_is_a_clear_error(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="data.calibration_size=5"):
        prepare(
            "digits", None, None, None, 0.1, 0.2, calibration_size=5, balance_tolerance=0.5, seed=0
        )
    assert not (tmp_path / "data/prepared").exists()


def test_missing_cifar10_folder_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="CIFAR-10 not found under data.path"):
        prepare("cifar10", str(tmp_path / "nowhere"), None, None, 0.1, 0.2, 300, 0.5, seed=0)
