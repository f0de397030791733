"""Turn an exported fake-quantized ONNX graph into a deployable INT8 one.

`nncf.strip(..., NATIVE)` then `torch.onnx.export` writes every weight as an fp32 initializer
behind a QuantizeLinear/DequantizeLinear pair: correct, but no smaller, and ONNX Runtime cannot
fuse it into integer kernels. This pass evaluates each QuantizeLinear whose input is a constant
(with the exact scale and zero point QAT learned) and stores the result as an int8 initializer
feeding the DequantizeLinear directly: the QDQ format ONNX Runtime's own quantizer writes.
Activation Q/DQ pairs stay, so ONNX Runtime runs integer convolutions.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(onnx.helper.get_attribute_value(attribute))
    return default


def quantize_constant(
    values: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int
) -> np.ndarray:
    """ONNX QuantizeLinear semantics: round half to even, add zero point, saturate."""
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    info = np.iinfo(zero_point.dtype)
    quantized = np.rint(values.astype(np.float64) / scale) + zero_point.astype(np.int64)
    return np.clip(quantized, info.min, info.max).astype(zero_point.dtype)


def inline_constant_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """Point every input that reaches an initializer through Identity nodes at the initializer.
    The torch exporter shares equal constants (two layers with the same activation scale)
    through Identity nodes, and ONNX Runtime's QDQ fusions accept only initializers as scales
    and zero points: each such layer silently stayed a float convolution."""
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    aliases = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "Identity"}

    def resolve(name: str) -> str:
        original = name
        while name in aliases:
            name = aliases[name]
        return name if name in initializers else original

    for node in graph.node:
        for index, name in enumerate(node.input):
            node.input[index] = resolve(name)
    _drop_unused(graph)
    return model


def fold_weight_quantizers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Replace QuantizeLinear(constant) by its int8/uint8 result; returns the model and the
    number of weight tensors folded. Expects `inline_constant_identities` to have run."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}

    def constant(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(initializers[name]) if name in initializers else None

    kept_nodes, new_initializers, folded = [], [], 0
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            values, scale = constant(node.input[0]), constant(node.input[1])
            zero_point = (
                constant(node.input[2]) if len(node.input) > 2 and node.input[2] else np.int8(0)
            )
            if values is not None and scale is not None and zero_point is not None:
                quantized = quantize_constant(
                    values, scale, np.asarray(zero_point), _attribute(node, "axis", 1)
                )
                new_initializers.append(numpy_helper.from_array(quantized, node.output[0]))
                folded += 1
                continue
        kept_nodes.append(node)
    del graph.node[:]
    graph.node.extend(kept_nodes)
    graph.initializer.extend(new_initializers)
    _drop_unused(graph)
    return model, folded


def quantize_biases(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Store the float bias of each Conv/Gemm whose input and weight are dequantized as int32
    with scale input_scale x weight_scale behind its own DequantizeLinear. ONNX Runtime fuses
    a QDQ convolution into an integer kernel only when every input, the bias included, comes
    from a DequantizeLinear."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}

    def constant(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(initializers[name]) if name in initializers else None

    added_nodes, added_initializers, count = [], [], 0
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or not node.input[2]:
            continue
        input_dq, weight_dq = producers.get(node.input[0]), producers.get(node.input[1])
        bias = constant(node.input[2])
        if (
            bias is None
            or input_dq is None
            or weight_dq is None
            or input_dq.op_type != "DequantizeLinear"
            or weight_dq.op_type != "DequantizeLinear"
        ):
            continue
        input_scale, weight_scale = constant(input_dq.input[1]), constant(weight_dq.input[1])
        if input_scale is None or weight_scale is None or input_scale.size != 1:
            continue
        scale = (input_scale.reshape(()) * weight_scale).astype(np.float32).reshape(-1)
        scale = np.broadcast_to(scale, bias.shape).astype(np.float32)
        quantized = np.clip(np.rint(bias.astype(np.float64) / scale), -(2**31), 2**31 - 1).astype(
            np.int32
        )
        stem = f"{node.name or node.output[0]}_bias"
        added_initializers += [
            numpy_helper.from_array(quantized, f"{stem}_int32"),
            numpy_helper.from_array(scale, f"{stem}_scale"),
        ]
        added_nodes.append(
            onnx.helper.make_node(
                "DequantizeLinear",
                [f"{stem}_int32", f"{stem}_scale"],  # zero point omitted: 0, ONNX's default
                [f"{stem}_dequantized"],
                axis=0,
            )
        )
        node.input[2] = f"{stem}_dequantized"
        count += 1
    graph.node.extend(added_nodes)
    graph.initializer.extend(added_initializers)
    _drop_unused(graph)
    _sort_topologically(graph)
    return model, count


def _sort_topologically(graph: onnx.GraphProto) -> None:
    available = {tensor.name for tensor in graph.initializer} | {
        value.name for value in graph.input
    }
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(not name or name in available for name in n.input)]
        if not ready:
            raise RuntimeError("The ONNX graph has a cycle or an undefined input.")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Remove Identity nodes and initializers nothing reads any more."""
    while True:
        used = {name for node in graph.node for name in node.input} | {
            out.name for out in graph.output
        }
        dead = [
            node for node in graph.node if node.op_type == "Identity" and node.output[0] not in used
        ]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    unused = [tensor for tensor in graph.initializer if tensor.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)


def weight_initializer_types(model: onnx.ModelProto) -> dict[str, int]:
    """How many weight initializers of each element type feed DequantizeLinear / compute ops."""
    counts: dict[str, int] = {}
    for tensor in model.graph.initializer:
        if tensor.dims and int(np.prod(tensor.dims)) > 16:
            name = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name
            counts[name] = counts.get(name, 0) + 1
    return counts


def _drop_zero_weight_zero_points(graph: onnx.GraphProto) -> None:
    """Symmetric weights dequantize with an all-zero zero point: ONNX's default when omitted."""
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        zero_point = initializers.get(node.input[2]) if len(node.input) > 2 else None
        if (
            node.op_type == "DequantizeLinear"
            and node.input[0] in initializers
            and zero_point is not None
            and not numpy_helper.to_array(zero_point).any()
        ):
            del node.input[2]


def _share_constants(graph: onnx.GraphProto) -> None:
    """Replace the exporter's Constant nodes (one per Clip bound, the same two values each
    time) by one initializer per distinct value."""
    shared: dict[bytes, str] = {}
    replacements: dict[str, str] = {}
    kept_nodes = []
    for node in graph.node:
        if node.op_type != "Constant" or node.attribute[0].name != "value":
            kept_nodes.append(node)
            continue
        value = node.attribute[0].t
        key = value.SerializeToString()
        if key not in shared:
            shared[key] = value.name = node.output[0]
            graph.initializer.append(value)
        replacements[node.output[0]] = shared[key]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    for node in graph.node:
        node.input[:] = [replacements.get(name, name) for name in node.input]


def compact(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop what a deployed INT8 file does not need, without changing a single value: zero
    points of symmetric weights, repeated Constant nodes, node names, and long tensor names
    (module paths repeated for each Q/DQ tensor, about 15 % of a small INT8 file). The graph's
    input and output names, which callers use, are kept."""
    graph = model.graph
    _drop_zero_weight_zero_points(graph)
    _share_constants(graph)
    _drop_unused(graph)

    kept = {value.name for value in graph.input} | {value.name for value in graph.output}
    renamed: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in kept:
            return name
        return renamed.setdefault(name, np.base_repr(len(renamed), 36).lower())

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]
    del graph.value_info[:]
    return model
