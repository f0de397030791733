"""Near-duplicates across splits: images whose content hashes differ (a one-pixel shift, a lossy
re-encoding, a resize of the same picture) land in train and test independently, and a model
scored on a near-copy of a training image is scored on what it trained on. Each image gets a
64-bit perceptual hash (imagehash's pHash: the low frequencies of its DCT, which such edits
barely move); pairs of a training image and a validation or test image within
`data.near_duplicates.max_distance` bits are reported."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from compress.config.data import NearDuplicateParams
from compress.data.shards import ShardReader
from compress.data.splits import Splits

log = logging.getLogger(__name__)

CHUNK = 4096  # evaluation images compared at once (memory: CHUNK x training images x 8 bytes)
EXAMPLES = 5


def perceptual_hash(image: np.ndarray) -> int:
    """pHash of a (C, H, W) image, uint8 or float in [0, 1], as a 64-bit integer."""
    pixels = image if image.dtype == np.uint8 else np.round(image * 255).astype(np.uint8)
    picture = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    bits = imagehash.phash(picture, hash_size=8).hash.flatten()
    return int(np.packbits(bits).view(">u8")[0])


def perceptual_hashes(images: Iterable[np.ndarray]) -> np.ndarray:
    return np.fromiter((perceptual_hash(image) for image in images), dtype=np.uint64)


def close_pairs(
    train: np.ndarray, other: np.ndarray, max_distance: int
) -> list[tuple[int, int, int]]:
    """(training index, other index, Hamming distance) of every pair within `max_distance`
    bits, closest first."""
    pairs = []
    for start in range(0, len(other), CHUNK):
        block = other[start : start + CHUNK]
        distance = np.bitwise_count(block[:, None] ^ train[None, :])
        rows, cols = np.nonzero(distance <= max_distance)
        pairs += [
            (int(c), int(r) + start, int(distance[r, c])) for r, c in zip(rows, cols, strict=True)
        ]
    return sorted(pairs, key=lambda pair: (pair[2], pair[1], pair[0]))


def near_duplicate_report(
    hashes: dict[str, np.ndarray],
    names: dict[str, list[str]],
    max_distance: int,
    max_pairs: int | None,
) -> dict:
    """Pairs of a training image and a validation or test image within `max_distance` bits:
    counts per split, the closest examples by name, and whether the count stops `prepare`
    (`max_pairs`; None: report only)."""
    found = {
        split: close_pairs(hashes["train"], hashes[split], max_distance)
        for split in ("val", "test")
        if split in hashes
    }
    total = sum(len(pairs) for pairs in found.values())
    return {
        "max_distance": max_distance,
        "max_pairs": max_pairs,
        "pairs": {split: len(pairs) for split, pairs in found.items()},
        "examples": [
            {"train": names["train"][i], split: names[split][j], "distance": d}
            for split, pairs in found.items()
            for i, j, d in pairs[:EXAMPLES]
        ],
        "stops": max_pairs is not None and total > max_pairs,
    }


def split_near_duplicates(
    staged: ShardReader, splits: Splits, names: pd.Series, settings: NearDuplicateParams
) -> dict:
    """The near-duplicate report of the training images against validation and test."""
    chosen = {name: splits[name] for name in ("train", "val", "test")}
    hashes = {
        name: perceptual_hashes(staged[int(p)] for p in positions)
        for name, positions in chosen.items()
    }
    named = {split: names.to_numpy()[positions].tolist() for split, positions in chosen.items()}
    report = near_duplicate_report(hashes, named, settings.max_distance, settings.max_pairs)
    if any(report["pairs"].values()):
        (log.warning if report["stops"] else log.info)(
            "Near-duplicates across splits (perceptual hash within %d bits): %s; e.g. %s",
            settings.max_distance,
            report["pairs"],
            report["examples"][:2],
        )
    return report


def near_duplicate_message(near: dict) -> str:
    """Why `prepare` stops on the report, and the fix; empty when it does not."""
    if not near["stops"]:
        return ""
    return (
        f" Data checks failed: {sum(near['pairs'].values())} pairs of a training image and a validation or test "
        f"image are within {near['max_distance']} bits of each other's perceptual hash, above "
        f"data.near_duplicates.max_pairs={near['max_pairs']} (e.g. {near['examples'][:2]}): "
        "remove the copies, or raise max_pairs if the pairs are distinct pictures."
    )
