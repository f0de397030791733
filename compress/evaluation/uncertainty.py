"""How sure a figure is, given the split's size: paired intervals of accuracy drops over the
same images, and how small a drop the split can resolve.

Both models are scored on the same n images, so only the discordant images matter: b where only
the reference is right, c where only the candidate is. The drop's interval is Tango's score
interval for a difference of paired proportions (Tango 1998; Newcombe's and Fagerland's
comparisons rank it among the best at small counts): the bounds are the drops at which the score
statistic, with the nuisance share of discordant pairs re-estimated under each drop, reaches
the normal quantile. Unlike the percentile bootstrap it replaces, it is not [0, 0] when the
models disagree on no image, and its one-sided 95 % bound covers the true drop in at least
94 % of simulated splits down to a handful of discordant images (tests/test_uncertainty.py
prints the table).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm

METHOD = "tango_score"
EDGE = 1e-12  # bounds are searched inside (-1, 1): the statistic is 0/0 at a drop of exactly 0


def tango_statistic(drop: float, only_reference: int, only_candidate: int, images: int) -> float:
    """Tango's score statistic for a hypothesised drop: (b - c - n drop) over its standard
    error with the only-candidate-right share at its restricted maximum likelihood."""
    n, b, c = images, only_reference, only_candidate
    w = -b - c + (2 * n - b + c) * drop
    share = (math.sqrt(max(w * w + 8 * n * c * drop * (1 - drop), 0.0)) - w) / (4 * n)
    variance = n * (2 * share + drop * (1 - drop))
    return (b - c - n * drop) / math.sqrt(max(variance, 1e-300))


def tango_bound(
    only_reference: int, only_candidate: int, images: int, quantile: float, upper: bool
) -> float:
    """The drop beyond the estimate at which the score statistic reaches -quantile (upper
    bound) or +quantile (lower bound): it is 0 at the estimate and falls as the drop grows."""
    estimate = (only_reference - only_candidate) / images
    if (estimate >= 1 - EDGE and upper) or (estimate <= -1 + EDGE and not upper):
        return estimate
    target = -quantile if upper else quantile
    low, high = (estimate, 1 - EDGE) if upper else (-1 + EDGE, estimate)
    return float(
        brentq(
            lambda drop: tango_statistic(drop, only_reference, only_candidate, images) - target,
            low,
            high,
        )
    )


def discordant_counts(
    reference_correct: np.ndarray, candidate_correct: np.ndarray
) -> tuple[int, int, int]:
    """Images n, and b where only the reference is right, c where only the candidate is."""
    reference_correct = np.asarray(reference_correct, dtype=bool)
    candidate_correct = np.asarray(candidate_correct, dtype=bool)
    b = int(np.sum(reference_correct & ~candidate_correct))
    c = int(np.sum(~reference_correct & candidate_correct))
    return len(reference_correct), b, c


def paired_drop_interval(
    reference_correct: np.ndarray, candidate_correct: np.ndarray, confidence: float = 0.95
) -> dict[str, float | int | str]:
    """Accuracy drop (reference - candidate) on the same images with its two-sided
    `confidence` interval and one-sided upper bound (Tango's score method)."""
    n, b, c = discordant_counts(reference_correct, candidate_correct)
    two_sided = norm.ppf((1 + confidence) / 2)
    return {
        "drop": (b - c) / n,
        "lower": tango_bound(b, c, n, two_sided, upper=False),
        "upper": tango_bound(b, c, n, two_sided, upper=True),
        "upper_one_sided": tango_bound(b, c, n, norm.ppf(confidence), upper=True),
        "confidence": confidence,
        "method": METHOD,
        "images": n,
        "only_reference_right": b,
        "only_candidate_right": c,
    }


def lower_bound(interval: dict, confidence: float) -> float:
    """The one-sided `confidence` lower bound of an interval's drop, from its discordant
    counts: the drop is at least this large unless a chance of 1 - confidence came true."""
    return tango_bound(
        interval["only_reference_right"],
        interval["only_candidate_right"],
        interval["images"],
        float(norm.ppf(confidence)),
        upper=False,
    )


def smallest_resolvable_drop(images: int, confidence: float) -> float:
    """The smallest drop a split of `images` can tell apart from zero at `confidence`: the
    fewest images k a candidate gets wrong (and the reference right, with no image the other
    way) for the one-sided lower bound of its drop to exceed zero."""
    quantile = norm.ppf(confidence)
    for wrong in range(1, images + 1):
        if tango_statistic(0.0, wrong, 0, images) > quantile:
            return wrong / images
    return 1.0


def images_needed(interval: dict, max_drop: float) -> int | None:
    """Test images needed for this candidate's one-sided upper bound to fall within `max_drop`
    if its drop and discordance rates held: the same Tango bound as the interval, with the
    discordant counts growing with the split (a normal approximation would promise a pass the
    score bound does not give at a handful of discordant images). None when the drop itself
    reaches `max_drop`, since no test split can then pass it."""
    n, drop = interval["images"], interval["drop"]
    if drop >= max_drop:
        return None
    quantile = norm.ppf(interval["confidence"])
    reference_rate = interval["only_reference_right"] / n
    candidate_rate = interval["only_candidate_right"] / n

    def passes(images: int) -> bool:
        b, c = reference_rate * images, candidate_rate * images
        return tango_bound(b, c, images, quantile, upper=True) <= max_drop + EDGE

    failing, passing = n - 1, n
    while not passes(passing):  # the bound shrinks as the split grows: double, then halve
        failing, passing = passing, passing * 2
    while passing - failing > 1:
        middle = (failing + passing) // 2
        failing, passing = (failing, middle) if passes(middle) else (middle, passing)
    return passing


def apart_beyond(
    reference_correct: np.ndarray,
    candidate_correct: np.ndarray,
    tolerance: float,
    false_alarm: float,
) -> bool:
    """Whether two models' accuracies on the same images differ by more than `tolerance` in
    either direction beyond chance: a one-sided Tango lower bound per direction, each at
    `false_alarm` / 2, so two models whose accuracies truly lie within `tolerance` are called
    apart in at most `false_alarm` of splits. A raw gap of a few images on a small split is
    not evidence."""
    n, b, c = discordant_counts(reference_correct, candidate_correct)
    quantile = float(norm.ppf(1 - false_alarm / 2))
    return any(
        tango_bound(first, second, n, quantile, upper=False) > tolerance
        for first, second in ((b, c), (c, b))
    )
