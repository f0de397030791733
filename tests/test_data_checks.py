"""The Great Expectations suite passes on good data and names the split and check on bad data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from compress.core.artifacts import Artifacts
from compress.data.balance import class_count_frame
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
    return validate_splits(rows, 10, 0.5, {"train": 0.7, "val": 0.1, "test": 0.2}, 0.01)


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
    chance = [r for r in failed if r.split == "val" and r.check.startswith("class counts within")]
    assert chance and "class 2: 2 of its" in chance[0].detail, failed


def _fair_split(rng: np.random.Generator, images: int, classes: int) -> tuple:
    """A balanced data set split as a hash split is: an independent uniform draw per image."""
    labels = np.arange(images) % classes
    place = rng.random(images)
    split = np.where(place < 0.2, "test", np.where(place < 0.3, "val", "train"))
    return labels, {name: labels[split == name] for name in FRACTIONS}


FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def _chance_rule_fails(labels: np.ndarray, by_split: dict, classes: int) -> bool:
    return any(
        (
            class_count_frame(labels, by_split[s], f, classes, 0.01, classes * 3)["outside"] != ""
        ).any()
        for s, f in FRACTIONS.items()
    )


def _share_rule_fails(by_split: dict, classes: int) -> bool:
    """The rule before: every class's share within ±50 % of uniform in every split."""
    return any(
        np.any(np.abs(np.bincount(part, minlength=classes) / len(part) * classes - 1) > 0.5)
        for part in by_split.values()
    )


@pytest.mark.parametrize("images", [1200, 1800, 4000])
def test_fair_splits_fail_the_class_checks_at_most_at_the_stated_rate(images: int) -> None:
    """400 simulated balanced 10-class data sets: the chance rule stops at most about its
    stated 1 % (at most the 99.9 % quantile of Binomial(400, 1 %) failures); the share rule
    it replaced stopped 43 % of 1,200-image sets."""
    rng = np.random.default_rng(images)
    draws = [_fair_split(rng, images, 10) for _ in range(400)]
    failures = sum(_chance_rule_fails(labels, parts, 10) for labels, parts in draws)
    assert failures <= binom.ppf(0.999, 400, 0.01), failures
    if images == 1200:
        assert sum(_share_rule_fails(parts, 10) for _, parts in draws) > 0.3 * 400


def test_a_class_sent_mostly_to_one_split_or_missing_fails() -> None:
    labels = np.repeat(np.arange(10), 150)
    by_split = _fair_split(np.random.default_rng(0), 1500, 10)[1]
    skewed = by_split | {"test": np.concatenate([by_split["test"], np.full(60, 3)])}
    frame = class_count_frame(labels, skewed["test"], 0.2, 10, 0.01, 30)
    assert list(frame.loc[frame["outside"] != "", "label"]) == [3]
    assert frame.loc[3, "outside"].startswith("class 3: ")
    missing = class_count_frame(labels, by_split["val"][by_split["val"] != 7], 0.1, 10, 0.01, 30)
    assert list(missing.loc[missing["outside"] != "", "label"]) == [7]
    assert missing.loc[7, "outside"].startswith("class 7: 0 of its 150 images, chance allows ")
