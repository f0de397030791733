"""Figures that compare candidates: against the reference (ratios, paired accuracy drops with
their intervals, overall and per class) and INT8 models against their fp32 sources per runtime."""

from __future__ import annotations

import numpy as np

from compress.core.artifacts import REFERENCE_CANDIDATE
from compress.evaluation.uncertainty import lower_bound, paired_drop_interval

REPORT_CONFIDENCE = 0.95  # intervals in the report when the gate uses the point rule


def add_drop_intervals(
    results: dict[str, dict],
    reference_name: str,
    correct: dict[str, np.ndarray],
    labels: np.ndarray,
    classes: list[str],
    gate_confidence: float,
    class_false_alarm: float,
) -> None:
    """Each candidate's accuracy drop against the reference with its paired interval, overall
    and per class, at the gate's confidence (REPORT_CONFIDENCE under the point rule); the
    reference itself has none (its drop is 0 by definition). Each class also gets the
    one-sided lower bound the gate's class rule reads, at 1 - class_false_alarm / classes."""
    confidence = gate_confidence or REPORT_CONFIDENCE
    class_confidence = 1 - (class_false_alarm or 1 - REPORT_CONFIDENCE) / len(classes)
    reference = correct[reference_name]
    for name, result in results.items():
        if name == reference_name:
            continue
        result["drop_interval"] = paired_drop_interval(reference, correct[name], confidence)
        result["class_drop_intervals"] = {
            label: class_interval(
                reference[labels == index],
                correct[name][labels == index],
                confidence,
                class_confidence,
            )
            for index, label in enumerate(classes)
        }


def class_interval(
    reference: np.ndarray, candidate: np.ndarray, confidence: float, lower_confidence: float
) -> dict[str, float]:
    interval = paired_drop_interval(reference, candidate, confidence)
    kept = {key: interval[key] for key in ("drop", "lower", "upper", "upper_one_sided")}
    return kept | {
        "lower_one_sided": lower_bound(interval, lower_confidence),
        "lower_confidence": lower_confidence,
    }


def versus(result: dict, reference: dict, largest_batch: int) -> dict[str, float]:
    """A candidate against the reference: x smaller, x faster, accuracy and calibration change."""
    largest = f"batch_{largest_batch}"
    return {
        "size_x_smaller": round(reference["size_bytes"] / result["size_bytes"], 3),
        "latency_batch_1_x_faster": round(
            reference["latency"]["batch_1"]["p50_ms"] / result["latency"]["batch_1"]["p50_ms"], 3
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


INT8_PAIRS = {"quantized": "pruned", "teacher_int8": REFERENCE_CANDIDATE}


def int8_vs_fp32(results: dict[str, dict], runtimes: list[str]) -> dict[str, dict]:
    """p50 latency of each INT8 model over its fp32 source, per runtime and batch size (below 1
    is faster): the same INT8 file can win in one runtime and lose in another."""
    return {
        runtime: {
            f"{int8}_vs_{fp32}": {
                batch: round(
                    figures["p50_ms"]
                    / results[fp32]["runtimes"][runtime]["latency"][batch]["p50_ms"],
                    4,
                )
                for batch, figures in results[int8]["runtimes"][runtime]["latency"].items()
            }
            for int8, fp32 in INT8_PAIRS.items()
            if int8 in results and fp32 in results
        }
        for runtime in runtimes
    }
