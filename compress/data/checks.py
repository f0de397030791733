"""Great Expectations checks on every prepared split, run before anything is written.

Each split becomes a small pandas frame with one row per sample, computed while the images
stream past (label, finite pixel range, non-finite count, shape, whether its hash occurs in
train) so that standard GX column expectations express every check; the class balance is
checked twice, each where it means something: the data set's own class shares once on the
whole pool, and each class's count in each hash-drawn split against the range chance allows
(`compress.data.balance`). The report names the split and each failed check.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from compress.data.balance import class_count_frame

log = logging.getLogger(__name__)


@dataclass
class CheckResult:
    split: str
    check: str
    expectation: str
    success: bool
    detail: str


Checks = list[tuple[str, gx.expectations.Expectation]]  # (check name, expectation)


def unit_pixels(images: np.ndarray) -> np.ndarray:
    """Stored pixels (uint8, or float32 in [0, 1]) as float64 in [0, 1]."""
    return images.astype(np.float64) / (255.0 if images.dtype == np.uint8 else 1.0)


def sample_rows(
    images: np.ndarray, labels: np.ndarray, keys: list[str] | None = None
) -> pd.DataFrame:
    """One row per image, computed while the images stream past: label, split key (`hash`: the
    source's key, or the pixel hash when none is given), the hash of the prepared pixels
    (`pixel_hash`: to find the same image in two splits, however it was stored), shape, pixel
    range in [0, 1] units and non-finite count."""
    flat = unit_pixels(images.reshape(len(images), -1))
    finite = np.isfinite(flat)
    all_bad = ~finite.any(axis=1)
    lowest = np.where(finite, flat, np.inf).min(axis=1, initial=np.inf)
    highest = np.where(finite, flat, -np.inf).max(axis=1, initial=-np.inf)
    pixel_hashes = [hashlib.sha1(np.ascontiguousarray(i).tobytes()).hexdigest() for i in images]
    return pd.DataFrame(
        {
            "label": labels.astype(np.int64),
            "hash": pixel_hashes if keys is None else keys,
            "pixel_hash": pixel_hashes,
            "shape": ["x".join(map(str, image.shape)) for image in images],
            "pixel_min": np.where(all_bad, 0.0, lowest),
            "pixel_max": np.where(all_bad, 0.0, highest),
            "nonfinite": (~finite).sum(axis=1),
        }
    )


class ChannelStats:
    """Per-channel mean and standard deviation of pixels in [0, 1], accumulated over a stream
    of image batches in float64 (sums of values and of squares)."""

    def __init__(self) -> None:
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def update(self, images: np.ndarray) -> None:
        values = unit_pixels(images)
        self.count += values.shape[0] * values.shape[2] * values.shape[3]
        self.total = self.total + values.sum(axis=(0, 2, 3))
        self.squares = self.squares + (values * values).sum(axis=(0, 2, 3))

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Rounded to 6 decimals, as stored in meta.json and the data profile."""
        mean = self.total / max(self.count, 1)
        std = np.sqrt(np.maximum(self.squares / max(self.count, 1) - mean * mean, 0.0))
        return [round(float(m), 6) for m in mean], [round(float(max(s, 1e-6)), 6) for s in std]


def _split_frame(rows: pd.DataFrame, train_hashes: set[str]) -> pd.DataFrame:
    return rows.assign(in_train=rows["pixel_hash"].isin(train_hashes).to_numpy())


def _pool_balance(pool: pd.DataFrame, num_classes: int, tolerance: float) -> tuple:
    """The data set's own class shares, once, on every image: a deterministic figure."""
    shares = pool["label"].value_counts(normalize=True)
    frame = pool[["label"]].assign(class_share=pool["label"].map(shares).to_numpy())
    uniform = 1.0 / num_classes
    check = (
        f"class balance within ±{tolerance:.0%} of uniform",
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="class_share",
            min_value=uniform * (1 - tolerance),
            max_value=uniform * (1 + tolerance),
        ),
    )
    return "pool", frame, [check]


def _chance_balance(
    rows: dict[str, pd.DataFrame], num_classes: int, fractions: dict[str, float], false_alarm: float
) -> list[tuple]:
    """Each hash-drawn split's class counts against the binomial range chance allows (train
    with its calibration images); the report names the class, its count and the range."""
    pool = np.concatenate([frame["label"].to_numpy() for frame in rows.values()])
    counted = rows | {"train": pd.concat([rows["train"], rows["calibration"]])}
    tests = num_classes * len(fractions)
    name = f"class counts within chance (false alarm {false_alarm:.0%} per data set)"
    return [
        (
            split,
            class_count_frame(
                pool, counted[split]["label"].to_numpy(), fraction, num_classes, false_alarm, tests
            ),
            [(name, gx.expectations.ExpectColumnValuesToBeInSet(column="outside", value_set=[""]))],
        )
        for split, fraction in fractions.items()
    ]


def _checks(expected_shape: str, num_classes: int, check_leakage: bool) -> Checks:
    classes = list(range(num_classes))
    checks = [
        (
            "tensor shape constant",
            gx.expectations.ExpectColumnValuesToBeInSet(column="shape", value_set=[expected_shape]),
        ),
        (
            "pixel values >= 0",
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="pixel_min", min_value=0.0, max_value=1.0
            ),
        ),
        (
            "pixel values <= 1",
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="pixel_max", min_value=0.0, max_value=1.0
            ),
        ),
        (
            "no NaN or inf pixels",
            gx.expectations.ExpectColumnValuesToBeInSet(column="nonfinite", value_set=[0]),
        ),
        (
            "labels within the class set",
            gx.expectations.ExpectColumnValuesToBeInSet(column="label", value_set=classes),
        ),
        (
            "every class present",
            gx.expectations.ExpectColumnDistinctValuesToContainSet(
                column="label", value_set=classes
            ),
        ),
    ]
    if check_leakage:
        checks.append(
            (
                "no sample duplicated in train",
                gx.expectations.ExpectColumnValuesToBeInSet(column="in_train", value_set=[False]),
            )
        )
    return checks


def _detail(result: dict) -> str:
    found = result.get("result", {}) or {}
    if "unexpected_count" in found:
        sample = found.get("partial_unexpected_list", [])[:5]
        return (
            f"{found['unexpected_count']} of {found.get('element_count', '?')} rows unexpected"
            + (f", e.g. {sample}" if sample else "")
        )
    if "details" in found and "value_counts" in found["details"]:
        present = {int(item["value"]) for item in found["details"]["value_counts"]}
        return f"classes present: {sorted(present)}"
    if "observed_value" in found:
        return f"observed {found['observed_value']}"
    return ""


def run_checks(frames: list[tuple[str, pd.DataFrame, Checks]]) -> list[CheckResult]:
    """Validate each (split, frame, checks) with Great Expectations in one ephemeral context."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("prepared").add_dataframe_asset(name="samples")
    batch_definition = asset.add_batch_definition_whole_dataframe("split")
    results: list[CheckResult] = []
    for index, (split, frame, checks) in enumerate(frames):
        suite = gx.ExpectationSuite(name=f"{split}_suite_{index}")
        for check, expectation in checks:
            expectation.meta = {"check": check}
            suite.add_expectation(expectation)
        suite = context.suites.add(suite)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        for outcome in batch.validate(suite).results:
            config = outcome.expectation_config
            results.append(
                CheckResult(
                    split=split,
                    check=config.meta["check"],
                    expectation=f"{config.type}({config.kwargs.get('column')})",
                    success=bool(outcome.success),
                    detail="" if outcome.success else _detail(outcome.to_json_dict()),
                )
            )
    return results


def validate_splits(
    rows: dict[str, pd.DataFrame],
    num_classes: int,
    pool_tolerance: float,
    fractions: dict[str, float],
    false_alarm: float,
) -> list[CheckResult]:
    """Run the suite on each split's `sample_rows` (train, val, test, calibration: train is
    the leakage reference), the pool's class balance, and each hash-drawn split's class
    counts (`fractions`: its share of the pool) at `false_alarm` per data set."""
    train_hashes = set(rows["train"]["pixel_hash"])
    expected_shape = rows["train"]["shape"].iloc[0] if len(rows["train"]) else ""
    per_split = [
        (
            split,
            _split_frame(frame, train_hashes),
            _checks(expected_shape, num_classes, split != "train"),
        )
        for split, frame in rows.items()
    ]
    pool = pd.concat(list(rows.values()))
    return run_checks(
        [
            *per_split,
            _pool_balance(pool, num_classes, pool_tolerance),
            *_chance_balance(rows, num_classes, fractions, false_alarm),
        ]
    )


def failure_report(results: list[CheckResult]) -> str:
    failed = [r for r in results if not r.success]
    return (
        "Data checks failed: "
        + "; ".join(f"split '{r.split}': {r.check} [{r.expectation}] — {r.detail}" for r in failed)
        + ". Fix the source data (or data.* params) and run `dvc repro prepare` again."
    )
