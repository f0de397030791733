"""Drift checks of new data against production's profile, on real digits and real Great
Expectations: each kind of drift fails its own check with the figures; ordinary growth passes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from compress.config.drift import DriftParams
from compress.data.checks import ChannelStats, sample_rows
from compress.data.drift import check_drift, drift_report
from compress.data.profile import source_profile, split_profile
from compress.data.sources import load_digits_source

TOLERANCES = DriftParams()


@dataclass
class RawData:
    """A source read into memory, to vary one property at a time."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    sizes: list[str]
    modes: list[str]


def _source_profile(raw: RawData) -> dict:
    rows = sample_rows(raw.images, raw.labels).assign(size=raw.sizes, mode=raw.modes)
    return source_profile(rows, raw.classes)


def _split(raw: RawData, positions: np.ndarray) -> dict:
    stats = ChannelStats()
    stats.update(raw.images[positions])
    return split_profile(raw.labels[positions], stats, raw.classes)


def _profile(raw: RawData) -> dict:
    """Profile with a deterministic half/half train/test split, as `prepare` writes it."""
    order = np.random.default_rng(0).permutation(len(raw.labels))
    half = len(order) // 2
    splits = {"train": _split(raw, order[:half]), "test": _split(raw, order[half:])}
    return {"classes": raw.classes, "source": _source_profile(raw), "splits": splits}


def _subset(raw: RawData, keep: np.ndarray) -> RawData:
    """The images a boolean mask keeps, or those at the given positions, in that order."""
    positions = np.flatnonzero(keep) if keep.dtype == bool else keep
    return RawData(
        raw.images[positions],
        raw.labels[positions],
        raw.classes,
        sizes=[raw.sizes[i] for i in positions],
        modes=[raw.modes[i] for i in positions],
    )


@pytest.fixture(scope="module")
def digits() -> RawData:
    source = load_digits_source(None, None, None)
    samples = list(source.samples)
    return RawData(
        np.stack([sample.image for sample in samples]),
        np.asarray([sample.label for sample in samples]),
        source.classes,
        [sample.size for sample in samples],
        [sample.mode for sample in samples],
    )


@pytest.fixture(scope="module")
def reference(digits: RawData) -> dict:
    return _profile(digits)


def _failed(reference: dict, raw: RawData, tolerances: DriftParams = TOLERANCES) -> dict:
    results = check_drift(reference, _profile(raw), tolerances)
    return {(r.split, r.check): r.detail for r in results if not r.success}


def test_same_data_and_thirty_more_images_of_one_class_pass(digits, reference) -> None:
    assert _failed(reference, digits) == {}
    threes = np.flatnonzero(digits.labels == 3)[:30]
    shifted = np.roll(digits.images[threes], 1, axis=-1)  # new images, not copies
    grown = RawData(
        np.concatenate([digits.images, shifted]),
        np.concatenate([digits.labels, digits.labels[threes]]),
        digits.classes,
        sizes=digits.sizes + ["8x8"] * 30,
        modes=digits.modes + ["L"] * 30,
    )
    assert _failed(reference, grown) == {}
    assert (
        _source_profile(grown)["class_counts"]["3"]
        == _source_profile(digits)["class_counts"]["3"] + 30
    )


def test_shifted_pixel_mean_fails_in_every_split_with_the_figures(digits, reference) -> None:
    brighter = RawData(
        np.clip(digits.images + 0.1, 0, 1),
        digits.labels,
        digits.classes,
        sizes=digits.sizes,
        modes=digits.modes,
    )
    failed = _failed(reference, brighter)
    for split in ("train", "test"):
        detail = failed[split, "channel mean within ±0.05"]
        old = reference["splits"][split]["channel_mean"][0]
        assert f"{old:.4g} in production" in detail and "shift +0.0" in detail
    assert ("source", "image size mix within ±0.05") not in failed
    assert "channel mean within ±0.05" in drift_report(
        check_drift(reference, _profile(brighter), TOLERANCES)
    )
    assert _failed(reference, brighter, DriftParams(mean_tolerance=0.2, std_tolerance=0.2)) == {}


def test_vanished_class_fails_naming_it(digits, reference) -> None:
    without_seven = _subset(digits, digits.labels != 7)
    failed = _failed(reference, without_seven)
    assert "class 7: 0 now" in failed["train", "no class vanished"]
    assert "class 7" in failed["test", "class shares within ±0.05"]


def test_another_image_size_and_mode_fail_on_the_source(digits, reference) -> None:
    resized = RawData(
        digits.images,
        digits.labels,
        digits.classes,
        sizes=["28x28"] * 600 + digits.sizes[600:],
        modes=digits.modes,
    )
    failed = _failed(reference, resized)
    assert set(failed) == {("source", "image size mix within ±0.05")}
    assert (
        "size 28x28: 0.3339 now vs 0 in production"
        in failed["source", "image size mix within ±0.05"]
    )
    recoloured = RawData(
        digits.images,
        digits.labels,
        digits.classes,
        sizes=digits.sizes,
        modes=["RGB"] * len(digits.modes),
    )
    failed = _failed(reference, recoloured)
    assert "mode L: 0 now vs 1 in production" in failed["source", "image mode mix within ±0.05"]


def test_profile_hash_follows_content_not_order(digits) -> None:
    order = np.random.default_rng(1).permutation(len(digits.labels))
    shuffled = _subset(digits, order)
    assert _source_profile(shuffled)["content_hash"] == _source_profile(digits)["content_hash"]
    changed = RawData(
        digits.images.copy(), digits.labels, digits.classes, sizes=digits.sizes, modes=digits.modes
    )
    changed.images[0, 0, 0, 0] += 0.5
    assert _source_profile(changed)["content_hash"] != _source_profile(digits)["content_hash"]
