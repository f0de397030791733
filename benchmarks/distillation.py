"""Does distillation earn its place? The workspace's recipe (params.yaml: teacher, distill,
prune, quantize) from `baseline` to `quantize`, per seed, on the bundled digits and on
`shapes`, a harder image folder this script draws (10 classes of coloured shapes at random
position, size, rotation and colour on noisy coloured backgrounds, 32x32 RGB; no download).
Prints per seed, on the test split: the teacher, the labels-only control, the distilled student,
the pruned student (KD fine-tune) and its labels-only pruning control, and the INT8 model in
ONNX Runtime, with paired 95 % intervals (Tango) of teacher - control and distilled - control.

With `distill.student: auto` on a torch teacher the student and its control both start from
the teacher's own weights, cut: the control then measures the KD loss alone. So each seed also
trains `scratch`, the student's architecture from random weights on labels only, a student that
never saw the teacher's weights or outputs (only its channel widths come from the cut), and
prints teacher - scratch, control - scratch (what the cut weights bring) and distilled - scratch
(what the teacher brings in all). For a student from scratch, `scratch` repeats the control.
Heavy (digits about 10 min per seed, shapes about 50, on a 2-core AMD EPYC): run nothing else
beside it.

    python benchmarks/distillation.py [--data digits shapes] [--seeds 0 1 2] [--images 300]
                                      [--workdir DIR]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
from shapes import data_params, paired_difference
from torch import nn

from compress.config.benchmark import BenchmarkParams
from compress.config.data import AugmentParams, DataParams
from compress.config.distill import DistillParams
from compress.config.file import load_sections
from compress.config.prune import PruneParams
from compress.config.quantize import QuantizeParams
from compress.config.teacher import TeacherParams
from compress.core.artifacts import Artifacts
from compress.data.loaders import eval_loader, load_info, training_dataset
from compress.evaluation.inference import split_logits
from compress.evaluation.uncertainty import paired_drop_interval
from compress.models.checkpoints import load_model
from compress.runtime.runners import load_runner
from compress.steps.baseline import baseline
from compress.steps.distill import distill, fit_labels_only
from compress.steps.prepare import prepare
from compress.steps.prune import prune
from compress.steps.quantize import quantize
from compress.steps.teacher_outputs import teacher_outputs
from compress.train.loop import CPU, predict, seed_everything

log = logging.getLogger(__name__)


def reinitialised(model: nn.Module) -> nn.Module:
    """`model` with fresh random weights: convolutions as torchvision's ResNet initialises
    them, every other layer that has weights by its own `reset_parameters`."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def scratch_correct(
    augment: AugmentParams, params: DistillParams, artifacts: Artifacts
) -> np.ndarray:
    """Per test image, whether the distilled student's architecture is right after training
    from random weights on labels only, with the distillation run's schedule and seed."""
    info = load_info(artifacts.prepared_dir)
    seed_everything(params.seed)
    model = reinitialised(load_model(artifacts.student_pt)[0])
    train_set = training_dataset(info, augment, artifacts.prepared_dir)
    fit_labels_only(model, params, train_set, eval_loader("val", info, artifacts.prepared_dir), CPU)
    logits, labels = predict(model, eval_loader("test", info, artifacts.prepared_dir))
    return logits.argmax(1) == labels


def correct_on_test(artifacts: Artifacts) -> dict[str, np.ndarray]:
    """Per test image, whether each model of the run is right (torch checkpoints, and the
    INT8 file in ONNX Runtime)."""
    info = load_info(artifacts.prepared_dir)
    loader = eval_loader("test", info, artifacts.prepared_dir)
    result = {}
    for name, path in (
        ("teacher", artifacts.teacher_pt),
        ("control", artifacts.control_pt),
        ("distilled", artifacts.student_pt),
        ("pruned", artifacts.pruned_pt),
    ):
        logits, labels = predict(load_model(path)[0], loader)
        result[name] = logits.argmax(1) == labels
    runner = {"int8": load_runner("onnxruntime", artifacts.quantized_onnx, 2)}
    logits, labels = split_logits(runner, eval_loader("test", info, artifacts.prepared_dir))
    result["int8"] = logits["int8"].argmax(1) == labels
    return result


def run_seed(data: DataParams, seed: int, workdir: Path) -> dict:
    """The recipe once with every training seed set to `seed`; the split stays the data's. A
    teacher already in `workdir` is kept (one trained there by this script for this seed)."""
    teacher, distill_params, prune_params, quantize_params, bench = load_sections(
        TeacherParams, DistillParams, PruneParams, QuantizeParams, BenchmarkParams
    )
    artifacts = Artifacts(workdir)
    prepare(data, artifacts)
    if artifacts.teacher_pt.is_file():
        log.warning("Reusing %s: it must come from this data, seed and teacher recipe", workdir)
    else:
        baseline(teacher.model_copy(update={"seed": seed}), data.augment, bench, artifacts)
    distill_params = distill_params.model_copy(update={"seed": seed})
    teacher_outputs(distill_params, data.augment, artifacts)
    distill(distill_params, data.augment, artifacts)
    pruned = prune(
        prune_params.model_copy(update={"seed": seed}),
        distill_params,
        data.augment,
        bench,
        artifacts,
    )
    quantize(
        quantize_params.model_copy(update={"seed": seed}),
        distill_params,
        data.augment,
        bench,
        artifacts,
    )
    correct = correct_on_test(artifacts)
    correct["scratch"] = scratch_correct(data.augment, distill_params, artifacts)
    row = {name: float(np.mean(values)) for name, values in correct.items()}
    row["pruned_labels_only"] = pruned.get("labels_only_control", {}).get("test_accuracy")
    row["pruning_start"] = pruned["start"]["model"]
    row["teacher_minus_control"] = paired_drop_interval(correct["control"], correct["teacher"])
    row["distilled_minus_control"] = paired_drop_interval(correct["control"], correct["distilled"])
    row["teacher_minus_scratch"] = paired_drop_interval(correct["scratch"], correct["teacher"])
    row["control_minus_scratch"] = paired_drop_interval(correct["scratch"], correct["control"])
    row["distilled_minus_scratch"] = paired_drop_interval(correct["scratch"], correct["distilled"])
    row["images"] = len(correct["teacher"])
    return row


def mean_line(name: str, rows: list[dict]) -> str:
    """Each model's test accuracy averaged over the seeds' rows."""
    models = ("teacher", "control", "distilled", "scratch", "pruned", "pruned_labels_only", "int8")
    means = ", ".join(
        f"{model} {np.mean([row[model] for row in rows]):.4f}"
        for model in models
        if all(row[model] is not None for row in rows)
    )
    return f"{name}: mean over {len(rows)} seeds: {means}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", nargs="+", default=["digits", "shapes"], choices=["digits", "shapes"]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=300, help="shapes: images per class")
    parser.add_argument("--workdir", type=Path, help="keep each run here (its teacher is reused)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    (workspace,) = load_sections(DataParams)
    print(
        "data | seed | test images | teacher | control | distilled | pruned KD | pruned labels | INT8 | start | teacher-control (pt, 95 %) | distilled-control (pt, 95 %) | scratch | teacher-scratch (pt, 95 %) | control-scratch (pt, 95 %) | distilled-scratch (pt, 95 %)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.data:
            rows = []
            for seed in args.seeds:
                workdir = (args.workdir or Path(tmp)) / f"{name}-{seed}"
                data = data_params(name, workspace, workdir, args.images)
                row = run_seed(data, seed, workdir)
                rows.append(row)
                labels_only = row["pruned_labels_only"]
                print(
                    f"{name} | {seed} | {row['images']} | {row['teacher']:.4f} | {row['control']:.4f} | "
                    f"{row['distilled']:.4f} | {row['pruned']:.4f} | "
                    f"{'-' if labels_only is None else f'{labels_only:.4f}'} | {row['int8']:.4f} | "
                    f"{row['pruning_start']} | {paired_difference(row['teacher_minus_control'])} | "
                    f"{paired_difference(row['distilled_minus_control'])} | {row['scratch']:.4f} | "
                    f"{paired_difference(row['teacher_minus_scratch'])} | "
                    f"{paired_difference(row['control_minus_scratch'])} | "
                    f"{paired_difference(row['distilled_minus_scratch'])}",
                    flush=True,
                )
            print(mean_line(name, rows), flush=True)


if __name__ == "__main__":
    main()
