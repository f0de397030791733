"""Does distillation earn its place? The workspace's recipe (params.yaml: teacher, distill,
prune, quantize) from `baseline` to `quantize`, per seed, on the bundled digits and on
`shapes`, a harder image folder this script draws (10 classes of coloured shapes at random
position, size, rotation and colour on noisy coloured backgrounds, 32x32 RGB; no download).
Prints per seed, on the test split: the teacher, the labels-only control, the distilled student,
the pruned student (KD fine-tune) and its labels-only pruning control, and the INT8 model in
ONNX Runtime, with paired 95 % intervals (Tango) of teacher - control and distilled - control.
Heavy (about 4 min per seed and data set on 2 cores): run nothing else beside it.

    python benchmarks/distillation.py [--data digits shapes] [--seeds 0 1 2] [--images 300]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
from shapes import data_params, paired_difference

from compress.config.benchmark import BenchmarkParams
from compress.config.data import DataParams
from compress.config.distill import DistillParams
from compress.config.file import load_sections
from compress.config.prune import PruneParams
from compress.config.quantize import QuantizeParams
from compress.config.teacher import TeacherParams
from compress.core.artifacts import Artifacts
from compress.data.loaders import eval_loader, load_info
from compress.evaluation.inference import split_logits
from compress.evaluation.uncertainty import paired_drop_interval
from compress.models.checkpoints import load_model
from compress.runtime.runners import load_runner
from compress.steps.baseline import baseline
from compress.steps.distill import distill
from compress.steps.prepare import prepare
from compress.steps.prune import prune
from compress.steps.quantize import quantize
from compress.steps.teacher_outputs import teacher_outputs
from compress.train.loop import predict


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
    """The recipe once with every training seed set to `seed`; the split stays the data's."""
    teacher, distill_params, prune_params, quantize_params, bench = load_sections(
        TeacherParams, DistillParams, PruneParams, QuantizeParams, BenchmarkParams
    )
    artifacts = Artifacts(workdir)
    prepare(data, artifacts)
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
    row = {name: float(np.mean(values)) for name, values in correct.items()}
    row["pruned_labels_only"] = pruned.get("labels_only_control", {}).get("test_accuracy")
    row["pruning_start"] = pruned["start"]["model"]
    row["teacher_minus_control"] = paired_drop_interval(correct["control"], correct["teacher"])
    row["distilled_minus_control"] = paired_drop_interval(correct["control"], correct["distilled"])
    row["images"] = len(correct["teacher"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", nargs="+", default=["digits", "shapes"], choices=["digits", "shapes"]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=300, help="shapes: images per class")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    (workspace,) = load_sections(DataParams)
    print(
        "data | seed | test images | teacher | control | distilled | pruned KD | pruned labels | INT8 | start | teacher-control (pt, 95 %) | distilled-control (pt, 95 %)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.data:
            for seed in args.seeds:
                workdir = Path(tmp) / f"{name}-{seed}"
                data = data_params(name, workspace, workdir, args.images)
                row = run_seed(data, seed, workdir)
                labels_only = row["pruned_labels_only"]
                print(
                    f"{name} | {seed} | {row['images']} | {row['teacher']:.4f} | {row['control']:.4f} | "
                    f"{row['distilled']:.4f} | {row['pruned']:.4f} | "
                    f"{'-' if labels_only is None else f'{labels_only:.4f}'} | {row['int8']:.4f} | "
                    f"{row['pruning_start']} | {paired_difference(row['teacher_minus_control'])} | "
                    f"{paired_difference(row['distilled_minus_control'])}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
