"""The Great Expectations suite passes on good data and names the split and check on bad data."""

from __future__ import annotations

import numpy as np
import pytest

from compress.core.artifacts import Artifacts
from compress.data.checks import failure_report, sample_rows, validate_splits
from compress.data.loaders import load_split

SPLITS = ("train", "val", "test", "calibration")


@pytest.fixture(scope="module")
def good_splits(prepared_artifacts: Artifacts) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        name: tuple(t.numpy().copy() for t in load_split(name, prepared_artifacts.prepared_dir))
        for name in SPLITS
    }


def _copy(splits):
    return {name: (images.copy(), labels.copy()) for name, (images, labels) in splits.items()}


def _validate(splits) -> list:
    """The suite on the rows `prepare` computes while streaming the images."""
    rows = {name: sample_rows(images, labels) for name, (images, labels) in splits.items()}
    return validate_splits(rows, 10, 0.5)


def _failed(splits) -> list:
    return [result for result in _validate(splits) if not result.success]


def test_suite_passes_on_good_data(good_splits) -> None:
    results = _validate(good_splits)
    assert results and all(result.success for result in results)


def _nan_pixel(splits):
    splits["val"][0][3, 0, 2, 2] = np.nan
    return "val", "no NaN or inf pixels"


def _out_of_range(splits):
    splits["test"][0][7, 0, 1, 1] = 1.7
    return "test", "pixel values <= 1"


def _label_outside(splits):
    splits["train"][1][0] = 12
    return "train", "labels within the class set"


def _missing_class_in_calibration(splits):
    images, labels = splits["calibration"]
    keep = labels != 4
    splits["calibration"] = (images[keep], labels[keep])
    return "calibration", "every class present"


def _test_duplicated_in_train(splits):
    splits["test"][0][5] = splits["train"][0][11]
    return "test", "no sample duplicated in train"


@pytest.mark.parametrize(
    "corrupt",
    [
        _nan_pixel,
        _out_of_range,
        _label_outside,
        _missing_class_in_calibration,
        _test_duplicated_in_train,
    ],
)
def test_suite_fails_with_readable_message(good_splits, corrupt) -> None:
    splits = _copy(good_splits)
    split, check = corrupt(splits)
    failed = _failed(splits)
    assert any(result.split == split and result.check == check for result in failed), failed
    report = failure_report(failed)
    assert f"split '{split}'" in report and check in report


def test_split_with_another_shape_is_caught(good_splits) -> None:
    splits = _copy(good_splits)
    images, labels = splits["calibration"]
    splits["calibration"] = (np.pad(images, ((0, 0), (0, 0), (0, 1), (0, 1))), labels)
    failed = _failed(splits)
    assert any(r.split == "calibration" and r.check == "tensor shape constant" for r in failed)


def test_class_imbalance_is_caught(good_splits) -> None:
    splits = _copy(good_splits)
    images, labels = splits["val"]
    keep = np.concatenate([np.flatnonzero(labels != 2), np.flatnonzero(labels == 2)[:2]])
    splits["val"] = (images[keep], labels[keep])
    failed = _failed(splits)
    assert any(r.split == "val" and r.check.startswith("class balance") for r in failed)
