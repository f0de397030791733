"""The evaluation's report: the candidates and confusion tables DVC plots read, and the
Markdown report with the decision (the PNG figures are in `plots`)."""

from __future__ import annotations

from pathlib import Path

from compress.core import atomic
from compress.evaluation.uncertainty import images_needed, smallest_resolvable_drop


def runtime_table(results: dict, int8_ratios: dict[str, dict]) -> list[str]:
    """Every candidate in every runtime side by side, and the INT8 / fp32 latency ratios."""
    lines = [
        "## Runtimes",
        "",
        "Measured in one process, interleaved; agreement: share of test predictions equal to the "
        "target runtime's.",
        "",
        "| candidate | runtime | accuracy | agreement | p50 b1 ms | p50 largest batch ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for runtime, figures in result["runtimes"].items():
            agreement = next(v for k, v in figures.items() if k.startswith("agreement_with_"))
            largest = list(figures["latency"])[-1]
            lines.append(
                f"| {name} | {runtime} | {figures['accuracy']:.4f} | {agreement:.4f} | "
                f"{figures['latency']['batch_1']['p50_ms']:.3f} | "
                f"{figures['latency'][largest]['p50_ms']:.3f} |"
            )
    lines += ["", "INT8 / fp32 p50 latency (below 1: INT8 faster):", ""]
    for runtime, pairs in int8_ratios.items():
        for pair, ratios in pairs.items():
            shown = ", ".join(f"{batch} {ratio:.2f}x" for batch, ratio in ratios.items())
            lines.append(f"- {runtime}, {pair.replace('_vs_', ' / ')}: {shown}")
    return lines + [""]


def uncertainty_section(results: dict, max_drop: float) -> list[str]:
    """Every drop with its paired interval, and what this test split can resolve."""
    compared = {name: r for name, r in results.items() if "drop_interval" in r}
    if not compared:
        return []
    any_interval = next(iter(compared.values()))["drop_interval"]
    images, confidence = any_interval["images"], any_interval["confidence"]
    resolvable = smallest_resolvable_drop(images, confidence)
    lines = [
        "## Uncertainty",
        "",
        f"Accuracy drop against the fp32 teacher on the same {images} test images, paired "
        f"score interval (Tango; {confidence:.0%} two-sided and one-sided upper bound):",
        "",
        "| candidate | drop pt | interval pt | upper bound pt | test images to pass the gate |",
        "|---|---|---|---|---|",
    ]
    for name, result in compared.items():
        interval = result["drop_interval"]
        needed = images_needed(interval, max_drop)
        verdict = (
            "passes now"
            if interval["upper_one_sided"] <= max_drop + 1e-12
            else ("none (the drop itself exceeds it)" if needed is None else f"{needed}")
        )
        lines.append(
            f"| {name} | {interval['drop'] * 100:.2f} | [{interval['lower'] * 100:.2f}, "
            f"{interval['upper'] * 100:.2f}] | {interval['upper_one_sided'] * 100:.2f} | {verdict} |"
        )
    lines += [
        "",
        f"Resolving power: with {images} images the smallest drop this split can tell apart from "
        f"zero at {confidence:.0%} is {resolvable * 100:.2f} pt ({round(resolvable * images)} "
        f"images); the gate allows {max_drop * 100:.2f} pt. The last column: images needed for a "
        "candidate's upper bound to fall within the gate if its drop and discordance held.",
        "",
    ]
    return lines


def decision_section(results: dict, decision: dict) -> list[str]:
    """Which split decided what: every candidate's gate result on validation (the choice), and
    the chosen one's on test (the confirmation, read once)."""
    lines = [
        "## Decision",
        "",
        decision["summary"],
        "",
        f"Chosen on the **{decision['selection_split']}** split (gate and objective "
        f"'{decision['objective']}'); the test split only confirms the chosen candidate.",
        "",
        "| candidate | val accuracy | val drop pt (upper bound) | gate on val | test accuracy | gate on test |",
        "|---|---|---|---|---|---|",
    ]
    for name, failures in decision["selection_failures"].items():
        selection, interval = (
            results[name]["selection"],
            results[name]["selection"]["drop_interval"],
        )
        on_test = "not used (not chosen)"
        if name == decision["chosen"]:
            on_test = (
                "passes" if not decision["test_failures"] else _missed(decision["test_failures"])
            )
        lines.append(
            f"| {name} | {selection['accuracy']:.4f} | {interval['drop'] * 100:.2f} "
            f"({interval['upper_one_sided'] * 100:.2f}) | "
            f"{'passes' if not failures else _missed(failures)} | {results[name]['accuracy']:.4f} "
            f"| {on_test} |"
        )
    return lines + [""]


def _missed(failures: dict[str, float]) -> str:
    return "misses " + ", ".join(failures)


def write_report(
    results: dict,
    decision: dict,
    int8_ratios: dict,
    max_drop: float,
    notes: list[str],
    target: Path,
) -> None:
    runtime = next(iter(results.values()))["runtime"]
    lines = [
        "# Compression report",
        "",
        f"Figures of the main table: {runtime}, one process, the held-out test split.",
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
        *uncertainty_section(results, max_drop),
        *runtime_table(results, int8_ratios),
        *decision_section(results, decision),
    ]
    lines += [f"- {note}" for note in notes]
    atomic.write_text(target, "\n".join(lines) + "\n")


def write_tables(
    results: dict[str, dict],
    confusion_source: str,
    classes: list[str],
    candidates_csv: Path,
    confusion_csv: Path,
) -> None:
    """One row per candidate (accuracy, size, latency), and the confusion matrix of the shipped
    model as (actual, predicted) rows, for DVC's scatter and confusion templates."""
    atomic.write_csv(
        candidates_csv,
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
    atomic.write_csv(
        confusion_csv,
        [
            {"actual": classes[a], "predicted": classes[p]}
            for a, row in enumerate(results[confusion_source]["confusion_matrix"])
            for p, count in enumerate(row)
            for _ in range(count)
        ],
    )
