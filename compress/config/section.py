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
