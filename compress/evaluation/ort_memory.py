"""Runs as `python -m compress.evaluation.ort_memory REQUEST_JSON` in a child process that imports nothing
heavier than onnxruntime, so the RSS it reports is the runtime plus the model, not torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from compress.runtime.runners import ort_session


def _high_water_mark_bytes() -> int:
    """VmHWM: the peak RSS of this process image (ru_maxrss would carry the parent's across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not available")


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not available")


def measure(path: str, input_shape: tuple[int, ...], batch: int, threads: int) -> dict[str, float]:
    before = _rss_bytes()
    session = ort_session(path, threads)
    feed = {session.get_inputs()[0].name: np.zeros((batch, *input_shape), dtype=np.float32)}
    for _ in range(3):
        session.run(None, feed)
    peak = _high_water_mark_bytes()
    return {
        "peak_rss_mb": round(peak / 2**20, 2),
        "session_rss_delta_mb": round((peak - before) / 2**20, 2),
    }


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    print(
        json.dumps(
            measure(
                request["path"], tuple(request["input_shape"]), request["batch"], request["threads"]
            )
        )
    )
