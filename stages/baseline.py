"""Stage `baseline`: train (or load) the teacher and measure what compression must beat:
accuracy, size, latency by batch size in torch and ONNX Runtime, throughput and memory."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from stages import atomic
from stages.benchmark import (
    encode_png,
    end_to_end_latency,
    onnx_latency,
    onnx_peak_memory,
    ort_session,
    process_peak_rss_mb,
    torch_latency,
)
from stages.config import (
    AugmentParams,
    BenchmarkParams,
    ComputeParams,
    DataParams,
    TeacherParams,
    load,
)
from stages.data import (
    load_info,
    load_split,
    make_loader,
    normalized_dataset,
    train_augmentation,
    training_dataset,
)
from stages.errors import run_stage
from stages.models import (
    build_model,
    count_macs_params,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    state_dict_bytes,
)
from stages.onnx_export import export_onnx
from stages.quality import classification_metrics
from stages.training import (
    cross_entropy_objective,
    fit,
    predict,
    resolve_device,
    seed_everything,
)

log = logging.getLogger("stages.baseline")

TEACHER_CHECKPOINT = Path("models/teacher.pt")
TEACHER_ONNX = Path("models/teacher.onnx")
METRICS_FILE = Path("metrics/baseline.json")
PLOT_FILE = Path("plots/baseline/train.csv")


def baseline(
    arch: str,
    checkpoint: str | None,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    augment: AugmentParams,
    bench: BenchmarkParams,
    device: str = "cpu",
) -> dict:
    info = load_info()
    user_weights = read_checkpoint(checkpoint) if checkpoint else None  # fail before any work
    seed_everything(seed)
    model = build_model(
        arch, info.num_classes, info.channels, info.image_size, param="teacher.arch"
    )
    augmentation = train_augmentation(
        augment.crop_padding, augment.horizontal_flip, info.image_size
    )
    train_loader = make_loader(
        training_dataset(info, augmentation), batch_size, shuffle=True, seed=seed
    )
    val_loader = make_loader(normalized_dataset("val", info), 256, shuffle=False)
    test_loader = make_loader(normalized_dataset("test", info), 256, shuffle=False)

    if user_weights is not None:
        load_weights(model, user_weights["state_dict"], checkpoint, arch)
        history, train_seconds = [], 0.0
        log.info("Loaded teacher '%s' from %s", arch, checkpoint)
    else:
        log.info("Training teacher '%s' for %d epochs", arch, epochs)
        result = fit(
            model,
            cross_entropy_objective,
            train_loader,
            val_loader,
            epochs,
            lr,
            weight_decay,
            "teacher",
            device=device,
        )
        history, train_seconds = result.history, result.seconds

    logits, labels = predict(model, test_loader)
    quality = classification_metrics(logits, labels, info.classes)
    save_checkpoint(TEACHER_CHECKPOINT, model, arch, info.input_shape, info.num_classes)
    export_onnx(model, info.input_shape, TEACHER_ONNX)

    session = ort_session(TEACHER_ONNX, bench.intra_op_threads)
    test_inputs = test_loader.dataset.tensors[0].numpy()
    onnx_logits = session.run(None, {session.get_inputs()[0].name: test_inputs})[0]
    test_images, _ = load_split("test")
    macs, params = count_macs_params(model, info.input_shape)
    metrics = {
        "arch": arch,
        "source": "checkpoint" if checkpoint else "trained",
        **quality,
        "onnx_accuracy": float(np.mean(onnx_logits.argmax(axis=1) == labels)),
        "onnx_max_abs_logit_diff": float(np.abs(onnx_logits - logits).max()),
        "params": params,
        "macs": macs,
        "size_bytes": {
            "state_dict_fp32": state_dict_bytes(model),
            "checkpoint_file": TEACHER_CHECKPOINT.stat().st_size,
            "onnx_fp32": TEACHER_ONNX.stat().st_size,
        },
        "latency": {
            "threads": bench.intra_op_threads,
            "torch_eager": torch_latency(
                model,
                info.input_shape,
                bench.batch_sizes,
                bench.warmup_runs,
                bench.timed_runs,
                bench.intra_op_threads,
            ),
            "onnxruntime": onnx_latency(
                session, info.input_shape, bench.batch_sizes, bench.warmup_runs, bench.timed_runs
            ),
            "end_to_end_batch_1": end_to_end_latency(
                session,
                encode_png(test_images[0].numpy()),
                info.image_size,
                info.channels,
                info.mean,
                info.std,
                bench.warmup_runs,
                bench.timed_runs,
            ),
        },
        "memory": {
            "onnxruntime_batch_32": onnx_peak_memory(
                TEACHER_ONNX, info.input_shape, 32, bench.intra_op_threads
            ),
            "stage_peak_rss_mb": process_peak_rss_mb(),
        },
        "train_seconds": round(train_seconds, 2),
    }
    largest = f"batch_{max(bench.batch_sizes)}"
    metrics["throughput_per_s"] = {
        "torch_eager": metrics["latency"]["torch_eager"][largest]["throughput_per_s"],
        "onnxruntime": metrics["latency"]["onnxruntime"][largest]["throughput_per_s"],
    }
    atomic.write_json(METRICS_FILE, metrics)
    atomic.write_csv(PLOT_FILE, history)
    log.info(
        "Teacher test accuracy %.4f, %d params, %d MACs, ONNX %d bytes",
        metrics["accuracy"],
        params,
        macs,
        metrics["size_bytes"]["onnx_fp32"],
    )
    return metrics


def main() -> None:
    teacher = load("teacher", TeacherParams)
    baseline(
        arch=teacher.arch,
        checkpoint=teacher.checkpoint,
        epochs=teacher.epochs,
        batch_size=teacher.batch_size,
        lr=teacher.lr,
        weight_decay=teacher.weight_decay,
        seed=teacher.seed,
        augment=load("data", DataParams).augment,
        bench=load("benchmark", BenchmarkParams),
        device=resolve_device(load("compute", ComputeParams).device),
    )


if __name__ == "__main__":
    run_stage(main)
