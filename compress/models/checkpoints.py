"""Checkpoints: plain dicts of tensors and primitives, so that they load with
`torch.load(..., weights_only=True)`; the architecture, input shape and pruning history travel
with the weights, so a fresh process rebuilds the model (even a pruned one) from the file alone.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from compress.core import atomic
from compress.core.errors import PipelineError
from compress.models.builders import build_model, classifier_layer, first_conv


def write_torch_file(payload: Any, path: Path) -> None:
    """`torch.save(payload, path)` whose failed write is an OSError with its errno. torch.save
    writes through its own C++ stream and reports a full disk as a RuntimeError without one,
    which the errno table (`compress.runtime.errors`) cannot sort; serialized into memory and
    written with Python's file I/O, a full disk is ENOSPC (exit 75, retried). The bytes (the
    file's size) are held in memory until written."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.write_bytes(buffer.getbuffer())


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    arch: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    **extra: Any,
) -> None:
    payload = {
        "arch": arch,
        "num_classes": num_classes,
        "input_shape": list(input_shape),
        "state_dict": model.state_dict(),
        **extra,
    }
    atomic.write_with(path, lambda tmp: write_torch_file(payload, tmp))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely; a bare state dict is accepted and wrapped."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(
            f"Checkpoint '{path}' not found; check the path or run the stage that makes it."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise PipelineError(
            f"Checkpoint '{path}' cannot be loaded safely ({error.__class__.__name__}: "
            f"{str(error).splitlines()[0][:200]}). It must be a state dict or a dict of tensors saved "
            "with torch.save (whole pickled modules are refused); re-save or re-create it."
        ) from error
    if (
        isinstance(payload, dict)
        and "state_dict" not in payload
        and all(isinstance(v, torch.Tensor) for v in payload.values())
    ):
        payload = {"state_dict": payload}
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise PipelineError(f"Checkpoint '{path}' holds no state dict; save `model.state_dict()`.")
    return payload


def load_weights(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path, arch: str
) -> None:
    """load_state_dict with an error that names the file and what does not match."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"{label} {items[:3]}{' ...' if len(items) > 3 else ''}"
            for label, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches (file vs model)", mismatched),
            )
            if items
        ]
        raise PipelineError(
            f"Checkpoint '{source}' does not fit a '{arch}' for this data: {'; '.join(parts)}. "
            "Check the architecture name, the number of classes and the input channels in params.yaml."
        )
    model.load_state_dict(state_dict)


ARCHITECTURE_KEYS = ("arch_kwargs", "adapt_stem", "pruning_history")


def architecture(payload: dict[str, Any]) -> dict[str, Any]:
    """What rebuilds a checkpoint's model besides its reference: constructor arguments, stem
    choice and pruning history, to pass on when a later stage saves the model again."""
    return {key: payload[key] for key in ARCHITECTURE_KEYS if key in payload}


def rebuild_architecture(payload: dict[str, Any], path: str | Path) -> nn.Module:
    """A fresh model of the checkpoint's architecture, pruned as it was by replaying its pruning
    history; the weights are not loaded yet."""
    arch = payload.get("arch")
    if not arch or "input_shape" not in payload:
        raise PipelineError(f"Checkpoint '{path}' lacks its architecture and input shape metadata.")
    channels, image_size, _ = (int(value) for value in payload["input_shape"])
    model = build_model(
        arch,
        int(payload["num_classes"]),
        channels,
        image_size,
        kwargs=payload.get("arch_kwargs"),
        stem=payload.get("adapt_stem", "auto"),
    )
    if payload.get("pruning_history"):
        replay_pruning(model, (channels, image_size, image_size), payload["pruning_history"])
    return model


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by save_checkpoint, in eval mode, with its payload."""
    payload = read_checkpoint(path)
    return model_from_payload(payload, path), payload


def model_from_payload(payload: dict[str, Any], path: str | Path) -> nn.Module:
    """The checkpoint's model with its weights, in eval mode."""
    model = rebuild_architecture(payload, path)
    load_weights(model, payload["state_dict"], path, payload["arch"])
    return model.eval()


def load_warm_start(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    source: Path,
    arch: str,
    num_classes: int,
) -> list[str]:
    """Start a student from weights made for another task (e.g. ImageNet weights a team has):
    the classifier is re-initialised when the class count differs, the first convolution
    summed or spread over its input channels when only their count differs (re-initialised
    when its kernel differs too, as with a small-image stem); anything else must fit, or the
    error names each key and shape. Returns what was adapted, for the log."""
    expected = model.state_dict()
    head = classifier_layer(model, num_classes)
    head_keys = {
        f"{name}.{k}" for name, m in model.named_modules() if m is head for k in ("weight", "bias")
    }
    conv = first_conv(model)
    conv_key = next(f"{name}.weight" for name, m in model.named_modules() if m is conv)
    adapted, merged = [], dict(state_dict)
    for key in list(merged):
        if key not in expected or merged[key].shape == expected[key].shape:
            continue
        if key in head_keys:
            merged[key] = expected[key]
            adapted.append(f"{key} re-initialised: {tuple(state_dict[key].shape)} in the file")
        elif key == conv_key:
            merged[key] = _adapt_first_conv(state_dict[key], expected[key])
            how = "re-initialised" if merged[key] is expected[key] else "adapted"
            adapted.append(f"{key} {how}: {tuple(state_dict[key].shape)} in the file")
    load_weights(model, merged, source, arch)
    return adapted


def _adapt_first_conv(weights: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Same kernel: RGB -> gray sums the colour filters (a gray image is R = G = B), gray -> RGB
    spreads them; another kernel size or width keeps the fresh initialisation."""
    if weights.shape[0] != target.shape[0] or weights.shape[2:] != target.shape[2:]:
        return target
    if target.shape[1] == 1:
        return weights.sum(dim=1, keepdim=True)
    return weights.mean(dim=1, keepdim=True).repeat(1, target.shape[1], 1, 1)


def replay_pruning(
    model: nn.Module, input_shape: tuple[int, int, int], history: list[list]
) -> None:
    """Remove the same channels from a fresh model of the same architecture."""
    with torch.enable_grad():  # DepGraph traces through autograd
        graph = tp.DependencyGraph().build_dependency(
            model, example_inputs=torch.zeros(1, *input_shape)
        )
    graph.load_pruning_history([(name, is_out, indices) for name, is_out, indices in history])
