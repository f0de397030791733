"""The evaluation's figures as PNG files: Pareto plots of the candidates, the per-layer INT8
sensitivity and the recipe search's trials."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

from compress.core import atomic

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
    """Test accuracy against a cost, with error bars from the paired interval of each
    candidate's drop against the teacher (clipped to [0, 100] %; none on the teacher), the Pareto frontier as a
    staircase through its candidates, and the gate's accuracy line."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        x, accuracy = cost_of(result, cost), result["accuracy"] * 100
        interval = result.get("drop_interval", {"drop": 0.0, "lower": 0.0, "upper": 0.0})
        lowest = max(accuracy - (interval["upper"] - interval["drop"]) * 100, 0.0)
        highest = min(accuracy + (interval["drop"] - interval["lower"]) * 100, 100.0)
        axes.errorbar(
            x,
            accuracy,
            yerr=[[accuracy - lowest], [highest - accuracy]],
            fmt="o",
            color="tab:red" if name == shipped else "tab:blue",
            capsize=3,
            zorder=3,
        )
        axes.annotate(name + (" (shipped)" if name == shipped else ""), (x, accuracy), fontsize=7)
    ordered = sorted(front, key=lambda n: cost_of(results[n], cost))
    costs = [cost_of(results[n], cost) for n in ordered]
    accuracies = [results[n]["accuracy"] * 100 for n in ordered]
    right_edge = max(cost_of(r, cost) for r in results.values()) * 1.5
    axes.step(
        costs + [right_edge],
        accuracies + accuracies[-1:],
        where="post",
        color="tab:green",
        linewidth=2,
        alpha=0.6,
        label="Pareto frontier",
        zorder=2,
    )
    axes.axhline(
        gate_accuracy * 100, color="tab:gray", linestyle="--", label="gate (max accuracy drop)"
    )
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_xlabel(label)
    axes.set_ylabel("test accuracy (%)")
    axes.set_ylim(top=100.5)
    axes.legend(loc="lower right")
    save_png(figure, out)


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
    axes.set_ylabel("validation accuracy (%)")  # what the search ranks trials on
    axes.set_ylim(top=100.5)
    axes.legend(loc="lower right")
    save_png(figure, out)
