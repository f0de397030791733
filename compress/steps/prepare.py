"""Step `prepare`: stratified train/val/test splits plus a calibration set, checked by Great
Expectations before anything is written to data/prepared/.

The calibration set (for quantization) is held out of train so that the leakage check can
demand that no test or calibration sample also appears in train.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from compress import atomic
from compress.artifacts import Artifacts
from compress.data_checks import failure_report, image_hashes, validate_splits
from compress.drift import data_profile, source_profile
from compress.errors import PipelineError
from compress.params import DataParams
from compress.sources import RawData, load_source

log = logging.getLogger(__name__)

Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def deduplicate(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep the first copy of each identical image; drop images seen with two labels."""
    first_label: dict[str, int] = {}
    conflicting: set[str] = set()
    keep: list[int] = []
    hashes = image_hashes(images)
    for index, (digest, label) in enumerate(zip(hashes, labels, strict=True)):
        if digest in first_label:
            if first_label[digest] != label:
                conflicting.add(digest)
            continue
        first_label[digest] = int(label)
        keep.append(index)
    keep = [i for i in keep if hashes[i] not in conflicting]
    return images[keep], labels[keep], len(images) - len(keep)


def check_readable(raw: RawData, max_bad_fraction: float) -> None:
    """Unreadable files are skipped, logged, and fatal above `data.max_bad_fraction`."""
    if not raw.skipped:
        return
    total = len(raw.skipped) + len(raw.labels)
    first = ", ".join(raw.skipped[:5])
    log.warning("Skipped %d unreadable file(s) of %d: %s", len(raw.skipped), total, first)
    if len(raw.skipped) / total > max_bad_fraction:
        raise PipelineError(
            f"{len(raw.skipped)} of {total} files ({len(raw.skipped) / total:.1%}) could not be read "
            f"as images, above data.max_bad_fraction={max_bad_fraction}; first: {first}. Remove "
            "or fix them, or raise data.max_bad_fraction."
        )


def check_class_counts(raw: RawData, min_per_class: int) -> None:
    """At least two classes, each with at least `data.min_per_class` distinct images."""
    if len(raw.classes) < 2:
        raise PipelineError(
            f"The data has {len(raw.classes)} class ({', '.join(raw.classes)}); classification "
            "needs at least 2. Add a folder of images per class under data.path."
        )
    counts = np.bincount(raw.labels, minlength=len(raw.classes))
    small = [f"{raw.classes[i]} ({n})" for i, n in enumerate(counts) if n < min_per_class]
    if small:
        raise PipelineError(
            f"Class(es) {', '.join(small)} have fewer than data.min_per_class={min_per_class} "
            "distinct readable images; add images or lower data.min_per_class."
        )


def split_data(
    raw: RawData, val_fraction: float, test_fraction: float, calibration_size: int, seed: int
) -> Splits:
    """Stratified splits with a fixed seed; an official test split (CIFAR-10) is kept as is."""
    num_classes = len(raw.classes)
    images, labels = raw.images, raw.labels
    if raw.official_test is not None:
        test_images, test_labels = raw.official_test
    else:
        images, test_images, labels, test_labels = _stratified(
            images, labels, test_fraction, seed, "data.test_fraction"
        )
    pool_images, val_images, pool_labels, val_labels = _stratified(
        images,
        labels,
        val_fraction / (1 - (0 if raw.official_test else test_fraction)),
        seed + 1,
        "data.val_fraction",
    )
    if not num_classes <= calibration_size < len(pool_labels) // 2:
        raise PipelineError(
            f"data.calibration_size={calibration_size} must be at least the number of classes "
            f"({num_classes}) and below half of the {len(pool_labels)} training samples left after "
            "the test and validation splits; change data.calibration_size in params.yaml."
        )
    train_images, calib_images, train_labels, calib_labels = _stratified(
        pool_images, pool_labels, calibration_size, seed + 2, "data.calibration_size"
    )
    return {
        "train": (train_images, train_labels),
        "val": (val_images, val_labels),
        "test": (test_images, test_labels),
        "calibration": (calib_images, calib_labels),
    }


def _stratified(images: np.ndarray, labels: np.ndarray, size: float | int, seed: int, param: str):
    try:
        return train_test_split(images, labels, test_size=size, stratify=labels, random_state=seed)
    except ValueError as error:
        raise PipelineError(
            f"Cannot make a stratified split for {param}={size}: {error}. Every class needs enough "
            "samples for each split; add data or change the fraction in params.yaml."
        ) from error


def channel_stats(train_images: np.ndarray) -> tuple[list[float], list[float]]:
    mean = train_images.mean(axis=(0, 2, 3), dtype=np.float64)
    std = train_images.std(axis=(0, 2, 3), dtype=np.float64)
    return [round(float(m), 6) for m in mean], [round(float(max(s, 1e-6)), 6) for s in std]


def write_prepared(splits: Splits, raw: RawData, source: str, out_dir: Path) -> None:
    mean, std = channel_stats(splits["train"][0])

    def build(tmp_dir: Path) -> None:
        for name, (images, labels) in splits.items():
            torch.save(
                {
                    "images": torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
                    "labels": torch.from_numpy(labels.astype(np.int64)),
                },
                tmp_dir / f"{name}.pt",
            )
        meta = {
            "source": source,
            "classes": raw.classes,
            "channels": int(splits["train"][0].shape[1]),
            "image_size": int(splits["train"][0].shape[2]),
            "mean": mean,
            "std": std,
            "counts": {name: int(len(labels)) for name, (_, labels) in splits.items()},
        }
        (tmp_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    atomic.replace_dir(out_dir, build)


def prepare(params: DataParams, artifacts: Artifacts) -> Splits:
    """Load the source (a user's folder only from data/input/, which DVC tracks), drop
    duplicates, split, check with Great Expectations, then write data/prepared/ and the data
    profile (only when every check passed) and metrics/data_checks.json."""
    source_path = (
        str(artifacts.tracked_input(params.path, "data.path", artifacts.data_input_dir))
        if params.path
        else None
    )
    raw = load_source(params.source, source_path, params.image_size, params.channels)
    check_readable(raw, params.max_bad_fraction)
    source = source_profile(raw)
    raw.images, raw.labels, dropped = deduplicate(raw.images, raw.labels)
    check_class_counts(raw, params.min_per_class)
    log.info(
        "Loaded %d samples of %d classes from '%s' (%d duplicates dropped)",
        len(raw.labels),
        len(raw.classes),
        params.source,
        dropped,
    )
    splits = split_data(
        raw, params.val_fraction, params.test_fraction, params.calibration_size, params.seed
    )
    results = validate_splits(splits, len(raw.classes), params.class_balance_tolerance)
    passed = all(result.success for result in results)
    atomic.write_json(
        artifacts.data_checks,
        {
            "success": passed,
            "duplicates_dropped": dropped,
            "unreadable_files": {"count": len(raw.skipped), "first": raw.skipped[:10]},
            "counts": {name: int(len(labels)) for name, (_, labels) in splits.items()},
            "checks": [asdict(result) for result in results],
        },
    )
    if not passed:
        raise PipelineError(failure_report(results))
    atomic.write_json(artifacts.data_profile, data_profile(source, splits, raw.classes))
    write_prepared(splits, raw, params.source, artifacts.prepared_dir)
    log.info(
        "Wrote %s: %s",
        artifacts.prepared_dir,
        {name: len(labels) for name, (_, labels) in splits.items()},
    )
    return splits
