"""Does new data look like the data production was trained on? The model-update cycle compares
the new data profile (`compress.data.profile`, written by `prepare`) with production's, with
Great Expectations, before any training.

Each quantity becomes a small frame with one row per channel, class, size or mode (its
production figure, its new figure, the shift) so that standard GX column expectations express
every check, and a failure names the split, the check and the figures."""

from __future__ import annotations

from dataclasses import replace

import great_expectations as gx
import numpy as np
import pandas as pd

from compress.config.drift import DriftParams
from compress.data.checks import CheckResult, Checks, run_checks


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {key: value / total for key, value in counts.items()}


def _shift_frame(reference: dict[str, float], current: dict[str, float], kind: str) -> pd.DataFrame:
    """One row per key of either side: production's figure, the new one, and the shift."""
    keys = sorted(set(reference) | set(current), key=str)
    old = [float(reference.get(key, 0.0)) for key in keys]
    new = [float(current.get(key, 0.0)) for key in keys]
    return pd.DataFrame(
        {
            "item": [f"{kind} {key}" for key in keys],
            "reference": old,
            "current": new,
            "shift": np.subtract(new, old),
            "kept": [n > 0 or o == 0 for o, n in zip(old, new, strict=True)],
        }
    )


def _within(tolerance: float) -> gx.expectations.Expectation:
    return gx.expectations.ExpectColumnValuesToBeBetween(
        column="shift", min_value=-tolerance, max_value=tolerance
    )


def _drift_frames(
    reference: dict, current: dict, tolerances: DriftParams
) -> list[tuple[str, pd.DataFrame, Checks]]:
    frames = []
    for split, new in current["splits"].items():
        old = reference["splits"].get(split)
        if old is None:
            continue
        for stat, tolerance in (
            ("channel_mean", tolerances.mean_tolerance),
            ("channel_std", tolerances.std_tolerance),
        ):
            frame = _shift_frame(dict(enumerate(old[stat])), dict(enumerate(new[stat])), "channel")
            label = stat.replace("_", " ")
            frames.append((split, frame, [(f"{label} within ±{tolerance}", _within(tolerance))]))
        share = tolerances.class_share_tolerance
        frame = _shift_frame(old["class_shares"], new["class_shares"], "class")
        vanished = gx.expectations.ExpectColumnValuesToBeInSet(column="kept", value_set=[True])
        checks = [
            (f"class shares within ±{share}", _within(share)),
            ("no class vanished", vanished),
        ]
        frames.append((split, frame, checks))
    mix = tolerances.format_share_tolerance
    for key in ("sizes", "modes"):
        frame = _shift_frame(
            _shares(reference["source"][key]), _shares(current["source"][key]), key[:-1]
        )
        check = f"image {key[:-1]} mix within ±{mix}"
        frames.append(("source", frame, [(check, _within(mix))]))
    return frames


def _figures(frame: pd.DataFrame, expectation: gx.expectations.Expectation) -> str:
    """The rows a failed check is about, with production's figure and the new one."""
    if isinstance(expectation, gx.expectations.ExpectColumnValuesToBeBetween):
        rows = frame[frame["shift"].abs() > expectation.max_value]
    else:  # no class vanished
        rows = frame[~frame["kept"]]
    return "; ".join(
        f"{row.item}: {row.current:.4g} now vs {row.reference:.4g} in production "
        f"(shift {row.shift:+.4g})"
        for row in rows.itertuples()
    )


def check_drift(reference: dict, current: dict, tolerances: DriftParams) -> list[CheckResult]:
    """Every drift check of the new profile against production's, each with its figures."""
    frames = _drift_frames(reference, current, tolerances)
    results = run_checks(frames)
    checked = {
        (split, check): (frame, expectation)
        for split, frame, checks in frames
        for check, expectation in checks
    }
    return [
        result
        if result.success
        else replace(result, detail=_figures(*checked[result.split, result.check]))
        for result in results
    ]


def drift_report(results: list[CheckResult]) -> str:
    failed = [r for r in results if not r.success]
    return (
        "The new data drifted from the data the production model was trained on: "
        + "; ".join(f"split '{r.split}': {r.check} — {r.detail}" for r in failed)
        + ". Check the new images (a wrong folder, another camera or export setting, a class "
        "left out); if the shift is intended, set drift.accept: true in params.yaml (or widen "
        "the drift.* tolerance) and run the cycle again."
    )
