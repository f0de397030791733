"""The data profile `prepare` writes (metrics/data_profile.json): per-class counts, original
image sizes and modes and a content hash of what the source held, and per split the class shares
and per-channel pixel mean and std. The model-update cycle's drift checks (`compress.data.drift`)
compare it with production's."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pandas as pd

from compress.data.checks import ChannelStats


def source_profile(rows: pd.DataFrame, classes: list[str]) -> dict:
    """What the source held as read (before duplicates are dropped), from its `sample_rows`
    with the files' `size` and `mode`: the counts a team's added or removed images change, the
    formats of the files, and a content hash."""
    counts = np.bincount(rows["label"].to_numpy(), minlength=len(classes))
    digest = hashlib.sha1()
    for image_hash, label in sorted(zip(rows["hash"], rows["label"].tolist(), strict=True)):
        digest.update(f"{image_hash}:{label}\n".encode())
    return {
        "images": int(len(rows)),
        "class_counts": {name: int(n) for name, n in zip(classes, counts, strict=True)},
        "sizes": dict(sorted(Counter(rows["size"]).items())),
        "modes": dict(sorted(Counter(rows["mode"]).items())),
        "content_hash": digest.hexdigest(),
    }


def split_profile(labels: np.ndarray, stats: ChannelStats, classes: list[str]) -> dict:
    counts = np.bincount(labels, minlength=len(classes))
    mean, std = stats.mean_std()
    return {
        "images": int(len(labels)),
        "class_shares": {
            name: round(float(n) / len(labels), 6) for name, n in zip(classes, counts, strict=True)
        },
        "channel_mean": mean,
        "channel_std": std,
    }
