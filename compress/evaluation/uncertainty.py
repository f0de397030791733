"""How sure a figure is, given the test split's size: paired intervals of accuracy drops over the
same images, and how small a drop the split can resolve.

Both models are scored on the same n images, so only the discordant images matter: b where only
the reference is right, c where only the candidate is. Resampling the n images with replacement
(the paired bootstrap) draws (B, C, rest) ~ Multinomial(n, (b, c, n - b - c) / n) and the drop
(B - C) / n; drawing those counts directly is the same bootstrap at any n, in O(resamples) memory.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

RESAMPLES = 20_000
SEED = 0


def paired_drop_interval(
    reference_correct: np.ndarray,
    candidate_correct: np.ndarray,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, float | int]:
    """Accuracy drop (reference - candidate) with a two-sided `confidence` percentile interval
    and a one-sided upper bound from a paired bootstrap with a fixed seed."""
    reference_correct = np.asarray(reference_correct, dtype=bool)
    candidate_correct = np.asarray(candidate_correct, dtype=bool)
    n = len(reference_correct)
    only_reference = int(np.sum(reference_correct & ~candidate_correct))
    only_candidate = int(np.sum(~reference_correct & candidate_correct))
    shares = np.array([only_reference, only_candidate, n - only_reference - only_candidate]) / n
    counts = np.random.default_rng(seed).multinomial(n, shares, size=resamples)
    drops = (counts[:, 0] - counts[:, 1]) / n
    lower, upper = np.quantile(drops, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {
        "drop": (only_reference - only_candidate) / n,
        "lower": float(lower),
        "upper": float(upper),
        "upper_one_sided": float(np.quantile(drops, confidence)),
        "confidence": confidence,
        "images": n,
        "only_reference_right": only_reference,
        "only_candidate_right": only_candidate,
    }


def smallest_resolvable_drop(images: int, confidence: float) -> float:
    """The smallest drop a split of `images` can tell apart from zero at `confidence`: a
    candidate wrong on k images the reference gets right (and right wherever the reference is)
    has a paired-bootstrap lower bound above zero once P(none of the k resampled) =
    (1 - k/n)^n falls below 1 - confidence."""
    for wrong in range(1, images + 1):
        if (1 - wrong / images) ** images < 1 - confidence:
            return wrong / images
    return 1.0


def images_needed(interval: dict, max_drop: float) -> int | None:
    """Test images needed for this candidate's one-sided upper bound to fall within `max_drop`
    if its drop and discordance rates held (normal approximation); None when the drop itself
    exceeds `max_drop`, since no test split can then pass it."""
    n, drop = interval["images"], interval["drop"]
    if drop >= max_drop:
        return None
    rate = (interval["only_reference_right"] + interval["only_candidate_right"]) / n
    variance = rate - drop**2
    z = norm.ppf(interval["confidence"])
    return max(n, math.ceil(z**2 * variance / (max_drop - drop) ** 2))
