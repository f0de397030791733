"""Pruning in rounds: equal steps toward a MACs target, each followed by fine-tuning (with the
distillation loss, or labels alone for the control), one row of figures per round."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass

from torch import nn
from torch.utils.data import DataLoader, Dataset

from compress.compression.pruning import MacsPruner
from compress.config.distill import DistillParams
from compress.config.prune import PruneParams
from compress.data.loaders import DatasetInfo, make_loader
from compress.models.builders import count_macs_params
from compress.train.distillation import distillation_objective
from compress.train.loop import (
    Compute,
    FitResult,
    Schedule,
    accuracy,
    cross_entropy_objective,
    fit,
)

log = logging.getLogger(__name__)


def unpruned_row(student: nn.Module, info: DatasetInfo, val_accuracy: float) -> dict:
    """Round 0 of the rounds table: the starting student as it came, with its validation
    accuracy (measured when it was chosen)."""
    macs, param_count = count_macs_params(student, info.input_shape)
    return {
        "round": 0,
        "macs": macs,
        "params": param_count,
        "val_accuracy_pruned": val_accuracy,
        "val_accuracy_finetuned": val_accuracy,
    }


@dataclass(frozen=True)
class FineTuning:
    """What every round's fine-tuning shares: the teacher and its loss (or labels alone), the
    data and where it trains."""

    teacher: nn.Module | None  # None: labels alone (the pruning control)
    distill: DistillParams
    train_set: Dataset
    val_loader: DataLoader
    compute: Compute

    def run(
        self, student: nn.Module, info: DatasetInfo, schedule: Schedule, seed: int, name: str
    ) -> FitResult:
        loader = make_loader(
            self.train_set, self.distill.batch_size, True, seed, self.compute.loader_workers
        )
        objective = (
            nullcontext(cross_entropy_objective)
            if self.teacher is None
            else distillation_objective(self.teacher, student, info.input_shape, self.distill)
        )
        with objective as objective:
            return fit(student, objective, loader, self.val_loader, schedule, name, self.compute)


def prune_in_rounds(
    student: nn.Module,
    pruner: MacsPruner,
    unpruned: dict,
    params: PruneParams,
    info: DatasetInfo,
    fine_tuning: FineTuning,
) -> list[dict]:
    """`prune.rounds` equal steps toward the MACs target, each followed by distillation
    fine-tuning; one row per round after the `unpruned` one."""
    base_macs, rows = unpruned["macs"], [unpruned]
    distill = fine_tuning.distill
    schedule = Schedule(
        params.finetune_epochs,
        distill.lr * params.lr_scale,
        distill.weight_decay,
        patience=params.patience,
    )
    for round_index in range(1, params.rounds + 1):
        pruner.prune_to(base_macs * (1 - params.target_ratio * round_index / params.rounds))
        pruned_val = accuracy(student, fine_tuning.val_loader)
        name, seed = f"prune round {round_index}", params.seed + round_index
        result = fine_tuning.run(student, info, schedule, seed, name)
        macs, param_count = count_macs_params(student, info.input_shape)
        rows.append(
            {
                "round": round_index,
                "macs": macs,
                "params": param_count,
                "val_accuracy_pruned": pruned_val,
                "val_accuracy_finetuned": result.best_val_accuracy,
            }
        )
        log.info(
            "Round %d/%d: %d MACs (%.1f%%), %d params, val acc %.4f pruned -> %.4f fine-tuned",
            round_index,
            params.rounds,
            macs,
            100 * macs / base_macs,
            param_count,
            pruned_val,
            result.best_val_accuracy,
        )
    return rows
