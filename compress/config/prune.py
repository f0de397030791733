"""The `prune:` section: the criterion, the MACs target and the fine-tuning rounds."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from compress.config.section import Section

Importance = Literal["l1", "l2", "bn_scale", "taylor", "random"]


class PruneParams(Section):
    section: ClassVar[str] = "prune"

    importance: Importance = "l1"
    target_ratio: float = Field(0.7, gt=0.0, lt=1.0)
    rounds: int = Field(4, ge=1, le=100)
    finetune_epochs: int = Field(10, ge=0, le=1000)
    patience: int | None = Field(3, ge=1, le=1000)  # early stopping of each round; null: off
    lr_scale: float = Field(1.0, gt=0.0, le=10.0)
    global_pruning: bool = False
    max_layer_ratio: float = Field(0.8, gt=0.0, le=1.0)
    round_to: int | None = Field(8, ge=1, le=256)
    taylor_batches: int = Field(4, ge=1, le=1000)
    # also run the same rounds from the same start fine-tuned on labels alone: what the
    # distillation loss adds to the recovery, in metrics/prune.json
    control: bool = True
    seed: int = 0
