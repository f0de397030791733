"""`shapes`: a harder image folder than the bundled digits, drawn here so the benchmarks need no
download: 10 classes of coloured shapes at random position, size, rotation and colour on noisy
coloured backgrounds, 32x32 RGB PNGs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from compress.config.benchmark import BenchmarkParams
from compress.config.data import DataParams

# cost figures the benchmarks do not report: one short timing keeps `baseline` quick
QUICK_COSTS = BenchmarkParams(batch_sizes=[1], warmup_runs=1, timed_runs=3)

SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar", "diamond", "star", "L", "dots")


def draw_shape(
    kind: str, draw: ImageDraw.ImageDraw, box: tuple, colour: tuple, angle: float
) -> None:
    """One shape of `kind` in `box` (x0, y0, x1, y1), rotated by `angle` where it matters."""
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2

    def polygon(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]

    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(r / 3)))
    elif kind == "square":
        draw.polygon(polygon([(-r, -r), (r, -r), (r, r), (-r, r)]), fill=colour)
    elif kind == "diamond":
        draw.polygon(polygon([(0, -r), (r * 0.6, 0), (0, r), (-r * 0.6, 0)]), fill=colour)
    elif kind == "triangle":
        draw.polygon(polygon([(0, -r), (r, r), (-r, r)]), fill=colour)
    elif kind == "bar":
        draw.polygon(polygon([(-r, -r / 4), (r, -r / 4), (r, r / 4), (-r, r / 4)]), fill=colour)
    elif kind == "cross":
        for w, h in ((r, r / 4), (r / 4, r)):
            draw.polygon(polygon([(-w, -h), (w, -h), (w, h), (-w, h)]), fill=colour)
    elif kind == "L":
        draw.polygon(
            polygon([(-r, -r), (-r / 3, -r), (-r / 3, r / 3), (r, r / 3), (r, r), (-r, r)]),
            fill=colour,
        )
    elif kind == "star":
        points = [
            (
                (r if k % 2 == 0 else r * 0.4) * math.cos(k * math.pi / 5),
                (r if k % 2 == 0 else r * 0.4) * math.sin(k * math.pi / 5),
            )
            for k in range(10)
        ]
        draw.polygon(polygon(points), fill=colour)
    else:  # dots: three small discs
        for k in range(3):
            px, py = polygon(
                [(r * 0.7 * math.cos(2 * math.pi * k / 3), r * 0.7 * math.sin(2 * math.pi * k / 3))]
            )[0]
            draw.ellipse((px - r / 4, py - r / 4, px + r / 4, py + r / 4), fill=colour)


def shapes_folder(root: Path, per_class: int, seed: int = 0) -> Path:
    """The `shapes` image folder: `per_class` PNGs per class, all drawn from `seed`."""
    rng = np.random.default_rng(seed)
    for label, kind in enumerate(SHAPES):
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            background = rng.integers(0, 256, 3)
            noise = rng.normal(0, 25, (32, 32, 3))
            pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            draw = ImageDraw.Draw(image)
            size = rng.uniform(7, 14)
            cx, cy = rng.uniform(size, 32 - size, 2)
            colour = tuple(int(v) for v in (background + rng.integers(80, 176, 3)) % 256)
            box = (cx - size, cy - size, cx + size, cy + size)
            draw_shape(kind, draw, box, colour, rng.uniform(0, 2 * math.pi))
            image.save(folder / f"{label}-{index}.png")
    return root


def data_params(name: str, workspace: DataParams, workdir: Path, per_class: int) -> DataParams:
    """The digits as params.yaml has them, or `shapes` drawn into `workdir` (once: kept there)."""
    if name == "digits":
        return workspace
    folder = workdir / "data/input/shapes"
    if not folder.is_dir():
        shapes_folder(folder, per_class)
    return DataParams(source="imagefolder", path=str(folder), augment=workspace.augment)


def paired_difference(drop: dict) -> str:
    """A paired drop (reference - candidate) as candidate - reference in pt with its 95 %
    interval."""
    return f"{-drop['drop'] * 100:+.2f} [{-drop['upper'] * 100:+.2f}, {-drop['lower'] * 100:+.2f}]"
