"""Stage `prune`: iterative structured pruning of the distilled student. Each round removes whole
channels (Torch-Pruning) toward a MACs target, then fine-tunes with the distillation loss from
the frozen teacher, so the model that comes out is physically smaller and faster."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from stages import atomic
from stages.baseline import TEACHER_ONNX
from stages.benchmark import compare_onnx_latency
from stages.config import (
    BenchmarkParams,
    ComputeParams,
    DataParams,
    DistillParams,
    PruneParams,
    load,
)
from stages.data import (
    load_info,
    make_loader,
    normalized_dataset,
    train_augmentation,
    training_dataset,
)
from stages.distill import (
    STUDENT_CHECKPOINT,
    STUDENT_ONNX,
    distill_finetune,
    load_teacher,
)
from stages.errors import run_stage
from stages.models import count_macs_params, load_model, save_checkpoint
from stages.onnx_export import export_onnx
from stages.pruning import MacsPruner
from stages.training import accuracy, resolve_device, seed_everything

log = logging.getLogger("stages.prune")

PRUNED_CHECKPOINT = Path("models/pruned.pt")
PRUNED_ONNX = Path("models/pruned.onnx")
METRICS_FILE = Path("metrics/prune.json")
PLOT_FILE = Path("plots/prune/rounds.csv")


def prune(
    params: PruneParams,
    distill_params: DistillParams,
    augment_padding: int,
    augment_flip: bool,
    bench: BenchmarkParams,
    device: str = "cpu",
) -> dict:
    started = time.perf_counter()
    info = load_info()
    teacher = load_teacher()
    student, payload = load_model(STUDENT_CHECKPOINT)
    arch = payload["arch"]
    seed_everything(params.seed)

    augmentation = train_augmentation(augment_padding, augment_flip, info.image_size)
    train_set = training_dataset(info, augmentation)
    val_loader = make_loader(normalized_dataset("val", info), 256, shuffle=False)
    test_loader = make_loader(normalized_dataset("test", info), 256, shuffle=False)
    gradient_loader = make_loader(
        normalized_dataset("train", info), 64, shuffle=True, seed=params.seed
    )
    gradient_batches = [
        batch for _, batch in zip(range(params.taylor_batches), gradient_loader, strict=False)
    ]

    base_macs, base_params = count_macs_params(student, info.input_shape)
    base_val, base_test = accuracy(student, val_loader), accuracy(student, test_loader)
    pruner = MacsPruner(
        student,
        info.input_shape,
        info.num_classes,
        params.importance,
        params.global_pruning,
        params.max_layer_ratio,
        params.round_to,
        gradient_batches,
    )
    rows = [
        {
            "round": 0,
            "macs": base_macs,
            "params": base_params,
            "val_accuracy_pruned": base_val,
            "val_accuracy_finetuned": base_val,
        }
    ]
    log.info(
        "Pruning '%s' (%s) to %.0f%% of %d MACs in %d round(s)",
        arch,
        params.importance,
        (1 - params.target_ratio) * 100,
        base_macs,
        params.rounds,
    )
    for round_index in range(1, params.rounds + 1):
        target = base_macs * (1 - params.target_ratio * round_index / params.rounds)
        macs = pruner.prune_to(target)
        pruned_val = accuracy(student, val_loader)
        result = distill_finetune(
            student,
            teacher,
            info.input_shape,
            distill_params,
            make_loader(
                train_set, distill_params.batch_size, shuffle=True, seed=params.seed + round_index
            ),
            val_loader,
            params.finetune_epochs,
            distill_params.lr * params.lr_scale,
            f"prune round {round_index}",
            device,
        )
        macs, param_count = count_macs_params(student, info.input_shape)
        rows.append(
            {
                "round": round_index,
                "macs": macs,
                "params": param_count,
                "val_accuracy_pruned": pruned_val,
                "val_accuracy_finetuned": result.best_val_accuracy,
            }
        )
        log.info(
            "Round %d/%d: %d MACs (%.1f%%), %d params, val acc %.4f pruned -> %.4f fine-tuned",
            round_index,
            params.rounds,
            macs,
            100 * macs / base_macs,
            param_count,
            pruned_val,
            result.best_val_accuracy,
        )

    save_checkpoint(
        PRUNED_CHECKPOINT,
        student,
        arch,
        info.input_shape,
        info.num_classes,
        pruning_history=pruner.history(),
    )
    export_onnx(student, info.input_shape, PRUNED_ONNX)
    latency = compare_onnx_latency(
        {"teacher": TEACHER_ONNX, "distilled": STUDENT_ONNX, "pruned": PRUNED_ONNX},
        info.input_shape,
        [1, 32],
        bench.warmup_runs,
        bench.timed_runs,
        bench.intra_op_threads,
    )
    teacher_macs, teacher_params = count_macs_params(teacher, info.input_shape)
    summary = {
        "teacher": {
            "macs": teacher_macs,
            "params": teacher_params,
            "onnx_bytes": TEACHER_ONNX.stat().st_size,
        },
        "distilled": {
            "macs": base_macs,
            "params": base_params,
            "onnx_bytes": STUDENT_ONNX.stat().st_size,
            "val_accuracy": base_val,
            "test_accuracy": base_test,
        },
        "pruned": {
            "macs": rows[-1]["macs"],
            "params": rows[-1]["params"],
            "onnx_bytes": PRUNED_ONNX.stat().st_size,
            "val_accuracy": accuracy(student, val_loader),
            "test_accuracy": accuracy(student, test_loader),
        },
    }
    for name in summary:
        summary[name]["latency_p50_ms"] = {
            batch: latency[name][batch]["p50_ms"] for batch in ("batch_1", "batch_32")
        }
    metrics = {
        "arch": arch,
        "importance": params.importance,
        "target_ratio": params.target_ratio,
        "rounds": rows,
        **summary,
        "vs_distilled": _ratios(summary["pruned"], summary["distilled"]),
        "vs_teacher": _ratios(summary["pruned"], summary["teacher"]),
        "accuracy_drop_vs_distilled_points": round(
            (base_test - summary["pruned"]["test_accuracy"]) * 100, 2
        ),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    atomic.write_json(METRICS_FILE, metrics)
    atomic.write_csv(PLOT_FILE, rows)
    log.info(
        "Pruned: MACs x%.3f, ORT p50 batch 32 x%.3f of the distilled student; test acc %.4f (was %.4f)",
        metrics["vs_distilled"]["macs"],
        metrics["vs_distilled"]["latency_p50_batch_32"],
        summary["pruned"]["test_accuracy"],
        base_test,
    )
    return metrics


def _ratios(model: dict, reference: dict) -> dict[str, float]:
    """model / reference for each cost figure (below 1 is smaller or faster)."""
    return {
        "macs": round(model["macs"] / reference["macs"], 4),
        "params": round(model["params"] / reference["params"], 4),
        "onnx_bytes": round(model["onnx_bytes"] / reference["onnx_bytes"], 4),
        "latency_p50_batch_1": round(
            model["latency_p50_ms"]["batch_1"] / reference["latency_p50_ms"]["batch_1"], 4
        ),
        "latency_p50_batch_32": round(
            model["latency_p50_ms"]["batch_32"] / reference["latency_p50_ms"]["batch_32"], 4
        ),
    }


def main() -> None:
    params = load("prune", PruneParams)
    data = load("data", DataParams)
    prune(
        params,
        load("distill", DistillParams),
        data.augment.crop_padding,
        data.augment.horizontal_flip,
        load("benchmark", BenchmarkParams),
        resolve_device(load("compute", ComputeParams).device),
    )


if __name__ == "__main__":
    run_stage(main)
