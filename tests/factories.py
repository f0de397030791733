"""Model factories as a team writes them in its own code base (`package.module:factory`), used
by the tests through `distill.student: tests.factories:tiny_cnn`."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Two convolution blocks and a linear head: small, prunable, quantizable."""

    def __init__(self, num_classes: int, in_channels: int, width: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def tiny_cnn(num_classes: int, in_channels: int, width: int = 16) -> nn.Module:
    return TinyCNN(num_classes, in_channels, width)


def not_a_model(num_classes: int, in_channels: int) -> dict:
    return {"num_classes": num_classes}


def bare_sequential(num_classes: int, in_channels: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


class ConvMLP(nn.Module):
    """One convolution, then a batch-normalised MLP on a 4x4 grid of its features: learns
    digits in a few epochs (the global pooling of TinyCNN needs many), for the data-parallel
    comparison."""

    def __init__(self, num_classes: int, in_channels: int, hidden: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(16 * 16, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def conv_mlp(num_classes: int, in_channels: int, hidden: int = 128) -> nn.Module:
    return ConvMLP(num_classes, in_channels, hidden)
