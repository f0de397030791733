"""Stored teacher outputs against a live teacher, side by side on the workspace's prepared data
and teacher (run `dvc repro validate_teacher` first): for each seed and each `distill.teacher_views`
of `--views`, `teacher_outputs` + `distill` (`null`: the teacher runs on fresh views every
batch). Prints the test accuracy of the distilled student and of
the control, their best epochs, and the wall time of each, measured one after the other in
this process with the workspace's `distill` and `data.augment` params.

    python benchmarks/teacher_views.py [--seeds 0 1 2] [--views all 4 null]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

from compress.config.data import DataParams
from compress.config.distill import DistillParams
from compress.config.file import load_sections
from compress.core.artifacts import Artifacts
from compress.steps.distill import distill
from compress.steps.teacher_outputs import teacher_outputs


def run(params: DistillParams, data: DataParams, source: Artifacts, workdir: Path) -> dict:
    """The teacher's outputs, then distill, in a fresh folder holding copies of the prepared
    data and the teacher."""
    artifacts = Artifacts(workdir)
    shutil.copytree(source.prepared_dir, artifacts.prepared_dir)
    artifacts.teacher_pt.parent.mkdir(parents=True)
    shutil.copy(source.teacher_pt, artifacts.teacher_pt)
    shutil.copy(source.teacher_onnx, artifacts.teacher_onnx)
    started = time.perf_counter()
    teacher_outputs(params, data.augment, artifacts)
    metrics = distill(params, data.augment, artifacts)
    control = metrics.get("control", {})
    return {
        "distilled": metrics["distilled"]["accuracy"],
        "best_epoch": metrics["distilled"]["best_epoch"],
        "control": control.get("accuracy"),
        "seconds": time.perf_counter() - started,
    }


def parse_views(value: str) -> int | str | None:
    """`distill.teacher_views` as typed on the command line."""
    return None if value == "null" else value if value == "all" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--views",
        nargs="+",
        default=["all", "4", "null"],
        help="stored views per image: all, a count, or null",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    params, data = load_sections(DistillParams, DataParams)
    source = Artifacts.here()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for views in [parse_views(value) for value in args.views]:
                recipe = params.model_copy(update={"seed": seed, "teacher_views": views})
                result = run(recipe, data, source, Path(tmp) / f"{seed}-{views}")
                rows.append({"seed": seed, "views": views} | result)
                print(rows[-1], flush=True)
    print("\n| seed | teacher | distilled | best epoch | control | wall s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        teacher = f"{row['views']} stored views" if row["views"] else "live, fresh views"
        control = f"{row['control']:.2%}" if row["control"] is not None else "-"
        print(
            f"| {row['seed']} | {teacher} | {row['distilled']:.2%} | {row['best_epoch']} | "
            f"{control} | {row['seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
