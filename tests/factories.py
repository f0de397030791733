"""Model factories as a team writes them in its own code base (`package.module:factory`), used
by the tests through `distill.student: tests.factories:tiny_cnn`."""

from __future__ import annotations

from torch import nn


def tiny_cnn(num_classes: int, in_channels: int, width: int = 16) -> nn.Module:
    """Two convolution blocks and a linear head: small, prunable, quantizable."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


def not_a_model(num_classes: int, in_channels: int) -> dict:
    return {"num_classes": num_classes}
