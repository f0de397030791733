"""Which teacher recipe makes a good teacher on small data? Trains the workspace's teacher
(params.yaml `teacher`) under each recipe of `RECIPES` on the bundled digits and on `shapes`
(benchmarks/shapes.py), chooses per data set the recipe best on validation (ties: the cheaper),
and prints the test accuracy of the chosen recipe only. Prints per recipe the validation
accuracy with its 95 % interval (Wilson), the train time, and the last epochs' validation
accuracy (still rising: undertrained). Heavy (about 25 min on 2 cores for both data sets):
run nothing else beside it.

    python benchmarks/teacher_recipe.py [--data digits shapes] [--recipes old_default warmup ...]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from scipy.stats import binomtest
from shapes import QUICK_COSTS, data_params

from compress.config.data import DataParams
from compress.config.file import load_sections
from compress.config.teacher import TeacherParams
from compress.core.artifacts import Artifacts
from compress.data.loaders import split_hashes
from compress.steps.baseline import baseline
from compress.steps.prepare import prepare

# Each recipe: every teacher param it sets (the rest from params.yaml), so the table reproduces
# whatever params.yaml holds. Warm-up, label smoothing, MixUp and CutMix with a longer cosine
# schedule are torchvision's classification reference recipe, and so is the learning rate of
# `warmup_30_scaled_lr`, the default: its 0.1 per 256 images, scaled to batch 64 (docs/models.md).
PLAIN = {
    "epochs": 15,
    "lr": 0.05,
    "warmup_epochs": 0,
    "label_smoothing": 0.0,
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
}
RECIPES: dict[str, dict] = {
    "old_default": PLAIN,
    "warmup": PLAIN | {"warmup_epochs": 2},
    "warmup_30": PLAIN | {"warmup_epochs": 2, "epochs": 30},
    "warmup_smoothing": PLAIN | {"warmup_epochs": 2, "label_smoothing": 0.1},
    "warmup_mix_30": PLAIN
    | {"warmup_epochs": 2, "epochs": 30, "mixup_alpha": 0.2, "cutmix_alpha": 1.0},
    "warmup_30_scaled_lr": PLAIN | {"warmup_epochs": 2, "epochs": 30, "lr": 0.025},
}


def train(teacher: TeacherParams, data: DataParams, artifacts: Artifacts) -> dict:
    """One teacher; its validation and test figures and train time."""
    metrics = baseline(teacher, data.augment, QUICK_COSTS, artifacts)
    history = artifacts.baseline_plot.read_text().splitlines()[1:]
    return {
        "val": metrics["validation"]["accuracy"],
        "val_images": len(split_hashes(artifacts.prepared_dir / "val.rows.csv")),
        "test": metrics["accuracy"],
        "seconds": metrics["train_seconds"],
        "last_epochs": [round(float(line.split(",")[-1]), 4) for line in history[-3:]],
    }


def wilson(accuracy: float, images: int) -> str:
    interval = binomtest(round(accuracy * images), images).proportion_ci(method="wilson")
    return f"{accuracy:.4f} [{interval.low:.3f}, {interval.high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", nargs="+", default=["digits", "shapes"], choices=["digits", "shapes"]
    )
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--images", type=int, default=300, help="shapes: images per class")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    workspace, teacher = load_sections(DataParams, TeacherParams)
    print("data | recipe | validation (95 %) | train s | last 3 epochs' validation")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.data:
            workdir = Path(tmp) / name
            artifacts = Artifacts(workdir)
            data = data_params(name, workspace, workdir, args.images)
            prepare(data, artifacts)
            rows = {}
            for recipe in args.recipes:
                rows[recipe] = train(teacher.model_copy(update=RECIPES[recipe]), data, artifacts)
                row = rows[recipe]
                print(
                    f"{name} | {recipe} | {wilson(row['val'], row['val_images'])} | "
                    f"{row['seconds']:.0f} | {row['last_epochs']}",
                    flush=True,
                )
            chosen = max(rows, key=lambda recipe: (rows[recipe]["val"], -rows[recipe]["seconds"]))
            print(
                f"{name}: chosen on validation: {chosen}; its test accuracy {rows[chosen]['test']:.4f}"
            )


if __name__ == "__main__":
    main()
