"""The runtime alone against the full install, side by side in one run: the size of each virtual
environment on disk, and the wall time and peak memory of classifying one PNG and a folder of
PNGs (`compress-predict` of the `compress-runtime` distribution against `compress predict` of the
pipeline), interleaved, median of `--repeats` runs each.

    python benchmarks/runtime_install.py [--model models/shipped.onnx] [--images 1000]

The runtime-only environment is made at `--runtime-venv` (default .venv-runtime) with
`pip install -c constraints.txt ./runtime` when it does not exist; the PNGs are the first test
images of data/prepared (run `dvc repro` first)."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from compress.core.artifacts import Artifacts
from compress.data.loaders import load_split
from compress.evaluation.benchmark import encode_png

ROOT = Path(__file__).resolve().parents[1]


def runtime_venv(path: Path) -> Path:
    """The runtime-only environment, made from this repository when missing."""
    if not (path / "bin" / "compress-predict").exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        install = [str(path / "bin" / "pip"), "install", "-q", "-c", "constraints.txt"]
        subprocess.run([*install, "./runtime"], cwd=ROOT, check=True)
    return path


def disk_mb(path: Path) -> float:
    return (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20
    )


def write_pngs(folder: Path, count: int) -> list[Path]:
    images = load_split("test", Artifacts(ROOT).prepared_dir)[0].numpy()
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"{index:05d}.png" for index in range(count)]
    for index, file in enumerate(files):
        file.write_bytes(encode_png(images[index % len(images)]))
    return files


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command, measured by GNU time in a small process of
    its own: a child forked from this process would carry this process's RSS (torch imported)
    into its high-water mark across exec."""
    timed = ["/usr/bin/time", "-f", "%e %M", *command]
    done = subprocess.run(timed, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-500:]}")
    seconds, kilobytes = done.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(kilobytes) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "shipped.onnx")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runtime-venv", type=Path, default=ROOT / ".venv-runtime")
    args = parser.parse_args()
    alone = runtime_venv(args.runtime_venv)
    full = Path(sys.prefix)
    commands = {
        "runtime only (compress-predict)": [str(alone / "bin" / "compress-predict")],
        "full install (compress predict)": [str(full / "bin" / "compress"), "predict"],
    }
    with tempfile.TemporaryDirectory() as scratch:
        files = write_pngs(Path(scratch) / "pngs", args.images)
        inputs = {"one PNG": [str(files[0])], f"{args.images} PNGs": [str(files[0].parent)]}
        samples = {(k, i): [] for k in commands for i in inputs}
        for _ in range(args.repeats):  # interleaved, so a busy moment hits both alike
            for name, command in commands.items():
                for label, paths in inputs.items():
                    samples[(name, label)].append(run([*command, str(args.model), *paths]))
    print(f"| install | disk MB | {' | '.join(f'{i} wall s | {i} peak MB' for i in inputs)} |")
    print(f"|---|---|{'---|---|' * len(inputs)}")
    sizes = {name: disk_mb(prefix) for name, prefix in zip(commands, (alone, full), strict=True)}
    for name in commands:
        cells = [f"{sizes[name]:,.0f}"]
        for label in inputs:
            walls, peaks = zip(*samples[(name, label)], strict=True)
            cells += [f"{statistics.median(walls):.2f}", f"{statistics.median(peaks):.0f}"]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
