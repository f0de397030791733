"""Step `evaluate`: every candidate the pipeline produced, measured as ONNX in one process on
the test split in every runtime; Pareto frontiers; the acceptance gate and the objective choose
on the validation split, and the chosen model ships only if it passes the gate on test too."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from compress.config.evaluate import EvaluateParams
from compress.core import atomic
from compress.core.artifacts import REFERENCE_CANDIDATE, Artifacts
from compress.core.errors import PipelineError
from compress.data.loaders import DatasetInfo, eval_loader, first_image, load_info
from compress.evaluation.benchmark import (
    compare_latency,
    encode_png,
    end_to_end_latency,
    onnx_peak_memory,
)
from compress.evaluation.comparison import add_drop_intervals, int8_vs_fp32, versus
from compress.evaluation.decision import closest_failure, gate_decision, pareto_front
from compress.evaluation.inference import split_logits
from compress.evaluation.machine import machine_info
from compress.evaluation.model_card import write_model_card
from compress.evaluation.plots import COSTS, cost_of, pareto_plot
from compress.evaluation.quality import full_quality
from compress.evaluation.report import write_report, write_tables
from compress.evaluation.shipping import ship
from compress.evaluation.summary import write_summary
from compress.models.onnx_export import load_onnx
from compress.runtime.runners import Runner, load_runner

log = logging.getLogger(__name__)

REFERENCE = REFERENCE_CANDIDATE


def collect_candidates(extra: list[str], artifacts: Artifacts) -> tuple[dict[str, Path], list[str]]:
    """Existing candidate files (the teacher is required) and notes on the skipped ones."""
    candidates = artifacts.candidates()
    if not candidates[REFERENCE].is_file():
        raise PipelineError(
            f"The teacher '{candidates[REFERENCE]}' is missing: run `dvc repro baseline`."
        )
    found, notes = {}, []
    for name, path in candidates.items():
        if path.is_file():
            found[name] = path
        else:
            notes.append(f"{name}: '{path}' not found (its stage is off or did not run), skipped")
    for entry in extra:
        path = artifacts.tracked_input(
            entry, "evaluate.extra_candidates", artifacts.teacher_input_dir
        )
        if not path.is_file():
            raise PipelineError(f"evaluate.extra_candidates lists '{path}', which does not exist.")
        found[f"extra:{path.stem}"] = path
    for path in found.values():
        load_onnx(path)
    return found, notes


def parameter_count(path: Path) -> int:
    return int(
        sum(
            np.prod(tensor.dims)
            for tensor in load_onnx(path).graph.initializer
            if len(tensor.dims) > 1
        )
    )


def measure(
    candidates: dict[str, Path], info: DatasetInfo, params: EvaluateParams, artifacts: Artifacts
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Quality on test, size, latency (every candidate in every runtime, interleaved),
    end-to-end latency and memory of every candidate, the top-level figures the target
    runtime's; and the selection figures on validation."""
    runners = {
        f"{name}@{runtime}": load_runner(runtime, path, params.intra_op_threads)
        for name, path in candidates.items()
        for runtime in params.runtimes
    }
    logits, labels = split_logits(runners, eval_loader("test", info, artifacts.prepared_dir))
    latency = compare_latency(
        runners,
        info.input_shape,
        params.batch_sizes,
        params.warmup_runs,
        params.timed_runs,
        params.repeats,
    )
    png = encode_png(first_image("test", artifacts.prepared_dir))
    target, results = params.target_runtime, {}
    for name, path in candidates.items():
        results[name] = {
            "file": artifacts.relative(path),
            **full_quality(
                logits[f"{name}@{target}"], labels, logits[f"{REFERENCE}@{target}"], info.classes
            ),
            "size_bytes": path.stat().st_size,
            "params": parameter_count(path),
            "runtime": target,
            "latency": latency[f"{name}@{target}"],
            "runtimes": {
                runtime: {
                    "accuracy": float(np.mean(logits[f"{name}@{runtime}"].argmax(1) == labels)),
                    f"agreement_with_{target}": float(
                        np.mean(
                            logits[f"{name}@{runtime}"].argmax(1)
                            == logits[f"{name}@{target}"].argmax(1)
                        )
                    ),
                    "latency": latency[f"{name}@{runtime}"],
                }
                for runtime in params.runtimes
            },
            "end_to_end_batch_1": end_to_end_latency(
                runners[f"{name}@{target}"],
                png,
                info.contract(),
                params.warmup_runs,
                params.timed_runs,
            ),
            "memory_batch_32_onnxruntime": onnx_peak_memory(
                path, info.input_shape, 32, params.intra_op_threads
            ),
        }
        log.info(
            "%-14s %s",
            name,
            "  ".join(
                f"{runtime}: acc {figures['accuracy']:.4f} p50 b1 "
                f"{figures['latency']['batch_1']['p50_ms']:.3f} ms"
                for runtime, figures in results[name]["runtimes"].items()
            ),
        )
    for result in results.values():
        result["vs_teacher"] = versus(result, results[REFERENCE], max(params.batch_sizes))
    correct = {name: logits[f"{name}@{target}"].argmax(1) == labels for name in candidates}
    add_drop_intervals(
        results,
        REFERENCE,
        correct,
        labels,
        info.classes,
        params.gate.confidence,
        params.gate.class_false_alarm,
    )
    target_runners = {name: runners[f"{name}@{target}"] for name in candidates}
    return results, selection_figures(target_runners, results, info, params, artifacts)


def selection_figures(
    runners: dict[str, Runner],
    results: dict[str, dict],
    info: DatasetInfo,
    params: EvaluateParams,
    artifacts: Artifacts,
) -> dict[str, dict]:
    """What the gate and the objective choose with: every candidate's accuracy, per-class
    accuracy, ECE and paired drop interval on the validation split in the target runtime,
    with its size and latency (which no split changes)."""
    logits, labels = split_logits(runners, eval_loader("val", info, artifacts.prepared_dir))
    selection = {}
    for name, result in results.items():
        quality = full_quality(logits[name], labels, logits[REFERENCE], info.classes)
        selection[name] = {
            "split": "val",
            **{key: quality[key] for key in ("accuracy", "per_class_accuracy", "ece")},
            "size_bytes": result["size_bytes"],
            "latency": {"batch_1": result["latency"]["batch_1"]},
        }
    correct = {name: logits[name].argmax(1) == labels for name in results}
    add_drop_intervals(
        selection,
        REFERENCE,
        correct,
        labels,
        info.classes,
        params.gate.confidence,
        params.gate.class_false_alarm,
    )
    return selection


def trial_stand_in(decision: dict) -> str:
    """What a search trial whose candidates all miss the gate on validation writes as its
    shipped files (DVC needs the outs; `decision.shipped` stays null): the closest miss."""
    failures = decision["selection_failures"]
    return closest_failure(failures)[0] if failures else REFERENCE


def evaluate(params: EvaluateParams, artifacts: Artifacts) -> dict:
    info = load_info(artifacts.prepared_dir)
    candidates, notes = collect_candidates(params.extra_candidates, artifacts)
    results, selection = measure(candidates, info, params, artifacts)
    decision = gate_decision(
        selection, results, REFERENCE, params.gate, params.objective, params.confirm_on_test
    )
    for name, figures in selection.items():
        results[name]["selection"] = figures
    shipped = decision["shipped"]
    for cost, label in COSTS.items():
        front = pareto_front({n: (r["accuracy"], cost_of(r, cost)) for n, r in results.items()})
        decision[f"pareto_{cost}"] = front
        plot = artifacts.pareto_size_plot if cost == "size" else artifacts.pareto_latency_plot
        gate_accuracy = results[REFERENCE]["accuracy"] - params.gate.max_accuracy_drop
        pareto_plot(results, cost, label, front, shipped, gate_accuracy, plot)
    write_tables(
        results,
        shipped or REFERENCE,
        info.classes,
        artifacts.candidates_plot,
        artifacts.confusion_plot,
    )
    metrics = {
        "candidates": results,
        "decision": decision,
        "int8_vs_fp32_latency": int8_vs_fp32(results, params.runtimes),
        "machine": machine_info(),
        "notes": notes,
    }
    atomic.write_json(artifacts.evaluate_metrics, metrics)
    write_report(
        results,
        decision,
        metrics["int8_vs_fp32_latency"],
        params.gate.max_accuracy_drop,
        notes,
        artifacts.report,
    )
    if shipped is None and params.confirm_on_test:
        raise PipelineError(
            decision["summary"]
            + f" The report is in '{artifacts.report}'; relax evaluate.gate or improve the models."
        )
    written = shipped or trial_stand_in(decision)
    ship(candidates[written], written, results[written], info, params, artifacts)
    write_summary(metrics, params.gate.max_accuracy_drop, artifacts)
    write_model_card(artifacts)  # from the manifest just written: the two name one commit
    log.info(decision["summary"])
    return metrics
