"""Quality figures computed from logits, shared by every stage that reports them."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, recall_score


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
