"""The one training loop: teacher training, distillation, pruning fine-tuning and QAT all call
`fit` with their own objective, so optimisation, best-checkpoint selection and logging are
written once."""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import accuracy_score
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from compress.config.compute import ComputeParams
from compress.config.section import KeptWeights
from compress.core.distributed import (
    average_gradients,
    from_rank_zero,
    join_process_group,
    sum_across_ranks,
)
from compress.core.errors import PipelineError

log = logging.getLogger(__name__)

# objective(model, images, labels, *extras) -> scalar loss, where extras are whatever else the
# batch carries (a teacher's stored outputs); it runs the forward pass itself so that
# distillation can also query a teacher or read intermediate features.
Objective = Callable[..., torch.Tensor]


def cross_entropy_objective(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *extras: torch.Tensor
) -> torch.Tensor:
    """Hard labels only: a batch's teacher outputs, if it carries any, are ignored."""
    return F.cross_entropy(model(images), labels)


class TrainableObjective(nn.Module):
    """An objective with parts of its own to train (a feature adapter: its parameters that
    require gradients go to the optimizer) and a schedule that follows the epochs."""

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch (1-based) of `epochs`."""


@dataclass(frozen=True)
class Schedule:
    """One training run's length and optimizer settings, from its params section."""

    epochs: int
    lr: float
    weight_decay: float
    warmup_epochs: int = 0  # linear warm-up from 1 % of lr, then cosine decay
    max_grad_norm: float | None = None  # gradient norm clipping, off by default
    patience: int | None = None  # stop after this many epochs without a better validation score
    weights: KeptWeights = "best"  # last: the final weights, validation chooses no epoch


def seed_everything(seed: int) -> None:
    """Same seed, same data order, same initial weights, same result."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass(frozen=True)
class Compute:
    """Where training runs and how many loader processes feed it (`compute:` in params.yaml)."""

    device: str = "cpu"
    loader_workers: int = 0
    rank: int = 0
    world: int = 1  # processes training together (DDP under torchrun)


CPU = Compute()


def resolve_compute(params: ComputeParams) -> Compute:
    """The device, loader workers, and this process's place among those torchrun started."""
    device = resolve_device(params.device)
    rank, world = join_process_group(device)
    return Compute(device, params.loader_workers, rank, world)


def resolve_device(name: str) -> str:
    """`compute.device`: `auto` picks CUDA when a GPU is visible, else the CPU."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError(
            "compute.device is 'cuda' but torch sees no CUDA device on this machine; "
            "set compute.device to 'auto' or 'cpu'."
        )
    return name


@dataclass
class FitResult:
    best_epoch: int
    best_val_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: linear warm-up, then cosine decay to zero over the remaining steps."""
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(total_steps - warmup_steps, 1)
    )
    if warmup_steps == 0:
        return cosine
    warmup = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=0.01, total_iters=warmup_steps
    )
    return torch.optim.lr_scheduler.SequentialLR(
        optimizer, [warmup, cosine], milestones=[warmup_steps]
    )


def sgd_with_schedule(
    parameters: list[nn.Parameter], schedule: Schedule, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with Nesterov momentum, its rate following `warmup_cosine_schedule` step by step."""
    optimizer = torch.optim.SGD(
        parameters,
        lr=schedule.lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=schedule.weight_decay,
    )
    epochs, warmup = schedule.epochs, min(schedule.warmup_epochs, schedule.epochs)
    scheduler = warmup_cosine_schedule(
        optimizer, epochs * steps_per_epoch, warmup * steps_per_epoch
    )
    return optimizer, scheduler


def last_row(history: list[dict[str, float]]) -> tuple[float, float]:
    return history[-1]["train_loss"], history[-1]["val_accuracy"]


def fit(
    model: nn.Module,
    objective: Objective,
    train_loader: DataLoader,
    val_loader: DataLoader,
    schedule: Schedule,
    name: str,
    compute: Compute = CPU,
) -> FitResult:
    """SGD with Nesterov momentum and a cosine schedule after `warmup_epochs` of linear warm-up
    (from 1 % of `lr`: a MobileNet trained from scratch at full rate can stall for many epochs or
    land several points lower, depending on the CPU's rounding); restores the weights of the
    epoch with the best validation accuracy (epoch 0 = the weights as given; ties go to the later
    epoch, since a small validation set saturates long before the schedule ends), or with
    `weights: last` the final weights, whose learning rate has decayed to zero. With
    `patience`, stops once that many epochs passed without a strictly better validation accuracy
    (the best weights are kept: at most patience + 1 epochs after them). Trains on `device` and
    hands the model back on the CPU, where export and benchmarks run. `max_grad_norm` clips the
    gradient norm: QAT of a network whose batch norms are folded into its weights has no
    normalisation left and diverges without it."""
    epochs = schedule.epochs
    device = compute.device
    model.to(device)
    trainable = isinstance(objective, TrainableObjective)
    if isinstance(objective, nn.Module):
        objective.to(device)
    extra_parameters = [p for p in objective.parameters() if p.requires_grad] if trainable else []
    parameters = [p for p in model.parameters() if p.requires_grad] + extra_parameters
    trained = data_parallel(model, compute)
    optimizer, scheduler = sgd_with_schedule(parameters, schedule, len(train_loader))
    best_accuracy = accuracy(model, val_loader)
    best_state, best_epoch, last_gain = copy.deepcopy(model.state_dict()), 0, 0
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        if trainable:
            objective.set_epoch(epoch, epochs)
        model.train()
        total_loss, seen = 0.0, 0
        for images, labels, *extras in train_loader:
            extras = [extra.to(device) for extra in extras]
            loss = objective(trained, images.to(device), labels.to(device), *extras)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(extra_parameters)
            if schedule.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, schedule.max_grad_norm)
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(labels)
            seen += len(labels)
        total_loss, seen = sum_across_ranks([total_loss, seen])
        val_accuracy = from_rank_zero([accuracy(model, val_loader)])[0]
        history.append(
            {"epoch": epoch, "train_loss": total_loss / seen, "val_accuracy": val_accuracy}
        )
        log.info(
            "[%s] epoch %d/%d  loss %.4f  val acc %.4f", name, epoch, epochs, *last_row(history)
        )
        if val_accuracy > best_accuracy:
            last_gain = epoch
        if val_accuracy >= best_accuracy:  # ties go to the later, lower-learning-rate epoch
            best_accuracy, best_epoch = val_accuracy, epoch
            best_state = copy.deepcopy(model.state_dict())
        if schedule.patience is not None and epoch - last_gain >= schedule.patience:
            log.info(
                "[%s] no better validation accuracy for %d epochs: stopped", name, epoch - last_gain
            )
            break
    if schedule.weights == "last" and history:
        best_epoch, best_accuracy = len(history), history[-1]["val_accuracy"]
    else:
        model.load_state_dict(best_state)
    model.eval().to("cpu")
    if isinstance(objective, nn.Module):
        objective.to("cpu")
    return FitResult(best_epoch, best_accuracy, history, time.perf_counter() - started)


def data_parallel(model: nn.Module, compute: Compute) -> nn.Module:
    """The model wrapped in DistributedDataParallel when several processes train it: its
    construction broadcasts rank 0's weights, and each backward pass averages the gradients."""
    if compute.world == 1:
        return model
    device_ids = [torch.cuda.current_device()] if compute.device == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels over a whole loader, in eval mode, on the model's device."""
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device  # an ONNX teacher has none: CPU
    logits, labels = [], []
    for images, batch_labels in loader:
        logits.append(model(images.to(device)).cpu())
        labels.append(batch_labels)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    logits, labels = predict(model, loader)
    return float(accuracy_score(labels, logits.argmax(axis=1)))
