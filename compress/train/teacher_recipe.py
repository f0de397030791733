"""The teacher's training objective, as torchvision's classification reference recipe builds it
(`--label-smoothing`, `--mixup-alpha`, `--cutmix-alpha`): cross-entropy against labels smoothed
on request, on batches mixed by MixUp or CutMix (one of the two, drawn per batch, when both are
on). Mixing draws from torch's seeded generator, so a seeded run repeats exactly."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2

from compress.train.loop import Objective


def batch_mixer(mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> v2.Transform | None:
    """MixUp and/or CutMix of a batch into (images, soft labels); None when both are off."""
    mixes = [v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha > 0 else []
    mixes += [v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha > 0 else []
    return v2.RandomChoice(mixes) if mixes else None


def teacher_objective(
    label_smoothing: float, mixup_alpha: float, cutmix_alpha: float, num_classes: int
) -> Objective:
    mixer = batch_mixer(mixup_alpha, cutmix_alpha, num_classes)

    def objective(
        model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *extras: torch.Tensor
    ) -> torch.Tensor:
        targets: torch.Tensor = labels
        if mixer is not None:
            images, targets = mixer(images, labels)
        return F.cross_entropy(model(images), targets, label_smoothing=label_smoothing)

    return objective
