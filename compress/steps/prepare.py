"""Step `prepare`: train/val/test splits by content hash (an image keeps its split across data
versions) plus a calibration set, checked by Great Expectations before anything is written to
data/prepared/. The source is streamed once and
every later pass reads shards, so memory does not grow with the number of images.

The calibration set (for quantization) is held out of train so that the leakage check can
demand that no test or calibration sample also appears in train.
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from compress.config.data import DataParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.balance import split_fractions
from compress.data.checks import (
    ChannelStats,
    CheckResult,
    failure_report,
    sample_rows,
    validate_splits,
)
from compress.data.near_duplicates import near_duplicate_message, split_near_duplicates
from compress.data.profile import source_profile, split_profile
from compress.data.shards import ShardReader, ShardWriter
from compress.data.sources import Source, load_source
from compress.data.splits import Splits, split_data

log = logging.getLogger(__name__)

SCAN_BATCH = 256
ROW_COLUMNS = ["label", "hash", "pixel_hash", "pixel_min", "pixel_max", "nonfinite"]


def scan_source(source: Source, staging_dir: Path) -> tuple[ShardReader, pd.DataFrame]:
    """One streaming pass over the source: every readable image is staged on disk (shards, in
    the order read: the pool, then an official test split) and described by one row
    (`sample_rows` plus the file's size and mode, and whether it is official test)."""
    writer: ShardWriter | None = None
    frames: list[pd.DataFrame] = []
    streams = ((False, source.samples), (True, source.official_test or iter(())))
    for official, stream in streams:
        while batch := list(itertools.islice(stream, SCAN_BATCH)):
            images = np.stack([sample.image for sample in batch])
            labels = np.asarray([sample.label for sample in batch], dtype=np.int64)
            if writer is None:
                writer = ShardWriter(staging_dir, "staged", images.dtype.name, images.shape[1:])
            for image, label in zip(images, labels, strict=True):
                writer.add(image, label)
            frames.append(
                sample_rows(images, labels, [sample.key for sample in batch]).assign(
                    size=[sample.size for sample in batch],
                    mode=[sample.mode for sample in batch],
                    name=[sample.name for sample in batch],
                    official_test=official,
                )
            )
    if writer is None:
        raise PipelineError("The source holds no readable image; check data.source and data.path.")
    writer.close()
    return ShardReader(staging_dir, "staged"), pd.concat(frames, ignore_index=True)


def deduplicate(rows: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Positions of the pool's images to keep: of each identical image (the same source
    pixels, or the same prepared pixels: a model cannot tell those apart) the copy with the
    smallest key, whatever order the files are read in, so adding a copy never moves the
    image's split; images seen with two labels are dropped."""
    first_label: dict[str, int] = {}
    conflicting: set[str] = set()
    keep: list[int] = []
    pool = rows[~rows["official_test"]].sort_values("hash", kind="stable")
    for position, key, pixels, label in zip(
        pool.index, pool["hash"], pool["pixel_hash"], pool["label"], strict=True
    ):
        seen = [d for d in (key, pixels) if d in first_label]
        if seen:
            conflicting.update(d for d in seen if first_label[d] != label)
            continue
        first_label[key] = first_label[pixels] = int(label)
        keep.append(position)
    kept = [p for p in keep if not {rows.at[p, "hash"], rows.at[p, "pixel_hash"]} & conflicting]
    return np.sort(np.asarray(kept, dtype=np.int64)), len(pool) - len(kept)


def drop_official_test_copies(rows: pd.DataFrame, kept: np.ndarray) -> tuple[np.ndarray, int]:
    """The kept pool images without copies of an official test image (CIFAR-10's test batch
    is not deduplicated against the training batches): a copy in train would be a test image
    trained on. Returns the positions kept and how many copies were dropped."""
    official = rows[rows["official_test"]]
    copy = (
        rows["hash"].isin(set(official["hash"]))
        | rows["pixel_hash"].isin(set(official["pixel_hash"]))
    ).to_numpy()
    return kept[~copy[kept]], int(copy[kept].sum())


def check_readable(skipped: list[str], readable: int, max_bad_fraction: float) -> None:
    """Unreadable files are skipped, logged, and fatal above `data.max_bad_fraction`."""
    if not skipped:
        return
    total = len(skipped) + readable
    first = ", ".join(skipped[:5])
    log.warning("Skipped %d unreadable file(s) of %d: %s", len(skipped), total, first)
    if len(skipped) / total > max_bad_fraction:
        raise PipelineError(
            f"{len(skipped)} of {total} files ({len(skipped) / total:.1%}) could not be read "
            f"as images, above data.max_bad_fraction={max_bad_fraction}; first: {first}. Remove "
            "or fix them, or raise data.max_bad_fraction."
        )


def check_class_counts(labels: np.ndarray, classes: list[str], min_per_class: int) -> None:
    """At least two classes, each with at least `data.min_per_class` distinct images."""
    if len(classes) < 2:
        raise PipelineError(
            f"The data has {len(classes)} class ({', '.join(classes)}); classification "
            "needs at least 2. Add a folder of images per class under data.path."
        )
    counts = np.bincount(labels, minlength=len(classes))
    small = [f"{classes[i]} ({n})" for i, n in enumerate(counts) if n < min_per_class]
    if small:
        raise PipelineError(
            f"Class(es) {', '.join(small)} have fewer than data.min_per_class={min_per_class} "
            "distinct readable images; add images or lower data.min_per_class."
        )


def write_prepared(
    splits: Splits,
    staged: ShardReader,
    rows: pd.DataFrame,
    classes: list[str],
    source: str,
    out_dir: Path,
) -> dict[str, dict]:
    """Each split's shards, labels, index (class counts and channel statistics) and rows (label,
    content hash and pixel range per image: what the duplicate and GX checks read), then
    meta.json, streamed from the staged images; returns each split's profile."""

    profiles: dict[str, dict] = {}

    def build(tmp_dir: Path) -> None:
        for name, positions in splits.items():
            writer = ShardWriter(tmp_dir, name, staged.dtype.name, staged.image_shape)
            stats = ChannelStats()
            for start in range(0, len(positions), SCAN_BATCH):
                images = np.stack([staged[int(p)] for p in positions[start : start + SCAN_BATCH]])
                stats.update(images)
                for image, position in zip(
                    images, positions[start : start + SCAN_BATCH], strict=True
                ):
                    writer.add(image, int(staged.labels[position]))
            profiles[name] = split_profile(staged.labels[positions], stats, classes)
            counts = np.bincount(staged.labels[positions], minlength=len(classes))
            writer.close(
                class_counts=dict(zip(classes, counts.tolist(), strict=True)),
                channel_mean=profiles[name]["channel_mean"],
                channel_std=profiles[name]["channel_std"],
                rows=f"{name}.rows.csv",
            )
            rows.iloc[positions].to_csv(
                tmp_dir / f"{name}.rows.csv", columns=ROW_COLUMNS, index=False
            )
        meta = {
            "source": source,
            "classes": classes,
            "channels": int(staged.image_shape[0]),
            "image_size": int(staged.image_shape[1]),
            "mean": profiles["train"]["channel_mean"],
            "std": profiles["train"]["channel_std"],
            "counts": {name: int(len(positions)) for name, positions in splits.items()},
            "pixels": staged.dtype.name,
        }
        (tmp_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    atomic.replace_dir(out_dir, build)
    return profiles


def prepare(params: DataParams, artifacts: Artifacts) -> dict[str, int]:
    """Stream the source (a user's folder only from data/input/, which DVC tracks) once into
    staged shards with one row per image, drop duplicates, split, check the rows with Great
    Expectations, then write data/prepared/ (shards streamed from the staged ones) and the data
    profile (only when every check passed) and metrics/data_checks.json."""
    source_path = (
        str(artifacts.tracked_input(params.path, "data.path", artifacts.data_input_dir))
        if params.path
        else None
    )
    source = load_source(params.source, source_path, params.image_size, params.channels)
    artifacts.prepared_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=artifacts.prepared_dir.parent, prefix=".staging-") as tmp:
        staged, rows = scan_source(source, Path(tmp))
        check_readable(source.skipped, int((~rows["official_test"]).sum()), params.max_bad_fraction)
        source_figures = source_profile(rows[~rows["official_test"]], source.classes)
        kept, dropped = deduplicate(rows)
        kept, test_copies = drop_official_test_copies(rows, kept)
        if test_copies:
            log.warning("Dropped %d copies of official test images from the pool", test_copies)
        check_class_counts(rows["label"].to_numpy()[kept], source.classes, params.min_per_class)
        log.info(
            "Read %d samples of %d classes from '%s' (%d duplicates dropped)",
            len(kept),
            len(source.classes),
            params.source,
            dropped,
        )
        splits = split_data(rows, kept, params, len(source.classes))
        split_rows = {name: rows.iloc[p].reset_index(drop=True) for name, p in splits.items()}
        official = bool(rows["official_test"].any())
        near = split_near_duplicates(staged, splits, rows["name"], params.near_duplicates)
        _check(split_rows, source, (dropped, test_copies), near, params, artifacts, official)
        profiles = write_prepared(
            splits, staged, rows, source.classes, params.source, artifacts.prepared_dir
        )
        staged.close()
    profile = {"classes": source.classes, "source": source_figures, "splits": profiles}
    atomic.write_json(artifacts.data_profile, profile)
    counts = {name: len(positions) for name, positions in splits.items()}
    log.info("Wrote %s: %s", artifacts.prepared_dir, counts)
    return counts


def _check(
    split_rows: dict[str, pd.DataFrame],
    source: Source,
    dropped: tuple[int, int],
    near: dict,
    params: DataParams,
    artifacts: Artifacts,
    official_test: bool,
) -> None:
    """Great Expectations on every split's rows and the near-duplicate report's limit;
    metrics/data_checks.json either way, with the duplicates and the copies of official test
    images dropped (`dropped`)."""
    fractions = split_fractions(params.val_fraction, params.test_fraction, official_test)
    results = validate_splits(
        split_rows,
        len(source.classes),
        params.class_balance_tolerance,
        fractions,
        params.split_false_alarm,
    )
    passed = all(result.success for result in results) and not near["stops"]
    atomic.write_json(
        artifacts.data_checks,
        {
            "success": passed,
            "duplicates_dropped": dropped[0],
            "official_test_copies_dropped": dropped[1],
            "unreadable_files": {"count": len(source.skipped), "first": source.skipped[:10]},
            "near_duplicates": near,
            "counts": {name: int(len(frame)) for name, frame in split_rows.items()},
            "checks": [asdict(result) for result in results],
        },
    )
    if not passed:
        classes_failed = not all(result.success for result in results)
        report = failure_report(results) + _balance_hint(results) if classes_failed else ""
        raise PipelineError((report + near_duplicate_message(near)).strip())


def _balance_hint(results: list[CheckResult]) -> str:
    """What each class check means, and what fixes it."""
    failed = {r.check.split(" (")[0] for r in results if not r.success}
    hints = []
    if "class counts within chance" in failed:
        hints.append(
            "A class's count in a split is outside what a split by content hash gives by "
            "chance (data.split_false_alarm is the share of fair data sets that would fail): "
            "the split is really skewed, e.g. images of one class renamed or copied into one "
            "split; check those images."
        )
    if "every class present" in failed:
        hints.append("A class has too few images to reach every split: add images to it.")
    if any(check.startswith("class balance") for check in failed):
        hints.append(
            "The data set's own class shares are beyond data.class_balance_tolerance of "
            "uniform: add images to the small classes, or raise the tolerance if the "
            "imbalance is real and intended."
        )
    return "".join(f" {hint}" for hint in hints)
