"""Which distillation loss teaches the student best? Trains the workspace's teacher (params.yaml
`teacher`, seed 0) once per data set, on the bundled digits and on `shapes`
(benchmarks/shapes.py), stores its outputs (stage `teacher_outputs`), then distils one student
per setting of `SETTINGS` from the same start on the same stored views, and trains the
labels-only control once. Chooses per data set the setting best on validation (ties: the
workspace's own), and prints per setting its validation accuracy and its paired difference
from the control with a 95 % interval (Tango); the test split is read for the chosen setting,
the control and the teacher only. Heavy (shapes: about 30 min for the teacher, 2 min per
student on a 2-core AMD EPYC): run nothing else beside it. `--workdir` keeps the teachers there and reuses them.

    python benchmarks/kd_settings.py [--data digits shapes] [--settings workspace t1 ...] [--workdir DIR]
                                     [--student ARCH]
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
from pathlib import Path

import numpy as np
from shapes import QUICK_COSTS, data_params, paired_difference
from torch import nn
from torch.utils.data import DataLoader

from compress.compression.students import build_student, resolve_student
from compress.config.data import DataParams
from compress.config.distill import DistillParams
from compress.config.file import load_sections
from compress.config.teacher import TeacherParams
from compress.core.artifacts import Artifacts
from compress.data.loaders import (
    eval_loader,
    load_info,
    training_dataset,
)
from compress.evaluation.uncertainty import paired_drop_interval
from compress.steps.baseline import baseline
from compress.steps.distill import fit_labels_only, train_distilled
from compress.steps.prepare import prepare
from compress.steps.teacher_outputs import teacher_outputs
from compress.train.distillation import distillation_dataset, load_teacher
from compress.train.loop import CPU, predict, seed_everything

# Each setting: the distill params it changes from params.yaml's (`workspace`: none). alpha is
# the hard-label weight; (1 - alpha) * T^2 goes to the KL term.
SETTINGS: dict[str, dict] = {
    "workspace": {},
    "t1": {"alpha": 0.5, "temperature": 1.0},
    "t2": {"alpha": 0.5, "temperature": 2.0},
    "t4_labels_0.9": {"alpha": 0.9, "temperature": 4.0},
    "t1_soft_only": {"alpha": 0.0, "temperature": 1.0},
    "decoupled_t4": {"kd_loss": "decoupled", "alpha": 0.5, "temperature": 4.0},
}


def taught(
    data: DataParams, teacher: TeacherParams, distill: DistillParams, workdir: Path
) -> Artifacts:
    """Prepared data, a trained teacher and its stored outputs in `workdir` (kept if there)."""
    artifacts = Artifacts(workdir)
    if not artifacts.teacher_pt.is_file():
        prepare(data, artifacts)
        baseline(teacher, data.augment, QUICK_COSTS, artifacts)
        teacher_outputs(distill, data.augment, artifacts)
    return artifacts


def correct(model: nn.Module, loader: DataLoader) -> np.ndarray:
    """Per image of `loader`, whether `model` is right."""
    logits, labels = predict(model, loader)
    return logits.argmax(1) == labels


def run(
    name: str, data: DataParams, distill: DistillParams, artifacts: Artifacts, settings: list[str]
) -> None:
    """The control once, then a student per setting from the same start; the table rows."""
    info = load_info(artifacts.prepared_dir)
    teacher = load_teacher(artifacts, distill)
    val = eval_loader("val", info, artifacts.prepared_dir)
    resolved, cut = resolve_student(distill, info, artifacts)
    seed_everything(distill.seed)
    start, _ = cut if cut is not None else build_student(resolved, info, artifacts)
    control = copy.deepcopy(start)
    fresh = training_dataset(info, data.augment, artifacts.prepared_dir)
    fit_labels_only(control, resolved, fresh, val, CPU)
    control_val = correct(control, val)
    print(f"{name} | control (labels only) | - | - | {control_val.mean():.4f} | | ", flush=True)
    students, val_accuracy = {}, {}
    for setting in settings:
        params = resolved.model_copy(update=SETTINGS[setting])
        students[setting] = copy.deepcopy(start)
        seed_everything(params.seed)
        train_set = distillation_dataset(info, data.augment, params, artifacts)
        result = train_distilled(students[setting], teacher, params, info, train_set, val, CPU)
        on_val = correct(students[setting], val)
        val_accuracy[setting] = on_val.mean()
        print(
            f"{name} | {setting} ({params.kd_loss}) | {params.alpha} | {params.temperature} | "
            f"{on_val.mean():.4f} | "
            f"{paired_difference(paired_drop_interval(control_val, on_val))} | {result.seconds:.0f}",
            flush=True,
        )
    chosen = max(settings, key=lambda setting: (val_accuracy[setting], setting == "workspace"))
    test = eval_loader("test", info, artifacts.prepared_dir)
    print(
        f"{name}: chosen on validation: {chosen}; test: {chosen} "
        f"{correct(students[chosen], test).mean():.4f}, control {correct(control, test).mean():.4f}, "
        f"teacher {correct(teacher, test).mean():.4f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", nargs="+", default=["digits", "shapes"], choices=["digits", "shapes"]
    )
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--images", type=int, default=300, help="shapes: images per class")
    parser.add_argument("--workdir", type=Path, help="keep the teachers here (reused if there)")
    parser.add_argument(
        "--student",
        help="distill.student for every row (default: params.yaml's), e.g. a from-scratch architecture",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    workspace, teacher, distill = load_sections(DataParams, TeacherParams, DistillParams)
    if args.student:
        distill = distill.model_copy(update={"student": args.student})
    print("data | setting | alpha | T | validation | minus control (pt, 95 %) | train s")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        for name in args.data:
            data = data_params(name, workspace, root / name, args.images)
            artifacts = taught(data, teacher, distill, root / name)
            run(name, data, distill, artifacts, args.settings)


if __name__ == "__main__":
    main()
