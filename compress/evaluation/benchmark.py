"""Latency, throughput and memory measurement, shared by every stage that reports cost.

Warm-up runs are excluded, timings are per batch with perf_counter, percentiles come from a
fixed number of timed runs, and thread counts are pinned so figures compare across models.
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from compress.core.distributed import barrier, from_rank_zero, rank_and_world
from compress.evaluation import ort_memory
from compress.runtime.contract import ModelContract
from compress.runtime.images import decode_image, normalize
from compress.runtime.runners import Runner, onnxruntime_runner


def time_runs(run: Callable[[], object], warmup: int, runs: int) -> np.ndarray:
    """Seconds per call over `runs` timed calls after `warmup` untimed ones. Under DDP rank 0
    times alone while the other ranks wait, and every rank gets its figures."""
    samples = np.zeros(runs)
    barrier()
    if rank_and_world()[0] == 0:
        for _ in range(warmup):
            run()
        for index in range(runs):
            start = time.perf_counter()
            run()
            samples[index] = time.perf_counter() - start
    return np.asarray(from_rank_zero(samples.tolist()))


def summarize(samples: np.ndarray, batch_size: int) -> dict[str, float]:
    p50, p95, p99 = np.percentile(samples, [50, 95, 99]) * 1000.0
    return {
        "p50_ms": round(float(p50), 4),
        "p95_ms": round(float(p95), 4),
        "p99_ms": round(float(p99), 4),
        "throughput_per_s": round(batch_size / float(np.median(samples)), 2),
    }


def runner_latency(
    runner: Runner,
    input_shape: tuple[int, ...],
    batch_sizes: list[int],
    warmup: int,
    runs: int,
) -> dict[str, dict[str, float]]:
    """Latency of one model in one runtime at each batch size (random inputs, fixed seed)."""
    results = {}
    for batch in batch_sizes:
        images = np.random.default_rng(0).random((batch, *input_shape), dtype=np.float32)
        results[f"batch_{batch}"] = summarize(
            time_runs(lambda images=images: runner(images), warmup, runs), batch
        )
    return results


@torch.no_grad()
def torch_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_sizes: list[int],
    warmup: int,
    runs: int,
    threads: int,
) -> dict[str, dict[str, float]]:
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    model.eval()
    results = {}
    try:
        for batch in batch_sizes:
            example = torch.rand(batch, *input_shape, generator=torch.Generator().manual_seed(0))
            results[f"batch_{batch}"] = summarize(
                time_runs(lambda example=example: model(example), warmup, runs), batch
            )
    finally:
        torch.set_num_threads(previous_threads)
    return results


def encode_png(image: np.ndarray) -> bytes:
    """A (C, H, W) image in [0, 1] as PNG bytes: the raw input a deployed model receives."""
    pixels = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    pil = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def preprocess_png(png: bytes, contract: ModelContract) -> np.ndarray:
    """Decode (the preparation's own decoder) and normalize one image into a (1, C, H, W) batch."""
    image = decode_image(io.BytesIO(png), contract.image_size, contract.channels)
    return normalize(image[None], contract.mean, contract.std)


def end_to_end_latency(
    runner: Runner, png: bytes, contract: ModelContract, warmup: int, runs: int
) -> dict[str, float]:
    """Batch-1 latency from PNG bytes to logits: decoding and preprocessing included."""
    return summarize(time_runs(lambda: runner(preprocess_png(png, contract)), warmup, runs), 1)


def onnx_peak_memory(
    path: str | Path, input_shape: tuple[int, ...], batch: int, threads: int
) -> dict[str, float]:
    """Peak memory of a fresh process (importing only onnxruntime and numpy) that loads the model
    and runs one batch, and its growth over that process before the session was created."""
    request = json.dumps(
        {"path": str(path), "input_shape": list(input_shape), "batch": batch, "threads": threads}
    )
    completed = subprocess.run(
        [sys.executable, "-m", ort_memory.__name__, request],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"Memory measurement of '{path}' failed: {completed.stderr.strip()[-500:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def process_peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 2)


def _timed_rounds(
    runners: dict[str, Runner],
    input_shape: tuple[int, ...],
    batch_sizes: list[int],
    warmup: int,
    runs: int,
    repeats: int,
) -> dict[tuple[str, int], list[np.ndarray]]:
    """(model, batch) -> seconds per call in each of `repeats` rounds; the models take turns in
    each round, so machine noise (another process, frequency changes) falls on all alike."""
    rng = np.random.default_rng(0)
    feeds = {batch: rng.random((batch, *input_shape), dtype=np.float32) for batch in batch_sizes}
    per_round = max(runs // repeats, 1)
    samples: dict[tuple[str, int], list[np.ndarray]] = {}
    for runner in runners.values():
        for feed in feeds.values():
            time_runs(lambda r=runner, f=feed: r(f), warmup, 1)
    for _ in range(repeats):
        for batch, feed in feeds.items():
            for name, runner in runners.items():
                timed = time_runs(lambda r=runner, f=feed: r(f), 0, per_round)
                samples.setdefault((name, batch), []).append(timed)
    return samples


def compare_latency(
    runners: dict[str, Runner],
    input_shape: tuple[int, ...],
    batch_sizes: list[int],
    warmup: int,
    runs: int,
    repeats: int = 5,
    with_rounds: bool = False,
) -> dict[str, dict[str, dict]]:
    """Latency of several models (or runtimes) measured side by side in one process, the timed
    runs split into `repeats` interleaved rounds. `with_rounds` adds each round's median
    (`rounds_p50_ms`): their spread says whether a difference is more than timer noise."""
    samples = _timed_rounds(runners, input_shape, batch_sizes, warmup, runs, repeats)
    figures: dict[str, dict[str, dict]] = {}
    for (name, batch), rounds in samples.items():
        stats = summarize(np.concatenate(rounds), batch)
        if with_rounds:
            stats["rounds_p50_ms"] = [round(float(np.median(r)) * 1000.0, 4) for r in rounds]
        figures.setdefault(name, {})[f"batch_{batch}"] = stats
    return figures


def compare_onnx_latency(
    models: dict[str, Path],
    input_shape: tuple[int, ...],
    batch_sizes: list[int],
    warmup: int,
    runs: int,
    threads: int,
    repeats: int = 5,
) -> dict[str, dict[str, dict[str, float]]]:
    """`compare_latency` of ONNX files in ONNX Runtime."""
    runners = {name: onnxruntime_runner(path, threads) for name, path in models.items()}
    return compare_latency(runners, input_shape, batch_sizes, warmup, runs, repeats)
