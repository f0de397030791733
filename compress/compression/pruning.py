"""Structured pruning with Torch-Pruning's DepGraph: importance criteria by name, a pruner that
never touches the classifier's output layer, stepping to a MACs target, and the pruning history
that lets a fresh process rebuild the smaller architecture from a weights-only checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from compress.core.errors import PipelineError
from compress.models.builders import (
    classifier_layer,
    count_macs_params,
    output_positions,
    weight_macs,
)

IMPORTANCES: dict[str, Callable[[], tp.importance.Importance]] = {
    # mean |w| of each filter across its coupled group: the seeds' quick baseline
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    # |gamma| of the batch norm after each channel (network slimming)
    "bn_scale": lambda: tp.importance.BNScaleImportance(),
    # first-order Taylor: |gradient x weight|, needs gradients from a few training batches
    "taylor": lambda: tp.importance.GroupTaylorImportance(),
    # the control that shows whether a criterion matters
    "random": lambda: tp.importance.RandomImportance(),
}
NEEDS_GRADIENTS = {"taylor"}
FINE_STEPS = 200  # granularity of the per-layer ratio schedule the MACs target is stepped along


def get_importance(name: str) -> tp.importance.Importance:
    if name not in IMPORTANCES:
        raise PipelineError(f"Unknown prune.importance '{name}'; valid: {', '.join(IMPORTANCES)}.")
    return IMPORTANCES[name]()


class MacsPruner:
    """Removes channels step by step until the model's MACs reach each target.

    Every layer's channel ratio follows Torch-Pruning's linear schedule toward `max_layer_ratio`
    in FINE_STEPS small steps, so no layer ever loses more than `max_layer_ratio` of its channels.
    `round_to` keeps channel counts at multiples of the CPU's SIMD width: odd widths made
    ONNX Runtime slower than the unpruned model here despite half the MACs.
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, int, int],
        num_classes: int,
        importance: str,
        global_pruning: bool,
        max_layer_ratio: float,
        round_to: int | None = None,
        gradient_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] = (),
    ):
        self.model, self.input_shape = model, input_shape
        self.max_layer_ratio, self.round_to = max_layer_ratio, round_to
        self.importance_name = importance
        self.gradient_batches = list(gradient_batches)
        try:
            self.pruner = tp.pruner.BasePruner(
                model,
                torch.zeros(1, *input_shape),
                importance=get_importance(importance),
                global_pruning=global_pruning,
                pruning_ratio=max_layer_ratio,
                max_pruning_ratio=max_layer_ratio,
                iterative_steps=FINE_STEPS,
                round_to=round_to,
                ignored_layers=[classifier_layer(model, num_classes)],
            )
        except (ZeroDivisionError, RuntimeError, KeyError, ValueError) as error:
            raise PipelineError(
                f"Torch-Pruning cannot trace the channel dependencies of '{type(model).__name__}' "
                f"({error.__class__.__name__}: {error}); channel shuffles (ShuffleNet) are not supported. "
                "Distill into another student (distill.student), e.g. mobilenet_v3_small or resnet18."
            ) from error
        groups = list(
            self.pruner.DG.get_all_groups(
                ignored_layers=self.pruner.ignored_layers,
                root_module_types=self.pruner.root_module_types,
            )
        )
        if not groups:
            raise PipelineError(
                "Every prunable layer of the student is ignored: nothing can be pruned. Use a "
                "convolutional student (distill.student) or turn the prune stage off."
            )
        self.positions = output_positions(model, input_shape)

    def macs(self) -> int:
        return count_macs_params(self.model, self.input_shape)[0]

    def _accumulate_gradients(self) -> None:
        self.model.zero_grad(set_to_none=True)
        was_training = self.model.training
        self.model.eval()
        for images, labels in self.gradient_batches:
            F.cross_entropy(self.model(images), labels).backward()
        self.model.train(was_training)

    def prune_to(self, target_macs: float) -> int:
        """Step until MACs <= target; returns the MACs reached."""
        macs = self.macs()
        while macs > target_macs:
            if self.pruner.current_step >= FINE_STEPS:
                raise PipelineError(
                    f"Cannot reach {target_macs:,.0f} MACs: every layer is already at "
                    f"prune.max_layer_ratio. Raise prune.max_layer_ratio or lower prune.target_ratio."
                )
            if self.importance_name in NEEDS_GRADIENTS:
                self._accumulate_gradients()
            for group in self.pruner.step(interactive=True):
                capped = self._within_cap(group)
                if capped is not None:
                    capped.prune()
            # the exact count is a forward pass (57 of 128 s of a profiled ResNet-18 cut when
            # taken every step); the weights' own multiply-adds, a lower bound read from the channel
            # counts, say when it can be at the target, so the steps taken stay the same
            bound = weight_macs(self.positions)
            macs = self.macs() if bound <= target_macs else bound
        self.model.zero_grad(set_to_none=True)
        return macs

    def _within_cap(self, group):
        """Torch-Pruning checks the cap before a step, not after it (global mode and rounding
        can overshoot): trim the group's least important indices so the cap holds exactly."""
        dependency, indices = group[0]
        module, graph = dependency.target.module, self.pruner.DG
        if graph.is_out_channel_pruning_fn(dependency.handler):
            current, initial = graph.get_out_channels(module), self.pruner.layer_init_out_ch[module]
        else:
            current, initial = graph.get_in_channels(module), self.pruner.layer_init_in_ch[module]
        floor = math.ceil(initial * (1 - self.max_layer_ratio) - 1e-9)
        if self.round_to:
            floor = min(math.ceil(floor / self.round_to) * self.round_to, initial)
        allowed = current - max(floor, 1)
        if allowed <= 0:
            return None
        if len(indices) <= allowed:
            return group
        return graph.get_pruning_group(module, dependency.handler, list(indices[:allowed]))

    def history(self) -> list[list]:
        """Pruning history as plain lists of str/bool/int: loadable with weights_only=True."""
        return [
            [name, bool(is_out), [int(i) for i in indices]]
            for name, is_out, indices in self.pruner.pruning_history()
        ]
