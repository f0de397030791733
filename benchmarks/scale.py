"""Does preparation and training stay within bounded memory as the data grows, and what do loader
workers and data-parallel processes buy on this machine? A synthetic image folder of N PNGs
(N = 2,000 and 20,000 by default, 64x64 RGB, 10 classes) goes through `prepare`, then one
distillation epoch (untrained resnet18 teacher, MobileNetV2 student, the pipeline's default
architectures and distillation params) runs on it. Each measurement is a fresh child process; its peak RSS is the kernel's figure for
that process and every process it started (`os.wait4`). All figures come from this one run.

    python benchmarks/scale.py [--sizes 2000 20000] [--image-size 64] [--stem never|auto]

Larger: `--sizes 100000 --image-size 224` (about 15 GB of PNGs; 100,000 x 224 x 224 x 3 bytes
= 15 GB of uint8 shards; the float32 arrays of the old format would have been 60 GB).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from compress.config.compute import ComputeParams
from compress.config.data import AugmentParams, DataParams
from compress.config.distill import DistillParams
from compress.core.artifacts import Artifacts
from compress.data.loaders import eval_loader, load_info, make_loader, training_dataset
from compress.models.builders import build_model
from compress.steps.prepare import prepare
from compress.train.distillation import distillation_objective
from compress.train.loop import Schedule, fit, resolve_compute, seed_everything

log = logging.getLogger("scale")
CLASSES = 10


def make_folder(root: Path, count: int, size: int) -> None:
    """`count` PNGs in CLASSES folders: a class-specific colour gradient plus noise, so that
    the images are distinct (no duplicates dropped) and the classes learnable."""
    generator = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    for index in range(count):
        label = index % CLASSES
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.stack(
            [
                np.outer(ramp, ramp) * (label + 1) / CLASSES,
                np.outer(1 - ramp, ramp),
                ramp[None].repeat(size, 0),
            ],
            axis=-1,
        )
        noisy = np.clip(base + generator.normal(0, 0.15, base.shape), 0, 1)
        Image.fromarray((noisy * 255).astype(np.uint8), "RGB").save(folder / f"{index:07d}.png")


def child(args: list[str]) -> tuple[dict, float]:
    """Run this script's child mode; its JSON result and peak RSS in MB (children included)."""
    process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"child {' '.join(args)} failed")
    return json.loads(output.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def run_prepare(root: Path, image_size: int) -> dict:
    """Child: `prepare` on data/input/images of `root`."""
    params = DataParams(
        source="imagefolder",
        path="data/input/images",
        image_size=image_size,
        channels=3,
    )
    started = time.perf_counter()
    counts = prepare(params, Artifacts(root))
    return {"seconds": time.perf_counter() - started, "counts": counts}


def run_epoch(root: Path, workers: int, stem: str) -> dict:
    """Child: one distillation epoch on the prepared data (DDP when torchrun started it)."""
    artifacts = Artifacts(root)
    info = load_info(artifacts.prepared_dir)
    compute = resolve_compute(ComputeParams(device="cpu", loader_workers=workers))
    seed_everything(0)
    shape = (info.num_classes, info.channels, info.image_size)
    teacher = build_model("resnet18", *shape, stem=stem).eval()
    student = build_model("mobilenet_v2", *shape, stem=stem)
    params = DistillParams(epochs=1)
    train = training_dataset(
        info, AugmentParams(crop_padding=1, horizontal_flip=False), artifacts.prepared_dir
    )
    loader = make_loader(train, params.batch_size, True, 0, workers)
    started = time.perf_counter()
    val_loader = eval_loader("val", info, artifacts.prepared_dir)
    schedule = Schedule(1, params.lr, params.weight_decay)
    with distillation_objective(teacher, student, info.input_shape, params) as objective:
        result = fit(student, objective, loader, val_loader, schedule, "scale", compute)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "train_seconds": result.seconds,
        "images_per_second": len(train) / result.seconds,
        "processes": compute.world,
    }


def measure(workdir: Path, sizes: list[int], image_size: int, stem: str) -> list[dict]:
    rows = []
    for count in sizes:
        root = workdir / f"n{count}"
        if not (root / "data/input/images").is_dir():
            started = time.perf_counter()
            make_folder(root / "data/input/images", count, image_size)
            log.info("Wrote %d PNGs in %.0f s", count, time.perf_counter() - started)
        me = [__file__, "--root", str(root), "--image-size", str(image_size), "--stem", stem]
        prepared, prepare_rss = child([*me, "--child", "prepare"])
        rows.append({"n": count, "what": "prepare", "rss_mb": prepare_rss, **prepared})
        variants = [("epoch", 0, 1)]
        if count == min(sizes):
            variants += [("epoch", 1, 1), ("epoch", 2, 1), ("epoch", 0, 2)]
        for what, workers, processes in variants:
            launcher = [
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={processes}",
            ]
            args = [*me, "--child", what, "--workers", str(workers)]
            result, rss = child([*launcher, *args] if processes > 1 else args)
            rows.append(
                {
                    "n": count,
                    "what": f"{what} workers={workers} processes={processes}",
                    "rss_mb": rss,
                }
                | result
            )
            log.info("%s", rows[-1])
    return rows


def report(rows: list[dict]) -> None:
    print("| N | measurement | wall s | images/s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for row in rows:
        rate = f"{row['images_per_second']:.0f}" if "images_per_second" in row else ""
        print(
            f"| {row['n']:,} | {row['what']} | {row['seconds']:.1f} | {rate} | {row['rss_mb']:.0f} |"
        )
    small, large = min(r["n"] for r in rows), max(r["n"] for r in rows)
    for what in ("prepare", "epoch workers=0 processes=1"):
        pair = {r["n"]: r["rss_mb"] for r in rows if r["what"] == what}
        print(f"peak RSS {what}: N={large:,} / N={small:,} = {pair[large] / pair[small]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/compress-scale"))
    parser.add_argument("--child", choices=["prepare", "epoch"])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument(
        "--stem",
        choices=["auto", "never"],
        default="never",
        help="never (default): ImageNet stems, which downsample 64-px images 4x at once; auto: "
        "the pipeline's full-resolution stems for images up to 64 px (about 15x the compute)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.child == "prepare":
        print(json.dumps(run_prepare(args.root, args.image_size)))
    elif args.child == "epoch":
        result = run_epoch(args.root, args.workers, args.stem)
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(result))
    else:
        report(measure(args.workdir, args.sizes, args.image_size, args.stem))


if __name__ == "__main__":
    main()
