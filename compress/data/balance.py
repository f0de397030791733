"""Class counts per split judged against chance. A split by content hash is a random draw per
image, so a class's count in a split of fraction f is Binomial(n, f) for a class of n images:
a small split swings by chance. Each (class, split) count must lie within the binomial range
whose tails, summed over every class and split (Bonferroni), hold at most
`data.split_false_alarm` of the data sets a fair split would make: a check that fails on a
really skewed split (a class sent mostly to test, a class missing), not on a coin toss. The
data set's own imbalance is judged once, on the whole pool (`data.class_balance_tolerance`),
where chance plays no part."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binom


def split_fractions(
    val_fraction: float, test_fraction: float, official_test: bool
) -> dict[str, float]:
    """Each hash-drawn split's share of the pool; train counts with its calibration images
    (a stratified pick inside train, no draw). An official test split is not drawn."""
    if official_test:
        return {"train": 1 - val_fraction, "val": val_fraction}
    return {"train": 1 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}


def chance_range(pool: int, fraction: float, tail: float) -> tuple[int, int]:
    """The counts a Binomial(pool, fraction) draw falls outside with probability <= 2 * tail."""
    return int(binom.ppf(tail, pool, fraction)), int(binom.isf(tail, pool, fraction))


def class_count_frame(
    pool_labels: np.ndarray,
    split_labels: np.ndarray,
    fraction: float,
    num_classes: int,
    false_alarm: float,
    tests: int,
) -> pd.DataFrame:
    """One row per class: its count in the split, the range chance allows, and an `outside`
    text naming the class, count and range when the count is outside it (empty otherwise)."""
    tail = false_alarm / (2 * tests)
    pool, count = (
        np.bincount(labels[(labels >= 0) & (labels < num_classes)], minlength=num_classes)
        for labels in (pool_labels, split_labels)
    )  # labels outside the class set fail a check of their own
    ranges = [chance_range(int(n), fraction, tail) for n in pool]
    low, high = np.asarray([r[0] for r in ranges]), np.asarray([r[1] for r in ranges])
    outside = [
        "" if lo <= c <= hi else f"class {k}: {c} of its {n} images, chance allows {lo}-{hi}"
        for k, (c, n, lo, hi) in enumerate(zip(count, pool, low, high, strict=True))
    ]
    return pd.DataFrame(
        {
            "label": np.arange(num_classes),
            "count": count,
            "low": low,
            "high": high,
            "outside": outside,
        }
    )
