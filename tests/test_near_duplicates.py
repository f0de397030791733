"""Near-duplicates across splits, by perceptual hash: copies made on purpose (resized, lossily
re-encoded, shifted by one pixel) of detailed pictures are reported, unrelated pictures are not,
and `prepare` records the report and stops only above `data.near_duplicates.max_pairs`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compress.config.data import DataParams, NearDuplicateParams
from compress.core.artifacts import Artifacts
from compress.core.errors import PipelineError
from compress.data.near_duplicates import near_duplicate_report, perceptual_hashes
from compress.steps.prepare import prepare

MAX_DISTANCE = NearDuplicateParams().max_distance


def picture(seed: int) -> Image.Image:
    """A 32x32 colour picture with detail at the scale of real photos at that size: 8x8 random
    colours, smoothly upsampled."""
    cells = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize((32, 32), Image.BICUBIC)


def resized(image: Image.Image) -> Image.Image:
    return image.resize((26, 26), Image.BILINEAR).resize((32, 32), Image.BILINEAR)


def reencoded(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=30)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def shifted(image: Image.Image) -> Image.Image:
    """One pixel to the right, the edge column repeated (no wrap-around)."""
    pixels = np.asarray(image)
    return Image.fromarray(np.concatenate([pixels[:, :1], pixels[:, :-1]], axis=1))


def chw(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def test_copies_are_reported_and_unrelated_pictures_are_not() -> None:
    """Train: 60 pictures. Test: 10 resized, 10 re-encoded and 10 shifted copies of train
    pictures, and 200 unrelated pictures (about 12,000 unrelated pairs with train)."""
    train = [picture(seed) for seed in range(60)]
    copies = {"resized": resized, "reencoded": reencoded, "shifted": shifted}
    test = [
        edit(train[i]) for k, edit in enumerate(copies.values()) for i in range(10 * k, 10 * k + 10)
    ]
    test += [picture(seed) for seed in range(1000, 1200)]
    names = {
        "train": [f"train/{i}.png" for i in range(60)],
        "test": [f"{kind}/{i}.png" for kind in copies for i in range(10)]
        + [f"unrelated/{i}.png" for i in range(200)],
    }
    hashes = {
        split: perceptual_hashes(chw(image) for image in images)
        for split, images in (("train", train), ("test", test))
    }
    report = near_duplicate_report(hashes, names, MAX_DISTANCE, max_pairs=None)

    pairs = report["pairs"]["test"]
    examples = {example["test"]: example for example in report["examples"]}
    assert not any(name.startswith("unrelated/") for name in examples)
    assert pairs <= 30  # no unrelated pair, no copy matched twice
    found = {kind: 0 for kind in copies}
    for i, j, _ in _pairs(hashes):
        assert j < 30 and i == (j // 10) * 10 + j % 10, (i, j)  # each copy with its original
        found[names["test"][j].split("/")[0]] += 1
    assert found["resized"] == found["reencoded"] == 10
    assert found["shifted"] >= 8  # a one-pixel shift moves the hash most; measured: 9 of 10
    assert not report["stops"]
    assert near_duplicate_report(hashes, names, MAX_DISTANCE, max_pairs=0)["stops"]


def _pairs(hashes: dict[str, np.ndarray]) -> list[tuple[int, int, int]]:
    distance = np.bitwise_count(hashes["test"][:, None] ^ hashes["train"][None, :])
    return [
        (int(i), int(j), int(distance[j, i]))
        for j, i in zip(*np.nonzero(distance <= MAX_DISTANCE), strict=True)
    ]


def test_prepare_records_the_pairs_and_stops_only_above_max_pairs(tmp_path: Path) -> None:
    """An image folder of 2 classes x 60 pictures, each picture also present resized: the two
    copies of a picture have different content hashes, so many pairs fall across splits.
    `prepare` reports them with file names; with `max_pairs: 0` it stops, naming the setting."""
    folder = tmp_path / "data/input/pictures"
    for label in range(2):
        (folder / f"class{label}").mkdir(parents=True)
        for k in range(60):
            original = picture(label * 100 + k)
            original.save(folder / f"class{label}/{k}.png")
            resized(original).save(folder / f"class{label}/{k}-resized.png")
    params = DataParams(source="imagefolder", path=str(folder), calibration_size=20)
    artifacts = Artifacts(tmp_path)
    prepare(params, artifacts)
    near = json.loads(artifacts.data_checks.read_text())["near_duplicates"]
    crossing = sum(near["pairs"].values())
    assert crossing >= 10, near
    example = near["examples"][0]
    other = example.get("test") or example["val"]
    assert Path(other).stem.removesuffix("-resized") == Path(example["train"]).stem.removesuffix(
        "-resized"
    )

    strict = params.model_copy(update={"near_duplicates": NearDuplicateParams(max_pairs=0)})
    with pytest.raises(PipelineError, match="data.near_duplicates.max_pairs=0"):
        prepare(strict, artifacts)
    assert not json.loads(artifacts.data_checks.read_text())["success"]
