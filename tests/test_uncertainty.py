"""Paired intervals against closed-form and brute-force references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import norm

from compress.evaluation.uncertainty import (
    images_needed,
    paired_drop_interval,
    smallest_resolvable_drop,
)


def _pairs(n: int, only_reference: int, only_candidate: int) -> tuple[np.ndarray, np.ndarray]:
    reference = np.ones(n, dtype=bool)
    candidate = np.ones(n, dtype=bool)
    candidate[:only_reference] = False
    reference[only_reference : only_reference + only_candidate] = False
    return reference, candidate


def test_large_split_matches_the_normal_approximation() -> None:
    n, b, c = 10_000, 300, 100
    interval = paired_drop_interval(*_pairs(n, b, c), confidence=0.95, resamples=50_000)
    drop = (b - c) / n
    sd = np.sqrt(((b + c) / n - drop**2) / n)
    assert interval["drop"] == pytest.approx(0.02)
    assert interval["lower"] == pytest.approx(drop - norm.ppf(0.975) * sd, abs=0.1 * sd)
    assert interval["upper"] == pytest.approx(drop + norm.ppf(0.975) * sd, abs=0.1 * sd)
    assert interval["upper_one_sided"] == pytest.approx(drop + norm.ppf(0.95) * sd, abs=0.1 * sd)


def test_small_split_matches_the_enumerated_bootstrap() -> None:
    """n = 5: every one of the 5^5 resamples enumerated gives the exact bootstrap distribution."""
    reference, candidate = _pairs(5, 2, 1)
    diff = reference.astype(int) - candidate.astype(int)
    drops = np.array(sorted(diff[list(i)].mean() for i in itertools.product(range(5), repeat=5)))
    interval = paired_drop_interval(reference, candidate, 0.8, resamples=200_000)
    for quantile, key in ((0.1, "lower"), (0.9, "upper"), (0.8, "upper_one_sided")):
        exact = np.quantile(drops, quantile)
        assert abs(interval[key] - exact) <= 0.2 + 1e-9, (key, interval[key], exact)  # one step


def test_same_inputs_same_interval_and_identical_models_have_none() -> None:
    pairs = _pairs(360, 4, 1)
    assert paired_drop_interval(*pairs) == paired_drop_interval(*pairs)
    same = paired_drop_interval(*_pairs(360, 0, 0))
    assert same["lower"] == same["upper"] == same["upper_one_sided"] == 0.0


def test_resolving_power_and_needed_images() -> None:
    assert smallest_resolvable_drop(360, 0.95) == pytest.approx(3 / 360)  # (1 - 3/360)^360 < 0.05
    assert smallest_resolvable_drop(360, 0.99) == pytest.approx(5 / 360)
    interval = paired_drop_interval(*_pairs(360, 3, 0))
    needed = images_needed(interval, 0.01)
    rate = 3 / 360
    assert needed == int(np.ceil(norm.ppf(0.95) ** 2 * (rate - rate**2) / (0.01 - rate) ** 2))
    assert images_needed(paired_drop_interval(*_pairs(360, 6, 0)), 0.01) is None
