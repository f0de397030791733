"""Classifiers from a model reference (torchvision, timm or a user's factory), adapted to small
inputs: building, counting and folding."""

from __future__ import annotations

import difflib
import importlib
import math

import torch
import torch_pruning as tp
import torchvision
from torch import nn

from compress.core.errors import PipelineError

SMALL_IMAGE = 64  # at or below this side length the stem keeps full resolution


def available_archs() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def split_reference(reference: str) -> tuple[str, str]:
    """`resnet18` / `torchvision:resnet18`, `timm:<name>`, or `package.module:factory`."""
    prefix, colon, name = reference.partition(":")
    if not colon:
        return "torchvision", reference
    return (prefix, name) if prefix in ("torchvision", "timm") else ("factory", reference)


def _torchvision(name: str, num_classes: int, channels: int, kwargs: dict, param: str):
    if name not in available_archs():
        close = difflib.get_close_matches(name, available_archs(), n=3)
        raise PipelineError(
            f"Unknown architecture {param}='{name}'."
            + (f" Did you mean {', '.join(close)}?" if close else "")
            + f" Valid torchvision classification models: {', '.join(available_archs())}; "
            "or use timm:<name> or package.module:factory."
        )
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


def _timm(name: str, num_classes: int, channels: int, kwargs: dict, param: str):
    import timm  # here, not at the top: a second per stage process that uses no timm model

    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise PipelineError(
            f"Unknown timm model {param}='timm:{name}'."
            + (f" Did you mean {', '.join(f'timm:{c}' for c in close)}?" if close else "")
            + " `python -c \"import timm; print(timm.list_models('*mobile*'))\"` lists them."
        )
    return timm.create_model(
        name, pretrained=False, num_classes=num_classes, in_chans=channels, **kwargs
    )


def _factory(target: str, num_classes: int, channels: int, kwargs: dict, param: str):
    """A user's own `factory(num_classes=, in_channels=, **kwargs) -> nn.Module`."""
    module_name, _, function_name = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise PipelineError(
            f"{param}='{target}' cannot be imported ({error}). Give `package.module:function` "
            "of a function importable from the repository root (a module in the repository or "
            "an installed package) that returns an nn.Module."
        ) from error
    model = factory(num_classes=num_classes, in_channels=channels, **kwargs)
    if not isinstance(model, nn.Module):
        raise PipelineError(
            f"{param}='{target}' returned a {type(model).__name__}, not a torch nn.Module; the "
            "factory must build and return the model."
        )
    if isinstance(model, nn.Sequential):
        raise PipelineError(
            f"{param}='{target}' returned a bare nn.Sequential: NNCF's INT8 quantizer attaches "
            "its hooks as a child module, which a Sequential would run as a layer. Return an "
            "nn.Module subclass whose forward calls the Sequential."
        )
    return model


BUILDERS = {"torchvision": _torchvision, "timm": _timm, "factory": _factory}


def build_model(
    arch: str,
    num_classes: int,
    channels: int,
    image_size: int,
    param: str = "arch",
    kwargs: dict | None = None,
    stem: str = "auto",
) -> nn.Module:
    """A randomly initialised classifier from a model reference (see `split_reference`),
    with `kwargs` passed to its constructor. `stem="auto"` adapts torchvision and timm stems to
    small images and the input channels; a user's factory builds its own stem."""
    kind, name = split_reference(arch)
    try:
        model = BUILDERS[kind](name, num_classes, channels, dict(kwargs or {}), param)
    except (TypeError, ValueError, RuntimeError) as error:
        raise PipelineError(
            f"Cannot build {param}='{arch}' with {num_classes} classes, {channels} input "
            f"channels and arguments {kwargs or {}}: {error}"
        ) from error
    if stem == "auto" and kind != "factory":
        adapt_stem(model, channels, image_size)
    elif first_conv(model).in_channels != channels:
        adapt_stem(model, channels, image_size, small_images=False)
    reset_batchnorm_momentum(model)
    return model


def reset_batchnorm_momentum(model: nn.Module, momentum: float = 0.1) -> None:
    """MobileNetV3 / MNASNet ship BN momenta of 0.01 / 0.0003, tuned for long ImageNet runs;
    on a few hundred steps their running statistics never converge and eval accuracy
    collapses. PyTorch's default 0.1 suits the short runs of this pipeline."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum


def first_conv(model: nn.Module) -> nn.Conv2d:
    found = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if found is None:
        raise PipelineError(f"'{type(model).__name__}' has no Conv2d: not an image classifier.")
    return found


def classifier_layer(model: nn.Module, num_classes: int) -> nn.Module:
    """The last Linear/Conv whose output width is the number of classes: never pruned."""
    candidates = [
        module
        for module in model.modules()
        if (isinstance(module, nn.Linear) and module.out_features == num_classes)
        or (isinstance(module, nn.Conv2d) and module.out_channels == num_classes)
    ]
    if not candidates:
        raise PipelineError("Cannot find the classifier's output layer to protect it from pruning.")
    return candidates[-1]


def adapt_stem(model: nn.Module, channels: int, image_size: int, small_images: bool = True) -> None:
    """Give the first convolution `channels` inputs; for small images (unless `small_images`
    is off) make it a 3x3 stride-1 convolution and drop a stem max-pool, as CIFAR-style ResNets
    do, so that 8x8 or 32x32 inputs are not reduced to a single pixel before the first block."""
    small = small_images and image_size <= SMALL_IMAGE
    conv = first_conv(model)
    name = next(n for n, m in model.named_modules() if m is conv)
    kernel, stride, padding = (
        ((3, 3), (1, 1), (1, 1)) if small else (conv.kernel_size, conv.stride, conv.padding)
    )
    if conv.in_channels != channels or small:
        _set_submodule(
            model,
            name,
            nn.Conv2d(
                channels, conv.out_channels, kernel, stride, padding, bias=conv.bias is not None
            ),
        )
    if small and isinstance(getattr(model, "maxpool", None), nn.MaxPool2d):
        model.maxpool = nn.Identity()


def _set_submodule(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def count_macs_params(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, int]:
    """MACs for one sample and parameter count, by Torch-Pruning's op counter."""
    was_training = model.training
    model.eval()
    macs, params = tp.utils.count_ops_and_params(model, torch.zeros(1, *input_shape))
    model.train(was_training)
    return int(macs), int(params)


def output_positions(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[nn.Module, int]:
    """Per convolution and linear layer that runs, how many output positions it computes for
    one sample: fixed by the input size, whatever number of channels pruning leaves."""
    positions: dict[nn.Module, int] = {}

    def record(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        spatial = (
            output.shape[2:] if isinstance(module, nn.modules.conv._ConvNd) else output.shape[1:-1]
        )
        positions[module] = positions.get(module, 0) + spatial.numel()

    layers = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd | nn.Linear)]
    hooks = [layer.register_forward_hook(record) for layer in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return positions


def weight_macs(positions: dict[nn.Module, int]) -> int:
    """The multiply-adds of the convolutions and linear layers alone, from their current
    channel counts: a lower bound of `count_macs_params`'s MACs (which adds biases, norms and
    activations, counted the same way), without a forward pass."""
    total = 0
    for layer, count in positions.items():
        if isinstance(layer, nn.Linear):
            total += layer.in_features * layer.out_features * count
        else:
            per_position = layer.in_channels * (layer.out_channels // layer.groups)
            total += math.prod(layer.kernel_size) * per_position * count
    return total


def state_dict_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


DEAD_CHANNEL_VARIANCE = 1e-9  # running variance below which a BN channel's input was constant


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a convolution into that convolution and
    replace it with Identity (eval-mode statistics). Quantized weights must include the BN
    scale: an fp32 BatchNorm between an int8 convolution and the next quantizer keeps ONNX
    Runtime from fusing them into an integer kernel. A channel whose BN saw a constant input
    (running variance ~0: its inputs are dead) always outputs its BN shift; folding it the usual
    way multiplies its weights by gamma/sqrt(eps), thousands of times the live channels', and
    NNCF floors every per-channel weight scale at a fraction of the largest, which rounds the
    live channels to zero. Such channels get zero weights and the shift as bias instead.
    Returns the number of folds."""
    model.eval()
    traced = torch.fx.symbolic_trace(model)
    modules = dict(model.named_modules())
    folded = 0
    for node in traced.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0]
        if (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and isinstance(modules.get(source.target), nn.Conv2d)
            and len(source.users) == 1
        ):
            batchnorm = modules[node.target]
            fused = torch.nn.utils.fusion.fuse_conv_bn_eval(modules[source.target], batchnorm)
            constant = batchnorm.running_var < DEAD_CHANNEL_VARIANCE
            with torch.no_grad():
                fused.weight[constant] = 0.0
                fused.bias[constant] = batchnorm.bias[constant] if batchnorm.affine else 0.0
            _set_submodule(model, source.target, fused)
            _set_submodule(model, node.target, nn.Identity())
            folded += 1
    return folded
