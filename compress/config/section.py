"""The base of every params section (unknown keys are errors) and the model reference syntax
`teacher.arch` and `distill.student` share."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# `resnet18` / `torchvision:resnet18`, `timm:<name>`, or `package.module:factory`
MODEL_REFERENCE = re.compile(r"^((torchvision|timm):)?[\w.\-]+$|^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def model_reference(value: str, param: str) -> str:
    if not MODEL_REFERENCE.match(value):
        raise ValueError(
            f"{param} '{value}' is not a model reference: use a torchvision name (resnet18 or "
            "torchvision:resnet18), timm:<name> (e.g. timm:mobilenetv3_small_100), or "
            "package.module:factory for your own function returning an nn.Module"
        )
    return value


StemAdaptation = Literal["auto", "never"]
# which weights a training run hands on: the final ones of its whole cosine schedule, or those of
# the epoch with the best validation accuracy (noisy when validation is small and saturated)
KeptWeights = Literal["last", "best"]


def no_patience_with_last(patience: int | None, weights: KeptWeights, section: str) -> None:
    """Early stopping reads validation to cut the schedule short; `weights: last` exists to
    keep validation out of that choice, so the two together are a contradiction."""
    if weights == "last" and patience is not None:
        raise ValueError(
            f"{section}.patience stops training by validation accuracy, but {section}.weights: "
            f"last keeps the final weights of the whole schedule; set {section}.patience: null, "
            f"or {section}.weights: best"
        )
