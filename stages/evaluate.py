"""Stage `evaluate`: every candidate the pipeline produced, measured as ONNX in one process, one
runtime and one test split; Pareto frontiers; the acceptance gate picks the shipped model."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np

from stages import atomic
from stages.benchmark import (
    compare_onnx_latency,
    encode_png,
    end_to_end_latency,
    onnx_peak_memory,
    ort_session,
)
from stages.config import EvaluateParams, load
from stages.data import DatasetInfo, load_info, load_split, normalize
from stages.decision import choose, closest_failure, gate_failures, pareto_front
from stages.errors import PipelineError, run_stage
from stages.onnx_export import load_onnx
from stages.quality import full_quality

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

log = logging.getLogger("stages.evaluate")

REFERENCE = "teacher_fp32"
CANDIDATES = {
    REFERENCE: Path("models/teacher.onnx"),
    "teacher_int8": Path("models/teacher_int8.onnx"),
    "control": Path("models/control/control.onnx"),
    "distilled": Path("models/student.onnx"),
    "pruned": Path("models/pruned.onnx"),
    "quantized": Path("models/quantized.onnx"),
}
SHIPPED_ONNX = Path("models/shipped.onnx")
SHIPPED_JSON = Path("models/shipped.json")
METRICS_FILE = Path("metrics/evaluate.json")
REPORT_FILE = Path("reports/compression.md")
PLOTS_DIR = Path("plots/evaluate")


def collect_candidates(extra: list[str]) -> tuple[dict[str, Path], list[str]]:
    """Existing candidate files (the teacher is required) and notes on the skipped ones."""
    if not CANDIDATES[REFERENCE].is_file():
        raise PipelineError(
            f"The teacher '{CANDIDATES[REFERENCE]}' is missing: run `dvc repro baseline`."
        )
    found, notes = {}, []
    for name, path in CANDIDATES.items():
        if path.is_file():
            found[name] = path
        else:
            notes.append(f"{name}: '{path}' not found (its stage is off or did not run), skipped")
    for entry in extra:
        path = Path(entry)
        if not path.is_file():
            raise PipelineError(f"evaluate.extra_candidates lists '{path}', which does not exist.")
        found[f"extra:{path.stem}"] = path
    for path in found.values():
        load_onnx(path)
    return found, notes


def run_logits(path: Path, images: np.ndarray, threads: int) -> np.ndarray:
    session = ort_session(path, threads)
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: images[i : i + 256]})[0] for i in range(0, len(images), 256)]
    )


def parameter_count(path: Path) -> int:
    return int(
        sum(
            np.prod(tensor.dims)
            for tensor in load_onnx(path).graph.initializer
            if len(tensor.dims) > 1
        )
    )


def measure(
    candidates: dict[str, Path], info: DatasetInfo, params: EvaluateParams
) -> dict[str, dict]:
    raw_images, labels = load_split("test")
    images, labels = normalize(raw_images, info).numpy(), labels.numpy()
    logits = {
        name: run_logits(path, images, params.intra_op_threads) for name, path in candidates.items()
    }
    latency = compare_onnx_latency(
        candidates,
        info.input_shape,
        params.batch_sizes,
        params.warmup_runs,
        params.timed_runs,
        params.intra_op_threads,
        params.repeats,
    )
    png = encode_png(raw_images[0].numpy())
    results = {}
    for name, path in candidates.items():
        session = ort_session(path, params.intra_op_threads)
        results[name] = {
            "file": str(path),
            **full_quality(logits[name], labels, logits[REFERENCE], info.classes),
            "size_bytes": path.stat().st_size,
            "params": parameter_count(path),
            "latency": latency[name],
            "end_to_end_batch_1": end_to_end_latency(
                session,
                png,
                info.image_size,
                info.channels,
                info.mean,
                info.std,
                params.warmup_runs,
                params.timed_runs,
            ),
            "memory_batch_32": onnx_peak_memory(
                path, info.input_shape, 32, params.intra_op_threads
            ),
        }
        log.info(
            "%-14s acc %.4f  %8.2f MB  p50 b1 %.3f ms",
            name,
            results[name]["accuracy"],
            results[name]["size_bytes"] / 2**20,
            latency[name]["batch_1"]["p50_ms"],
        )
    largest = f"batch_{max(params.batch_sizes)}"
    reference = results[REFERENCE]
    for result in results.values():
        result["vs_teacher"] = {
            "size_x_smaller": round(reference["size_bytes"] / result["size_bytes"], 3),
            "latency_batch_1_x_faster": round(
                reference["latency"]["batch_1"]["p50_ms"] / result["latency"]["batch_1"]["p50_ms"],
                3,
            ),
            f"latency_{largest}_x_faster": round(
                reference["latency"][largest]["p50_ms"] / result["latency"][largest]["p50_ms"], 3
            ),
            "throughput_ratio": round(
                result["latency"][largest]["throughput_per_s"]
                / reference["latency"][largest]["throughput_per_s"],
                3,
            ),
            "accuracy_drop_points": round((reference["accuracy"] - result["accuracy"]) * 100, 2),
            "worst_class_drop_points": round(
                max(
                    reference["per_class_accuracy"][c] - v
                    for c, v in result["per_class_accuracy"].items()
                )
                * 100,
                2,
            ),
            "ece_change": round(result["ece"] - reference["ece"], 4),
        }
    return results


def pareto_plot(
    results: dict[str, dict],
    cost: str,
    label: str,
    front: list[str],
    shipped: str | None,
    out: Path,
) -> None:
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        x = _cost(result, cost)
        axes.scatter(
            x,
            result["accuracy"] * 100,
            color="tab:red" if name == shipped else "tab:blue",
            zorder=3,
        )
        axes.annotate(
            name + (" (shipped)" if name == shipped else ""),
            (x, result["accuracy"] * 100),
            fontsize=7,
        )
    ordered = sorted(front, key=lambda n: _cost(results[n], cost))
    axes.step(
        [_cost(results[n], cost) for n in ordered],
        [results[n]["accuracy"] * 100 for n in ordered],
        where="post",
        color="tab:green",
        label="Pareto frontier",
    )
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_xlabel(label)
    axes.set_ylabel("test accuracy (%)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    atomic.write_with(out, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)


def _cost(result: dict, cost: str) -> float:
    return (
        result["size_bytes"] / 2**20 if cost == "size" else result["latency"]["batch_1"]["p50_ms"]
    )


def provenance() -> dict:
    def git_commit() -> str | None:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() or None

    lock = Path("dvc.lock")
    data_hash = None
    if lock.is_file():
        import yaml

        for out in (
            yaml.safe_load(lock.read_text()).get("stages", {}).get("prepare", {}).get("outs", [])
        ):
            if out.get("path") == "data/prepared":
                data_hash = out.get("md5")
    return {
        "params_sha256": hashlib.sha256(Path("params.yaml").read_bytes()).hexdigest(),
        "git_commit": git_commit(),
        "data_md5": data_hash,
    }


def write_report(results: dict, decision: dict, notes: list[str]) -> None:
    lines = [
        "# Compression report",
        "",
        "All figures: ONNX Runtime, one process, the held-out test split.",
        "",
        "| candidate | accuracy | macro-F1 | ECE | size MB | x smaller | p50 b1 ms | x faster b1 | drop pts | worst class drop pts |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        v = r["vs_teacher"]
        lines.append(
            f"| {name} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['ece']:.4f} | {r['size_bytes'] / 2**20:.2f} | "
            f"{v['size_x_smaller']} | {r['latency']['batch_1']['p50_ms']:.3f} | {v['latency_batch_1_x_faster']} | "
            f"{v['accuracy_drop_points']} | {v['worst_class_drop_points']} |"
        )
    lines += [
        "",
        "![accuracy vs size](../plots/evaluate/pareto_size.png)",
        "![accuracy vs latency](../plots/evaluate/pareto_latency.png)",
        "",
        "## Decision",
        "",
        decision["summary"],
        "",
    ]
    lines += [f"- {note}" for note in notes]
    atomic.write_text(REPORT_FILE, "\n".join(lines) + "\n")


def evaluate(params: EvaluateParams) -> dict:
    info = load_info()
    candidates, notes = collect_candidates(params.extra_candidates)
    results = measure(candidates, info, params)
    gate = params.gate
    shippable = {name: r for name, r in results.items() if name != REFERENCE}
    failures = {
        name: gate_failures(
            r,
            results[REFERENCE],
            gate.max_accuracy_drop,
            gate.max_class_drop,
            gate.max_ece_increase,
        )
        for name, r in shippable.items()
    }
    shipped = choose(shippable, failures, params.objective)
    fronts = {
        cost: pareto_front({n: (r["accuracy"], _cost(r, cost)) for n, r in results.items()})
        for cost in ("size", "latency")
    }
    if shipped:
        summary = (
            f"Shipped **{shipped}**: passes the gate (max drop {gate.max_accuracy_drop * 100:.1f} pt, "
            f"max class drop {gate.max_class_drop * 100:.1f} pt, max ECE increase {gate.max_ece_increase}) "
            f"and is the {params.objective.replace('_', ' ')} of the "
            f"{sum(not f for f in failures.values())} that pass."
        )
    else:
        name, criterion, amount = (
            closest_failure(failures) if failures else (REFERENCE, "none", 0.0)
        )
        summary = (
            f"No candidate passes the gate; the closest, '{name}', misses evaluate.gate.{criterion} "
            f"by {amount * 100 if criterion != 'max_ece_increase' else amount:.3g}"
            f"{' pt' if criterion != 'max_ece_increase' else ''}."
        )
    decision = {
        "objective": params.objective,
        "shipped": shipped,
        "gate_failures": failures,
        "summary": summary,
        "pareto_size": fronts["size"],
        "pareto_latency": fronts["latency"],
    }
    for cost, label in (("size", "ONNX size (MB)"), ("latency", "p50 latency at batch 1 (ms)")):
        pareto_plot(results, cost, label, fronts[cost], shipped, PLOTS_DIR / f"pareto_{cost}.png")
    atomic.write_csv(
        PLOTS_DIR / "candidates.csv",
        [
            {
                "candidate": n,
                "accuracy": r["accuracy"],
                "size_mb": r["size_bytes"] / 2**20,
                "latency_batch_1_ms": r["latency"]["batch_1"]["p50_ms"],
            }
            for n, r in results.items()
        ],
    )
    confusion_source = shipped or REFERENCE
    atomic.write_csv(
        PLOTS_DIR / "confusion.csv",
        [
            {"actual": info.classes[a], "predicted": info.classes[p]}
            for a, row in enumerate(results[confusion_source]["confusion_matrix"])
            for p, count in enumerate(row)
            for _ in range(count)
        ],
    )
    metrics = {"candidates": results, "decision": decision, "notes": notes}
    atomic.write_json(METRICS_FILE, metrics)
    write_report(results, decision, notes)
    if shipped is None:
        raise PipelineError(
            summary
            + f" The report is in '{REPORT_FILE}'; relax evaluate.gate or improve the models."
        )
    atomic.write_with(SHIPPED_ONNX, lambda tmp: shutil.copyfile(candidates[shipped], tmp))
    atomic.write_json(
        SHIPPED_JSON,
        {
            "candidate": shipped,
            "source_file": str(candidates[shipped]),
            "metrics": results[shipped],
            "objective": params.objective,
            "preprocessing": {
                "mean": info.mean,
                "std": info.std,
                "input_shape": list(info.input_shape),
            },
            **provenance(),
        },
    )
    log.info(summary)
    return metrics


def main() -> None:
    evaluate(load("evaluate", EvaluateParams))


if __name__ == "__main__":
    run_stage(main)
