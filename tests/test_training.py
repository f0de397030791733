"""The shared loop: its learning-rate schedule (linear warm-up, then cosine decay) and early
stopping on the validation split."""

import pytest
import torch

from compress.config.data import AugmentParams
from compress.config.distill import DistillParams
from compress.config.teacher import TeacherParams
from compress.core.artifacts import Artifacts
from compress.data.loaders import eval_loader, load_info, make_loader, training_dataset
from compress.models.builders import build_model
from compress.train.loop import (
    Schedule,
    accuracy,
    cross_entropy_objective,
    fit,
    seed_everything,
    warmup_cosine_schedule,
)

SHIFTS = AugmentParams(crop_padding=1, horizontal_flip=False)


def _learning_rates(total_steps: int, warmup_steps: int, lr: float = 0.1) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = warmup_cosine_schedule(optimizer, total_steps, warmup_steps)
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_rises_linearly_then_cosine_decays_to_zero() -> None:
    rates = _learning_rates(total_steps=100, warmup_steps=10)
    assert rates[0] == pytest.approx(0.001)  # 1 % of lr
    assert all(a < b for a, b in zip(rates[:10], rates[1:11], strict=True))
    assert max(rates) == pytest.approx(0.1) and rates.index(max(rates)) == 10
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))
    assert rates[-1] < 0.001


def test_no_warmup_starts_at_full_rate() -> None:
    rates = _learning_rates(total_steps=50, warmup_steps=0)
    assert rates[0] == pytest.approx(0.1)
    assert rates[25] == pytest.approx(0.05, rel=0.05)


def test_early_stopping_keeps_the_best_weights_and_stops_within_patience(
    prepared_artifacts: Artifacts,
) -> None:
    """A tiny CNN at a high rate saturates the validation split early: training stops
    `patience` epochs after its last strictly better epoch (at most patience + 1 after the best
    one), and hands back the weights of the best epoch, measured again here."""
    info = load_info(prepared_artifacts.prepared_dir)
    seed_everything(0)
    model = build_model("tests.factories:tiny_cnn", info.num_classes, info.channels, 8)
    train = make_loader(training_dataset(info, SHIFTS, prepared_artifacts.prepared_dir), 64, True)
    val = eval_loader("val", info, prepared_artifacts.prepared_dir)
    schedule = Schedule(epochs=40, lr=0.2, weight_decay=5e-4, patience=2)
    result = fit(model, cross_entropy_objective, train, val, schedule, "early")
    epochs_run = len(result.history)
    assert epochs_run < 40
    assert epochs_run - result.best_epoch <= schedule.patience + 1
    scores = [row["val_accuracy"] for row in result.history]
    assert result.best_val_accuracy == max(scores) == accuracy(model, val)
    assert max(scores[-schedule.patience :]) <= max(scores[: -schedule.patience])


def test_last_weights_are_the_final_epochs_even_when_an_earlier_one_scored_higher(
    prepared_artifacts: Artifacts,
) -> None:
    """`weights: last` hands on the final weights: the model measured after training scores
    what the last epoch scored, not the best epoch (validation chooses no epoch)."""
    info = load_info(prepared_artifacts.prepared_dir)
    seed_everything(0)
    model = build_model("tests.factories:tiny_cnn", info.num_classes, info.channels, 8)
    train = make_loader(training_dataset(info, SHIFTS, prepared_artifacts.prepared_dir), 64, True)
    val = eval_loader("val", info, prepared_artifacts.prepared_dir)
    schedule = Schedule(epochs=6, lr=0.2, weight_decay=5e-4, weights="last")
    result = fit(model, cross_entropy_objective, train, val, schedule, "last")
    scores = [row["val_accuracy"] for row in result.history]
    assert len(scores) == 6 and result.best_epoch == 6
    assert accuracy(model, val) == scores[-1] == result.best_val_accuracy


@pytest.mark.parametrize("section", ["teacher", "distill"])
def test_patience_with_last_weights_is_refused_naming_both_settings(section: str) -> None:
    params = {"teacher": TeacherParams, "distill": DistillParams}[section]
    with pytest.raises(ValueError, match=rf"{section}\.patience.*{section}\.weights: best"):
        params(patience=3, weights="last")
    assert params(patience=3, weights="best").patience == 3
