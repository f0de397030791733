"""How often `prepare`'s class checks stop a fair data set: the real `prepare` step (Great
Expectations included) over many data sets whose splits differ only by chance, on the bundled
digits (one per `data.seed`) and on a small image folder of digits (about 1,200 images) grown
a few images at a time, each at a few seeds; then the deliberately skewed cases that must
still fail (one class sent mostly to test, a class missing from validation: moved after the
split, as a bug or a leak would). Prints a table:
data sets tried, failures, and the stated rate (`data.split_false_alarm`).

    python benchmarks/split_checks.py [--digits-seeds 20] [--folder-steps 10] [--folder-seeds 3]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from compress.config.data import DataParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.balance import split_fractions
from compress.data.checks import CheckResult, sample_rows, validate_splits
from compress.data.loaders import load_split
from compress.steps.prepare import prepare

FOLDER = "data/input/digits"
SPLITS = ("train", "val", "test", "calibration")


def write_folder(root: Path, count: int) -> None:
    """The first `count` digits as PNG files in class folders: the image folder a team has."""
    digits = load_digits()
    for index in range(count):
        folder = root / FOLDER / str(digits.target[index])
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index:04d}.png"
        if not path.exists():
            Image.fromarray(np.round(digits.images[index] * 255 / 16).astype(np.uint8)).save(path)


def stops(params: DataParams, root: Path) -> str | None:
    """The failed checks' message when `prepare` stops, else None."""
    try:
        prepare(params, Artifacts(root))
    except PipelineError as error:
        return str(error)
    return None


def fair_data_sets(digits_seeds: int, folder_steps: int, folder_seeds: int) -> list[tuple]:
    """(data set, images, seed, failure or None) for each fair data set tried."""
    rows = []
    for seed in range(digits_seeds):
        with tempfile.TemporaryDirectory() as folder:
            rows.append(("digits", 1797, seed, stops(DataParams(seed=seed), Path(folder))))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for step in range(folder_steps):
            count = 1200 + 5 * step
            write_folder(root, count)
            for seed in range(folder_seeds):
                params = DataParams(source="imagefolder", path=FOLDER, seed=seed)
                rows.append(("image folder", count, seed, stops(params, root)))
    return rows


def skewed_cases() -> list[tuple[str, list[CheckResult]]]:
    """The bundled digits' prepared splits, skewed on purpose after the split, as a bug or a
    leak would: 80 % of class 3's train images moved into test; every validation image of
    class 7 moved into train. Both must fail the checks."""
    with tempfile.TemporaryDirectory() as folder:
        artifacts = Artifacts(Path(folder))
        params = DataParams()
        prepare(params, artifacts)
        splits = {s: load_split(s, artifacts.prepared_dir) for s in SPLITS}
    arrays = {s: (images.numpy(), labels.numpy()) for s, (images, labels) in splits.items()}
    fractions = split_fractions(params.val_fraction, params.test_fraction, official_test=False)
    cases = []
    for name, label, source, target, share in (
        ("class 3: 80 % of train moved into test", 3, "train", "test", 0.8),
        ("class 7: all of validation moved into train", 7, "val", "train", 1.0),
    ):
        skewed = _move(arrays, label, source, target, share)
        rows = {s: sample_rows(images, labels) for s, (images, labels) in skewed.items()}
        results = validate_splits(
            rows, 10, params.class_balance_tolerance, fractions, params.split_false_alarm
        )
        cases.append((name, [r for r in results if not r.success]))
    return cases


def _move(arrays: dict, label: int, source: str, target: str, share: float) -> dict:
    images, labels = arrays[source]
    picked = np.flatnonzero(labels == label)[: int(round(share * (labels == label).sum()))]
    stay = np.setdiff1d(np.arange(len(labels)), picked)
    moved = arrays | {source: (images[stay], labels[stay])}
    target_images, target_labels = arrays[target]
    moved[target] = (
        np.concatenate([target_images, images[picked]]),
        np.concatenate([target_labels, labels[picked]]),
    )
    return moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits-seeds", type=int, default=20)
    parser.add_argument("--folder-steps", type=int, default=10)
    parser.add_argument("--folder-seeds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    rate = DataParams().split_false_alarm
    rows = fair_data_sets(args.digits_seeds, args.folder_steps, args.folder_seeds)
    print(
        "| data set | images | data sets | failed | stated false-alarm rate |\n|---|---|---|---|---|"
    )
    for name in ("digits", "image folder"):
        mine = [r for r in rows if r[0] == name]
        sizes = sorted({r[1] for r in mine})
        failed = [r for r in mine if r[3]]
        print(f"| {name} | {sizes[0]}-{sizes[-1]} | {len(mine)} | {len(failed)} | {rate:.0%} |")
        for row in failed:
            print(f"  failed: {row[1]} images, seed {row[2]}: {row[3][:300]}")
    print("\n| skewed on purpose | stopped prepare | message |\n|---|---|---|")
    for name, failed in skewed_cases():
        said = "; ".join(f"{r.split}: {r.check}: {r.detail}" for r in failed)
        print(f"| {name} | {bool(failed)} | {said[:300]} |")


if __name__ == "__main__":
    main()
