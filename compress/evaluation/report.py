"""The evaluation's report: Pareto plots (PNG), the candidates and confusion tables DVC plots
read, and the Markdown report with the decision."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

from compress.core import atomic
from compress.evaluation.uncertainty import images_needed, smallest_resolvable_drop

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

COSTS = {"size": "ONNX size (MB)", "latency": "p50 latency at batch 1 (ms)"}


def save_png(figure: plt.Figure, out: Path) -> None:
    """Lay out, write atomically, and free the figure."""
    figure.tight_layout()
    atomic.write_with(out, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)


def cost_of(result: dict, cost: str) -> float:
    """The x axis of a Pareto plot: size in MB or p50 latency at batch 1 in ms."""
    return (
        result["size_bytes"] / 2**20 if cost == "size" else result["latency"]["batch_1"]["p50_ms"]
    )


def pareto_plot(
    results: dict[str, dict],
    cost: str,
    label: str,
    front: list[str],
    shipped: str | None,
    gate_accuracy: float,
    out: Path,
) -> None:
    """Accuracy (with the paired interval of its drop as error bars) against a cost, the
    Pareto frontier, and the gate's accuracy line."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        x, interval = cost_of(result, cost), result["drop_interval"]
        axes.errorbar(
            x,
            result["accuracy"] * 100,
            yerr=[
                [(interval["upper"] - interval["drop"]) * 100],
                [(interval["drop"] - interval["lower"]) * 100],
            ],
            fmt="o",
            color="tab:red" if name == shipped else "tab:blue",
            capsize=3,
            zorder=3,
        )
        axes.annotate(
            name + (" (shipped)" if name == shipped else ""),
            (x, result["accuracy"] * 100),
            fontsize=7,
        )
    ordered = sorted(front, key=lambda n: cost_of(results[n], cost))
    axes.step(
        [cost_of(results[n], cost) for n in ordered],
        [results[n]["accuracy"] * 100 for n in ordered],
        where="post",
        color="tab:green",
        label="Pareto frontier",
    )
    axes.axhline(
        gate_accuracy * 100, color="tab:gray", linestyle="--", label="gate (max accuracy drop)"
    )
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_xlabel(label)
    axes.set_ylabel("test accuracy (%)")
    axes.legend(loc="lower right")
    save_png(figure, out)


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
    any_interval = next(iter(results.values()))["drop_interval"]
    images, confidence = any_interval["images"], any_interval["confidence"]
    resolvable = smallest_resolvable_drop(images, confidence)
    lines = [
        "## Uncertainty",
        "",
        f"Accuracy drop against the fp32 teacher on the same {images} test images, paired "
        f"bootstrap ({confidence:.0%} two-sided interval and one-sided upper bound):",
        "",
        "| candidate | drop pt | interval pt | upper bound pt | test images to pass the gate |",
        "|---|---|---|---|---|",
    ]
    for name, result in results.items():
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
        "## Decision",
        "",
        decision["summary"],
        "",
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


def sensitivity_plot(rows: list[dict], out: Path) -> None:
    """Per layer measured by PTQ, most sensitive first: the validation accuracy its float copy
    recovers (and the KL it removes), and the bytes it would cost in float."""
    height = 1.5 + 0.18 * max(len(rows), 1)
    figure, (gain, cost) = plt.subplots(1, 2, figsize=(9, height), sharey=True)
    names = [row["layer"] for row in rows][::-1]
    gain.barh(names, [row["accuracy_recovered"] * 100 for row in rows][::-1], color="tab:blue")
    gain.set_xlabel("val accuracy recovered in float (pt)")
    kl = gain.twiny()
    kl.plot([row["kl_recovered"] for row in rows][::-1], names, "o", color="tab:orange", ms=3)
    kl.set_xlabel("KL to float outputs removed (dots)", color="tab:orange")
    cost.barh(names, [row["float_bytes"] / 1024 for row in rows][::-1], color="tab:gray")
    cost.set_xlabel("extra size in float (KiB)")
    gain.tick_params(axis="y", labelsize=6)
    if not rows:
        gain.set_title("no layer ranked: every layer INT8 met quantize.max_int8_drop")
    save_png(figure, out)


def trials_plot(
    rows: list[dict], cost_key: str, label: str, front: list[str], best: str | None, out: Path
) -> None:
    """The search's trials: accuracy against the objective's cost, those that meet the goals
    in blue, the others in gray, the Pareto front across trials and the best trial in red."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for row in rows:
        color = "tab:red" if row["trial"] == best else "tab:blue" if row["passes"] else "tab:gray"
        axes.plot(row[cost_key], row["accuracy"] * 100, "o", color=color, zorder=3)
        axes.annotate(str(row["trial"]), (row[cost_key], row["accuracy"] * 100), fontsize=7)
    ordered = sorted((r for r in rows if r["trial"] in front), key=lambda r: r[cost_key])
    axes.step(
        [r[cost_key] for r in ordered],
        [r["accuracy"] * 100 for r in ordered],
        where="post",
        color="tab:green",
        marker="o",  # a front of one trial is a point, not a line
        markersize=11,
        markerfacecolor="none",
        label="Pareto front across trials",
    )
    axes.set_xscale("log")  # fp32 and INT8 models differ by 10x and more
    axes.set_xlabel(label)
    axes.set_ylabel("test accuracy (%)")
    axes.legend(loc="lower right")
    save_png(figure, out)
