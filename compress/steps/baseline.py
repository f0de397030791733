"""Step `baseline`: train (or load) the teacher and measure what compression must beat:
accuracy, size, latency by batch size in torch and ONNX Runtime, throughput and memory."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from torch import nn

from compress.config.benchmark import BenchmarkParams
from compress.config.data import AugmentParams
from compress.config.teacher import TeacherParams
from compress.core import atomic
from compress.core.artifacts import Artifacts
from compress.data.loaders import (
    DatasetInfo,
    eval_loader,
    first_image,
    load_info,
    make_loader,
    training_dataset,
)
from compress.evaluation.benchmark import (
    encode_png,
    end_to_end_latency,
    onnx_peak_memory,
    process_peak_rss_mb,
    runner_latency,
    torch_latency,
)
from compress.evaluation.inference import split_logits
from compress.evaluation.quality import classification_metrics
from compress.models.builders import build_model, count_macs_params, state_dict_bytes
from compress.models.checkpoints import (
    load_weights,
    read_checkpoint,
    save_checkpoint,
    write_torch_file,
)
from compress.models.onnx_export import export_onnx, with_contract
from compress.models.onnx_teacher import ONNX_TEACHER, OnnxTeacher, onnx_macs_params
from compress.runtime.runners import onnxruntime_runner
from compress.train.loop import (
    CPU,
    Compute,
    Schedule,
    fit,
    predict,
    seed_everything,
)
from compress.train.teacher_recipe import teacher_objective

log = logging.getLogger(__name__)


def baseline(
    params: TeacherParams,
    augment: AugmentParams,
    bench: BenchmarkParams,
    artifacts: Artifacts,
    compute: Compute = CPU,
) -> dict:
    info = load_info(artifacts.prepared_dir)
    if params.onnx:
        return measure_onnx_teacher(params.onnx, info, bench, artifacts)
    checkpoint, user_weights = user_teacher(params, artifacts)  # fail before any work
    seed_everything(params.seed)
    model = build_model(
        params.arch,
        info.num_classes,
        info.channels,
        info.image_size,
        "teacher.arch",
        params.kwargs,
        params.adapt_stem,
    )
    train_loader = make_loader(
        training_dataset(info, augment, artifacts.prepared_dir),
        params.batch_size,
        shuffle=True,
        seed=params.seed,
        workers=compute.loader_workers,
    )
    val_loader = eval_loader("val", info, artifacts.prepared_dir)
    test_loader = eval_loader("test", info, artifacts.prepared_dir)

    if user_weights is not None:
        load_weights(model, user_weights["state_dict"], checkpoint, params.arch)
        history, train_seconds = [], 0.0
        log.info("Loaded teacher '%s' from %s", params.arch, checkpoint)
    else:
        log.info("Training teacher '%s' for %d epochs", params.arch, params.epochs)
        schedule = Schedule(
            params.epochs,
            params.lr,
            params.weight_decay,
            warmup_epochs=params.warmup_epochs,
            patience=params.patience,
            weights=params.weights,
        )
        objective = teacher_objective(
            params.label_smoothing, params.mixup_alpha, params.cutmix_alpha, info.num_classes
        )
        result = fit(model, objective, train_loader, val_loader, schedule, "teacher", compute)
        history, train_seconds = result.history, result.seconds

    logits, labels = predict(model, test_loader)
    validation = classification_metrics(*predict(model, val_loader), info.classes)
    save_checkpoint(
        artifacts.teacher_pt,
        model,
        params.arch,
        info.input_shape,
        info.num_classes,
        arch_kwargs=params.kwargs,
        adapt_stem=params.adapt_stem,
    )
    export_onnx(model, info.input_shape, artifacts.teacher_onnx, info.contract())
    metrics = {
        "arch": params.arch,
        "source": "checkpoint" if params.checkpoint else "trained",
        **classification_metrics(logits, labels, info.classes),
        "validation": validation,
        **teacher_costs(model, logits, labels, info, bench, artifacts),
        "train_seconds": round(train_seconds, 2),
    }
    return write_metrics(metrics, history, artifacts)


def measure_onnx_teacher(
    reference: str, info: DatasetInfo, bench: BenchmarkParams, artifacts: Artifacts
) -> dict:
    """`teacher.onnx`: the team's trained teacher as it is, checked against the data before any
    work, copied with the data's preprocessing contract, measured in ONNX Runtime; its
    `teacher.pt` only says that the teacher is that file."""
    source = artifacts.tracked_input(reference, "teacher.onnx", artifacts.teacher_input_dir)
    teacher = OnnxTeacher(source, "teacher.onnx", info.input_shape, info.num_classes)
    contracted = with_contract(onnx.load(str(source)), info.contract())
    atomic.write_with(artifacts.teacher_onnx, lambda tmp: onnx.save(contracted, str(tmp)))
    reference_payload = {
        "arch": ONNX_TEACHER,
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        "state_dict": {},
        "onnx_file": reference,
    }
    atomic.write_with(artifacts.teacher_pt, lambda tmp: write_torch_file(reference_payload, tmp))
    log.info("Teacher: the ONNX file %s, measured as it is (no training)", reference)
    logits, labels = predict(teacher, eval_loader("test", info, artifacts.prepared_dir))
    val_logits, val_labels = predict(teacher, eval_loader("val", info, artifacts.prepared_dir))
    metrics = {
        "arch": ONNX_TEACHER,
        "source": f"onnx file {reference}",
        **classification_metrics(logits, labels, info.classes),
        "validation": classification_metrics(val_logits, val_labels, info.classes),
        **teacher_costs(None, logits, labels, info, bench, artifacts),
        "train_seconds": 0.0,
    }
    return write_metrics(metrics, [], artifacts)


def write_metrics(metrics: dict, history: list[dict], artifacts: Artifacts) -> dict:
    atomic.write_json(artifacts.baseline_metrics, metrics)
    atomic.write_csv(artifacts.baseline_plot, history)
    log.info(
        "Teacher test accuracy %.4f, %d params, %d MACs, ONNX %d bytes",
        metrics["accuracy"],
        metrics["params"],
        metrics["macs"],
        metrics["size_bytes"]["onnx_fp32"],
    )
    return metrics


def user_teacher(params: TeacherParams, artifacts: Artifacts) -> tuple[Path | None, dict | None]:
    """The team's trained teacher (`teacher.checkpoint`, a tracked input), loaded safely."""
    if not params.checkpoint:
        return None, None
    path = artifacts.tracked_input(
        params.checkpoint, "teacher.checkpoint", artifacts.teacher_input_dir
    )
    return path, read_checkpoint(path)


def teacher_costs(
    model: nn.Module | None,
    torch_logits: np.ndarray,
    labels: np.ndarray,
    info: DatasetInfo,
    bench: BenchmarkParams,
    artifacts: Artifacts,
) -> dict:
    """The exported teacher's agreement with torch, its size, latency, throughput and memory;
    an ONNX teacher (`model` None) has no torch figures, its MACs come from its graph."""
    runner = onnxruntime_runner(artifacts.teacher_onnx, bench.intra_op_threads)
    test_loader = eval_loader("test", info, artifacts.prepared_dir)
    onnx_logits = split_logits({"onnx": runner}, test_loader)[0]["onnx"]
    macs, params = (
        count_macs_params(model, info.input_shape)
        if model is not None
        else onnx_macs_params(artifacts.teacher_onnx, info.input_shape)
    )
    timing = (bench.warmup_runs, bench.timed_runs)
    runtimes = ("torch_eager", "onnxruntime") if model is not None else ("onnxruntime",)
    latency = {
        "threads": bench.intra_op_threads,
        "onnxruntime": runner_latency(runner, info.input_shape, bench.batch_sizes, *timing),
        "end_to_end_batch_1": end_to_end_latency(
            runner,
            encode_png(first_image("test", artifacts.prepared_dir)),
            info.contract(),
            *timing,
        ),
    }
    if model is not None:
        latency["torch_eager"] = torch_latency(
            model, info.input_shape, bench.batch_sizes, *timing, bench.intra_op_threads
        )
    largest = f"batch_{max(bench.batch_sizes)}"
    return {
        "onnx_accuracy": float(np.mean(onnx_logits.argmax(axis=1) == labels)),
        "onnx_max_abs_logit_diff": float(np.abs(onnx_logits - torch_logits).max()),
        "params": params,
        "macs": macs,
        "size_bytes": {
            "state_dict_fp32": state_dict_bytes(model) if model is not None else None,
            "checkpoint_file": artifacts.teacher_pt.stat().st_size,
            "onnx_fp32": artifacts.teacher_onnx.stat().st_size,
        },
        "latency": latency,
        "memory": {
            "onnxruntime_batch_32": onnx_peak_memory(
                artifacts.teacher_onnx, info.input_shape, 32, bench.intra_op_threads
            ),
            "stage_peak_rss_mb": process_peak_rss_mb(),
        },
        "throughput_per_s": {
            runtime: latency[runtime][largest]["throughput_per_s"] for runtime in runtimes
        },
    }
