"""Splits by content hash: an image's split follows from its content alone, so it keeps it in
every data version (added images go where their hash puts them, removed ones just leave), and
a class-stratified calibration set of fixed size held out of train."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from compress.config.data import DataParams
from compress.core.errors import PipelineError

Splits = dict[str, np.ndarray]  # split name -> positions of its images among the staged ones


def hash_position(digest: str, salt: str) -> float:
    """An image's place in [0, 1), from its content hash alone: the same image lands in the
    same place in every data version, whatever else is added or removed."""
    return int(hashlib.sha256(f"{salt}:{digest}".encode()).hexdigest()[:15], 16) / 16**15


def split_data(
    rows: pd.DataFrame, kept: np.ndarray, params: DataParams, num_classes: int
) -> Splits:
    """Splits that follow each image's content hash (salted with `data.seed`): test below
    `test_fraction`, validation in the next `val_fraction`, the rest train; an official test
    split (CIFAR-10) is kept as is. Adding images never moves the others into or out of test
    or validation; identical images share a hash, hence a split, and each split is stored in
    hash order, so the same images read in another order give the same files. The calibration set is a
    class-stratified, fixed-size share of the train images, the ones with the smallest second
    hash per class: as a class grows an image may pass between train and calibration, which
    no model is scored on."""
    salt = str(params.seed)
    place = np.asarray([hash_position(digest, salt) for digest in rows["hash"]])
    labels = rows["label"].to_numpy()
    official = np.flatnonzero(rows["official_test"].to_numpy())
    if len(official):
        test, val_end, test_end = official, params.val_fraction, 0.0
    else:
        test = kept[place[kept] < params.test_fraction]
        test_end = params.test_fraction
        val_end = test_end + params.val_fraction
    val = kept[(place[kept] >= test_end) & (place[kept] < val_end)]
    pool = kept[place[kept] >= val_end]
    calibration_size = params.calibration_size
    if not num_classes <= calibration_size < len(pool) // 2:
        raise PipelineError(
            f"data.calibration_size={calibration_size} must be at least the number of classes "
            f"({num_classes}) and below half of the {len(pool)} training samples left after "
            "the test and validation splits; change data.calibration_size in params.yaml."
        )
    calibration = _calibration(pool, labels, rows["hash"].to_numpy(), calibration_size, salt)
    train = np.setdiff1d(pool, calibration)
    by_place = {
        name: positions[np.argsort(place[positions], kind="stable")]
        for name, positions in (("train", train), ("val", val), ("test", test))
    }
    return by_place | {"calibration": calibration}


def _calibration(
    pool: np.ndarray, labels: np.ndarray, digests: np.ndarray, size: int, salt: str
) -> np.ndarray:
    """`size` images of the pool, each class's share rounded by largest remainder, the
    smallest second hash first within each class; stored in second-hash order, so that any
    prefix (`quantize.calibration_samples`) mixes the classes."""
    classes, counts = np.unique(labels[pool], return_counts=True)
    exact = counts / counts.sum() * size
    quota = np.maximum(np.floor(exact).astype(int), 1)  # every class calibrates
    quota[np.argsort(-(exact - quota), kind="stable")[: max(size - quota.sum(), 0)]] += 1
    place = np.asarray([hash_position(d, f"calibration:{salt}") for d in digests[pool]])
    ordered = np.argsort(place, kind="stable")  # the pool in second-hash order
    taken = np.zeros(len(pool), dtype=bool)
    for label, take in zip(classes, quota, strict=True):
        in_class = ordered[labels[pool][ordered] == label]
        taken[in_class[:take]] = True
    return pool[ordered[taken[ordered]]]
