"""Step `evaluate`: every candidate the pipeline produced, measured as ONNX in one process, one
runtime and one test split; Pareto frontiers; the acceptance gate picks the shipped model."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import onnx
import yaml

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
from compress.evaluation.decision import gate_decision, pareto_front
from compress.evaluation.inference import save_openvino_ir, split_logits
from compress.evaluation.quality import full_quality
from compress.evaluation.report import COSTS, cost_of, pareto_plot, write_report, write_tables
from compress.models.onnx_export import load_onnx, with_contract
from compress.runtime.runners import load_runner

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
) -> dict[str, dict]:
    """Quality, size, latency (every candidate in every runtime, interleaved), end-to-end
    latency and memory of every candidate; the top-level figures are the target runtime's."""
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
    add_drop_intervals(results, REFERENCE, correct, labels, info.classes, params.gate.confidence)
    return results


def provenance(artifacts: Artifacts) -> dict:
    """What made the shipped model: params file hash, git commit, prepared data hash."""
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=artifacts.root,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    data_hash = None
    if artifacts.dvc_lock.is_file():
        lock = yaml.safe_load(artifacts.dvc_lock.read_text()) or {}
        for out in lock.get("stages", {}).get("prepare", {}).get("outs", []):
            if out.get("path") == str(Artifacts.outs()["prepared_dir"]):
                data_hash = out.get("md5")
    return {
        "params_sha256": hashlib.sha256(artifacts.params_file.read_bytes()).hexdigest(),
        "git_commit": commit or None,
        "data_md5": data_hash,
    }


def ship(
    source: Path,
    name: str,
    figures: dict,
    info: DatasetInfo,
    params: EvaluateParams,
    artifacts: Artifacts,
) -> None:
    """models/shipped.onnx: the chosen candidate with its contract and provenance in its
    metadata; its OpenVINO IR when OpenVINO is among the runtimes; shipped.json with the figures."""
    origin = provenance(artifacts)
    contract = replace(info.contract(), provenance=origin)
    model = with_contract(load_onnx(source), contract)
    atomic.write_with(artifacts.shipped_onnx, lambda tmp: onnx.save(model, str(tmp)))
    if "openvino" in params.runtimes:
        atomic.replace_dir(
            artifacts.openvino_dir,
            lambda folder: save_openvino_ir(artifacts.shipped_onnx, folder / "shipped.xml"),
        )
    else:
        atomic.replace_dir(
            artifacts.openvino_dir,
            lambda folder: (folder / "skipped.txt").write_text(
                "openvino is not in evaluate.runtimes\n"
            ),
        )
    atomic.write_json(
        artifacts.shipped_json,
        {
            "candidate": name,
            "source_file": artifacts.relative(source),
            "metrics": figures,
            "objective": params.objective,
            "target_runtime": params.target_runtime,
            "contract": asdict(contract),
            **origin,
        },
    )


def evaluate(params: EvaluateParams, artifacts: Artifacts) -> dict:
    info = load_info(artifacts.prepared_dir)
    candidates, notes = collect_candidates(params.extra_candidates, artifacts)
    results = measure(candidates, info, params, artifacts)
    decision = gate_decision(results, REFERENCE, params.gate, params.objective)
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
    if shipped is None:
        raise PipelineError(
            decision["summary"]
            + f" The report is in '{artifacts.report}'; relax evaluate.gate or improve the models."
        )
    ship(candidates[shipped], shipped, results[shipped], info, params, artifacts)
    log.info(decision["summary"])
    return metrics
