"""Where the student starts, compared on the workspace's prepared data and teacher: from scratch
and warm from a weights file with the same distillation epochs, and cut from the teacher with
its own (by default half: does the cut student get there in half the time?). Prints test
accuracy, MACs, parameters and the wall time of teacher_outputs + distill of each, measured one
after the other in this process (run `dvc repro baseline` first).

The warm-start file stands for the weights a team already has for the student architecture:
without a download, the script makes one by training that architecture on another task (the
parity of the digit, on 3-channel copies of the images), so the warm start really has to
re-initialise the head (2 -> 10 classes) and adapt the first convolution (RGB -> gray).

    python benchmarks/student_starts.py [--epochs 30] [--cut-epochs 15] [--init-ratio 0.9]
                                        [--warm FILE]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from compress.config.data import AugmentParams
from compress.config.distill import DistillParams
from compress.core.artifacts import Artifacts
from compress.data.loaders import load_info, load_split, make_loader, normalize_tensor
from compress.models.builders import build_model
from compress.steps.distill import distill
from compress.steps.teacher_outputs import teacher_outputs
from compress.train.loop import Schedule, cross_entropy_objective, fit, seed_everything


def parity_weights(student: str, epochs: int, prepared: Path, out: Path) -> Path:
    """`student` trained on another task: even/odd digits, as RGB."""
    info = load_info(prepared)

    def split(name: str) -> TensorDataset:
        images, labels = load_split(name, prepared)
        return TensorDataset(normalize_tensor(images, info).repeat(1, 3, 1, 1), labels % 2)

    seed_everything(0)
    model = build_model(student, 2, 3, info.image_size)
    train, val = make_loader(split("train"), 64, True), make_loader(split("val"), 256, False)
    schedule = Schedule(epochs, lr=0.02, weight_decay=5e-4, warmup_epochs=1)
    fit(model, cross_entropy_objective, train, val, schedule, "parity")
    torch.save(model.state_dict(), out)
    return out


def run(params: DistillParams, source: Artifacts, workdir: Path) -> dict:
    """The teacher_outputs and distill steps in a fresh folder holding copies of the prepared
    data and teacher (its checkpoint and its ONNX file, which the metrics measure the student
    against); the seconds are both steps'."""
    artifacts = Artifacts(workdir)
    shutil.copytree(source.prepared_dir, artifacts.prepared_dir)
    shutil.copy(source.teacher_pt, artifacts.teacher_pt)
    shutil.copy(source.teacher_onnx, artifacts.teacher_onnx)
    started = time.perf_counter()
    teacher_outputs(params, AugmentParams(), artifacts)
    metrics = distill(params, AugmentParams(), artifacts)
    return metrics["distilled"] | {"wall_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_epochs = DistillParams().epochs
    parser.add_argument(
        "--epochs", type=int, default=default_epochs, help="epochs from scratch and warm"
    )
    parser.add_argument("--cut-epochs", type=int, help="epochs of the cut student (epochs / 2)")
    parser.add_argument("--student", default="mobilenet_v2", help="scratch and warm student")
    parser.add_argument("--init-ratio", type=float, default=0.9, help="MACs cut from the teacher")
    parser.add_argument("--warm", type=Path, help="weights file (default: made on digit parity)")
    args = parser.parse_args()
    cut_epochs = args.cut_epochs or max(1, args.epochs // 2)
    logging.basicConfig(level=logging.WARNING)
    source = Artifacts.here()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "models/input").mkdir(parents=True)
        warm = args.warm or parity_weights(
            args.student, 3, source.prepared_dir, root / "models/input/warm.pt"
        )
        if args.warm:
            shutil.copy(args.warm, root / "models/input/warm.pt")
        base = DistillParams(student=args.student, epochs=args.epochs, control=False)
        starts = {
            f"scratch ({args.epochs} epochs)": base,
            f"warm ({warm.name}, {args.epochs} epochs)": base.model_copy(
                update={"student_checkpoint": "models/input/warm.pt"}
            ),
            f"cut from teacher ({args.init_ratio:.0%}, {cut_epochs} epochs)": base.model_copy(
                update={"student": "teacher", "init_ratio": args.init_ratio, "epochs": cut_epochs}
            ),
        }
        print(
            "| student start | test accuracy | MACs | params | teacher_outputs + distill wall s |"
        )
        print("|---|---|---|---|---|")
        for index, (label, params) in enumerate(starts.items()):
            workdir = root / f"run{index}"
            shutil.copytree(root / "models", workdir / "models")
            figures = run(params, source, workdir)
            print(
                f"| {label} | {figures['accuracy']:.4f} | {figures['macs']:,} | "
                f"{figures['params']:,} | {figures['wall_seconds']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
