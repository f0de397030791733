"""Step `prune`: iterative structured pruning of the distilled student. Each round removes whole
channels (Torch-Pruning) toward a MACs target, then fine-tunes with the distillation loss from
the frozen teacher, so the model that comes out is physically smaller and faster."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import replace

from torch import nn
from torch.utils.data import DataLoader, Dataset

from compress.compression.pruning import MacsPruner
from compress.compression.pruning_rounds import FineTuning, prune_in_rounds, unpruned_row
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
    training_dataset,
)
from compress.evaluation.benchmark import compare_onnx_latency
from compress.models.checkpoints import architecture, load_model, save_checkpoint
from compress.models.onnx_export import export_onnx
from compress.models.onnx_teacher import macs_params
from compress.train.distillation import (
    distillation_dataset,
    load_teacher,
)
from compress.train.loop import (
    CPU,
    Compute,
    accuracy,
    seed_everything,
)

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
    val_loader = eval_loader("val", info, artifacts.prepared_dir)
    test_loader = eval_loader("test", info, artifacts.prepared_dir)
    student, payload, start = starting_student(artifacts, val_loader)
    history = payload.get("pruning_history", [])  # a student cut from the teacher has one
    labels_only_start = copy.deepcopy(student)
    seed_everything(params.seed)
    train_set = distillation_dataset(info, augment, distill_params, artifacts)
    unpruned = unpruned_row(student, info, start["val_accuracy"][start["model"]])
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
        "start": start,
        "importance": params.importance,
        "target_ratio": params.target_ratio,
        "rounds": rows,
        **summary,
        "vs_distilled": _ratios(summary["pruned"], summary["distilled"]),
        "vs_teacher": _ratios(summary["pruned"], summary["teacher"]),
        "accuracy_drop_vs_distilled_points": round(
            (base_test - summary["pruned"]["test_accuracy"]) * 100, 2
        ),
    }
    if params.control:
        labels_only = replace(
            fine_tuning, teacher=None, train_set=labels_only_views(info, augment, artifacts)
        )
        metrics |= pruning_control(
            labels_only_start,
            unpruned,
            params,
            info,
            labels_only,
            test_loader,
            summary["pruned"],
            artifacts,
        )
    metrics["wall_seconds"] = round(time.perf_counter() - started, 2)
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


def starting_student(artifacts: Artifacts, val_loader: DataLoader) -> tuple[nn.Module, dict, dict]:
    """(model, checkpoint payload, record) of the student pruning starts from: the distilled
    one, unless the labels-only control (`distill.control`) is more accurate on validation;
    then distillation did not help, and the better student goes on. The test split is not read."""
    distilled, payload = load_model(artifacts.student_pt)
    val = {"distilled": accuracy(distilled, val_loader)}
    if not artifacts.control_pt.is_file():
        why = "no control was trained (distill.control: false)"
        return distilled, payload, {"model": "distilled", "val_accuracy": val, "why": why}
    control, control_payload = load_model(artifacts.control_pt)
    val["control"] = accuracy(control, val_loader)
    if val["control"] > val["distilled"]:
        why = (
            f"the labels-only control is more accurate on validation ({val['control']:.4f} "
            f"against the distilled student's {val['distilled']:.4f}): distillation did not help"
        )
        log.warning("Pruning starts from the control: %s", why)
        return control, control_payload, {"model": "control", "val_accuracy": val, "why": why}
    why = (
        f"the distilled student is at least as accurate on validation as the labels-only "
        f"control ({val['distilled']:.4f} against {val['control']:.4f})"
    )
    return distilled, payload, {"model": "distilled", "val_accuracy": val, "why": why}


def labels_only_views(info: DatasetInfo, augment: AugmentParams, artifacts: Artifacts) -> Dataset:
    """(image, label) pairs on fresh augmented views: no teacher output anywhere in them."""
    return training_dataset(info, augment, artifacts.prepared_dir)


def pruning_control(
    student: nn.Module,
    unpruned: dict,
    params: PruneParams,
    info: DatasetInfo,
    labels_only: FineTuning,
    test_loader: DataLoader,
    pruned: dict,
    artifacts: Artifacts,
) -> dict:
    """The same rounds from the same start, fine-tuned on labels alone (`prune.control`): what
    the distillation loss adds to the recovery after pruning, on validation and test."""
    log.info("Pruning control: the same rounds, fine-tuned on labels alone")
    seed_everything(params.seed)
    pruner = make_pruner(student, info, params, artifacts)
    rows = prune_in_rounds(student, pruner, unpruned, params, info, labels_only)
    control = {
        "rounds": rows,
        "val_accuracy": accuracy(student, labels_only.val_loader),
        "test_accuracy": accuracy(student, test_loader),
    }
    return {
        "labels_only_control": control,
        "kd_finetune_gain_points": {
            split: round((pruned[f"{split}_accuracy"] - control[f"{split}_accuracy"]) * 100, 2)
            for split in ("val", "test")
        },
    }


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
