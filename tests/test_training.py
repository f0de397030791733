"""The shared loop's learning-rate schedule: linear warm-up, then cosine decay."""

import pytest
import torch

from compress.train.loop import warmup_cosine_schedule


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
