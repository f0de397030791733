"""Quality figures computed from logits, shared by every stage that reports them."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, recall_score


def classification_metrics(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Accuracy and per-class accuracy (recall), via scikit-learn."""
    predictions = logits.argmax(axis=1)
    per_class = recall_score(
        labels, predictions, labels=list(range(len(classes))), average=None, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "per_class_accuracy": {
            name: float(value) for name, value in zip(classes, per_class, strict=True)
        },
    }


def teacher_agreement(logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """Share of samples where the model's top-1 class is the teacher's."""
    return float(np.mean(logits.argmax(axis=1) == teacher_logits.argmax(axis=1)))


def mean_kl_to_teacher(logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """Mean KL(p_teacher || p_model) at temperature 1, in nats."""
    log_p_teacher = log_softmax(teacher_logits.astype(np.float64), axis=1)
    log_p_model = log_softmax(logits.astype(np.float64), axis=1)
    return float(np.mean(np.sum(np.exp(log_p_teacher) * (log_p_teacher - log_p_model), axis=1)))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits.astype(np.float64), axis=1))


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> float:
    """ECE with equal-width confidence bins: sum over bins of |accuracy - confidence| x share."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def full_quality(
    logits: np.ndarray, labels: np.ndarray, teacher_logits: np.ndarray, classes: list[str]
) -> dict:
    """Everything the evaluation reports about predictions, from logits."""
    probabilities = softmax(logits)
    predictions = probabilities.argmax(axis=1)
    class_ids = list(range(len(classes)))
    return {
        **classification_metrics(logits, labels, classes),
        "macro_f1": float(
            f1_score(labels, predictions, labels=class_ids, average="macro", zero_division=0)
        ),
        "ece": expected_calibration_error(probabilities, labels),
        "nll": float(log_loss(labels, probabilities, labels=class_ids)),
        "teacher_agreement": teacher_agreement(logits, teacher_logits),
        "confusion_matrix": confusion_matrix(labels, predictions, labels=class_ids).tolist(),
    }
