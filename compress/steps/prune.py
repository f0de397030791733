"""Step `prune`: iterative structured pruning of the distilled student. Each round removes whole
channels (Torch-Pruning) toward a MACs target, then fine-tunes with the distillation loss from
the frozen teacher, so the model that comes out is physically smaller and faster."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from torch import nn
from torch.utils.data import DataLoader, Dataset

from compress.compression.pruning import MacsPruner
from compress.config.benchmark import BenchmarkParams
from compress.config.data import AugmentParams
from compress.config.distill import DistillParams
from compress.config.prune import PruneParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.data.loaders import (
    DatasetInfo,
    eval_loader,
    load_info,
    make_loader,
    normalized_dataset,
)
from compress.evaluation.benchmark import compare_onnx_latency
from compress.models.builders import count_macs_params
from compress.models.checkpoints import architecture, load_model, save_checkpoint
from compress.models.onnx_export import export_onnx
from compress.models.onnx_teacher import macs_params
from compress.train.distillation import (
    distillation_dataset,
    distillation_objective,
    load_teacher,
)
from compress.train.loop import CPU, Compute, FitResult, Schedule, accuracy, fit, seed_everything

log = logging.getLogger(__name__)


def prune(
    params: PruneParams,
    distill_params: DistillParams,
    augment: AugmentParams,
    bench: BenchmarkParams,
    artifacts: Artifacts,
    compute: Compute = CPU,
) -> dict:
    started = time.perf_counter()
    info = load_info(artifacts.prepared_dir)
    teacher = load_teacher(artifacts, distill_params)
    student, payload = load_model(artifacts.student_pt)
    history = payload.get("pruning_history", [])  # a student cut from the teacher has one
    seed_everything(params.seed)
    train_set = distillation_dataset(info, augment, distill_params, artifacts)
    val_loader = eval_loader("val", info, artifacts.prepared_dir)
    test_loader = eval_loader("test", info, artifacts.prepared_dir)
    unpruned = unpruned_row(student, info, val_loader)
    base_test = accuracy(student, test_loader)
    pruner = make_pruner(student, info, params, artifacts)
    log.info("Pruning '%s' (%s) in %d round(s)", payload["arch"], params.importance, params.rounds)
    fine_tuning = FineTuning(teacher, distill_params, train_set, val_loader, compute)
    rows = prune_in_rounds(student, pruner, unpruned, params, info, fine_tuning)
    save_checkpoint(
        artifacts.pruned_pt,
        student,
        payload["arch"],
        info.input_shape,
        info.num_classes,
        **architecture(payload) | {"pruning_history": history + pruner.history()},
    )
    export_onnx(student, info.input_shape, artifacts.pruned_onnx, info.contract())
    summary = cost_summary(teacher, rows, info, bench, artifacts)
    summary["distilled"] |= {
        "val_accuracy": rows[0]["val_accuracy_pruned"],
        "test_accuracy": base_test,
    }
    summary["pruned"] |= {
        "val_accuracy": accuracy(student, val_loader),
        "test_accuracy": accuracy(student, test_loader),
    }
    metrics = {
        "arch": payload["arch"],
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
    atomic.write_json(artifacts.prune_metrics, metrics)
    atomic.write_csv(artifacts.prune_plot, rows)
    log.info(
        "Pruned: MACs x%.3f, ORT p50 batch 32 x%.3f of the distilled student; test acc %.4f (was %.4f)",
        metrics["vs_distilled"]["macs"],
        metrics["vs_distilled"]["latency_p50_batch_32"],
        summary["pruned"]["test_accuracy"],
        base_test,
    )
    return metrics


def make_pruner(
    student: nn.Module, info: DatasetInfo, params: PruneParams, artifacts: Artifacts
) -> MacsPruner:
    """The pruner with `prune.*` settings; the taylor criterion gets a few training batches
    (in a seeded order of their own) for its gradients."""
    gradient_loader = make_loader(
        normalized_dataset("train", info, artifacts.prepared_dir),
        64,
        shuffle=True,
        seed=params.seed,
    )
    gradient_batches = [
        batch for _, batch in zip(range(params.taylor_batches), gradient_loader, strict=False)
    ]
    return MacsPruner(
        student,
        info.input_shape,
        info.num_classes,
        params.importance,
        params.global_pruning,
        params.max_layer_ratio,
        params.round_to,
        gradient_batches,
    )


def unpruned_row(student: nn.Module, info: DatasetInfo, val_loader: DataLoader) -> dict:
    """Round 0 of the rounds table: the distilled student as it came."""
    macs, param_count = count_macs_params(student, info.input_shape)
    val_accuracy = accuracy(student, val_loader)
    return {
        "round": 0,
        "macs": macs,
        "params": param_count,
        "val_accuracy_pruned": val_accuracy,
        "val_accuracy_finetuned": val_accuracy,
    }


@dataclass(frozen=True)
class FineTuning:
    """What every round's distillation fine-tuning shares: the teacher and its loss, the data
    and where it trains."""

    teacher: nn.Module
    distill: DistillParams
    train_set: Dataset
    val_loader: DataLoader
    compute: Compute

    def run(
        self, student: nn.Module, info: DatasetInfo, schedule: Schedule, seed: int, name: str
    ) -> FitResult:
        loader = make_loader(
            self.train_set, self.distill.batch_size, True, seed, self.compute.loader_workers
        )
        objective = distillation_objective(self.teacher, student, info.input_shape, self.distill)
        with objective:
            return fit(student, objective, loader, self.val_loader, schedule, name, self.compute)


def prune_in_rounds(
    student: nn.Module,
    pruner: MacsPruner,
    unpruned: dict,
    params: PruneParams,
    info: DatasetInfo,
    fine_tuning: FineTuning,
) -> list[dict]:
    """`prune.rounds` equal steps toward the MACs target, each followed by distillation
    fine-tuning; one row per round after the `unpruned` one."""
    base_macs, rows = unpruned["macs"], [unpruned]
    distill = fine_tuning.distill
    schedule = Schedule(
        params.finetune_epochs,
        distill.lr * params.lr_scale,
        distill.weight_decay,
        patience=params.patience,
    )
    for round_index in range(1, params.rounds + 1):
        pruner.prune_to(base_macs * (1 - params.target_ratio * round_index / params.rounds))
        pruned_val = accuracy(student, fine_tuning.val_loader)
        name, seed = f"prune round {round_index}", params.seed + round_index
        result = fine_tuning.run(student, info, schedule, seed, name)
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
    return rows


def cost_summary(
    teacher: nn.Module,
    rows: list[dict],
    info: DatasetInfo,
    bench: BenchmarkParams,
    artifacts: Artifacts,
) -> dict[str, dict]:
    """MACs, parameters, ONNX bytes and ORT latency (measured side by side) of the teacher, the
    distilled student and the pruned one."""
    files = {
        "teacher": artifacts.teacher_onnx,
        "distilled": artifacts.student_onnx,
        "pruned": artifacts.pruned_onnx,
    }
    latency = compare_onnx_latency(
        files,
        info.input_shape,
        [1, 32],
        bench.warmup_runs,
        bench.timed_runs,
        bench.intra_op_threads,
    )
    teacher_macs, teacher_params = macs_params(teacher, info.input_shape)
    counts = {
        "teacher": (teacher_macs, teacher_params),
        "distilled": (rows[0]["macs"], rows[0]["params"]),
        "pruned": (rows[-1]["macs"], rows[-1]["params"]),
    }
    return {
        name: {
            "macs": counts[name][0],
            "params": counts[name][1],
            "onnx_bytes": path.stat().st_size,
            "latency_p50_ms": {
                batch: latency[name][batch]["p50_ms"] for batch in ("batch_1", "batch_32")
            },
        }
        for name, path in files.items()
    }


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
