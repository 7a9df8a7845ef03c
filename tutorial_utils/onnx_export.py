"""ONNX graphs written from an MLP's own layers: float32 MatMul, or 4-bit MatMulNBits from the QAT codes.

torch.onnx.export turns every nn.Linear into one `Gemm` node, and ONNX Runtime's quantizers convert
only `MatMul`: a 4-bit quantization pass then leaves the model float32 without a word. Here each
Linear is written as the two nodes it really is,

    y = x @ W^T + b      ->   MatMul(x, W^T) -> Add(., b)                     (float32 weights)
                          ->   MatMulNBits(x, packed codes, scales) -> Add(., b)  (4-bit weights)

MatMulNBits (an ONNX Runtime contrib operator) stores each row of W in blocks of `block_size` codes
along K, two 4-bit codes per byte, low nibble first, and computes w = (u - 8) * scale_block, u in
0..15. The tutorial's symmetric codes c in [-7, 7] become u = c + 8 and every block of a row gets
the row's scale, so the graph computes exactly the QAT model's function (accuracy_level 0: float
arithmetic on the dequantized weights). The batch dimension is symbolic ("batch").

Example:
    >>> proto = to_onnx(final, weights="4bit")
    >>> op_types(proto)        # ['MatMulNBits', 'Add', 'Relu', 'MatMulNBits', 'Add']
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from tutorial_utils import compaction
from tutorial_utils.quantization import QuantizedLinear

WEIGHTS = ("float32", "4bit")
OPSET = 17


def _onnx():
    try:
        import onnx
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("ONNX export needs the onnx package: pip install -e '.[deploy]'") from error
    return onnx


def check_exportable(model: nn.Module) -> None:
    """Raise TypeError unless model is an nn.Sequential of SelectInputs, Linear, QuantizedLinear, ReLU, Dropout."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
    allowed = (compaction.SelectInputs, nn.Linear, QuantizedLinear, nn.ReLU, nn.Dropout)
    for position, layer in enumerate(model):
        if not isinstance(layer, allowed):
            raise TypeError(f"model[{position}] is {type(layer).__name__}; export handles Linear, "
                            f"QuantizedLinear, ReLU, Dropout and compaction.SelectInputs only")
    if not any(isinstance(layer, (nn.Linear, QuantizedLinear)) for layer in model):
        raise TypeError("model has no Linear layer to export")


def block_size_for(k: int) -> int:
    """The power-of-two block size (16 to the next power of two >= k) with the fewest bytes per row:
    ceil(k / bs) blocks of bs / 2 code bytes + one 4-byte scale each (padding codes count too)."""
    sizes = [2 ** e for e in range(4, max(4, math.ceil(math.log2(k))) + 1)]
    return min(sizes, key=lambda bs: (math.ceil(k / bs) * (bs // 2 + 4), bs))


def pack_4bit(codes: torch.Tensor, block_size: int) -> np.ndarray:
    """Unsigned 4-bit codes u (N, K), values 0..15 -> uint8 (N, ceil(K / block_size), block_size // 2).

    Padding at the end of K uses u = 8 (weight 0); code 2i goes to the low nibble, 2i + 1 to the high.
    """
    if codes.ndim != 2 or codes.min() < 0 or codes.max() > 15:
        raise ValueError("codes must be a 2-d tensor of unsigned 4-bit values 0..15")
    n, k = codes.shape
    blocks = math.ceil(k / block_size)
    padded = torch.full((n, blocks * block_size), 8, dtype=torch.uint8)
    padded[:, :k] = codes.to(torch.uint8).cpu()
    pairs = padded.reshape(n, blocks, block_size // 2, 2)
    return (pairs[..., 0] | (pairs[..., 1] << 4)).numpy()


def nbits_inputs(layer: QuantizedLinear, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(packed codes, scales of shape (N, blocks)) of a symmetric uniform layer of at most 4 bits."""
    if layer.kind != "uniform" or not layer.symmetric:
        raise ValueError(f"weights='4bit' needs symmetric uniform codes (QuantConfig(symmetric=True)); "
                         f"this layer has {layer.kind} codes, symmetric={getattr(layer, 'symmetric', None)}")
    if layer.bits > 4:
        raise ValueError(f"weights='4bit' needs codes of at most 4 bits; this layer has bits={layer.bits} "
                         f"(use weights='float32' and an int8 quantization)")
    if layer.act_bits is not None:
        raise ValueError("weights='4bit' does not quantize activations; this layer has act_bits="
                         f"{layer.act_bits}")
    n, k = layer.codes.shape
    blocks = math.ceil(k / block_size)
    scale = layer.scale.float().reshape(-1, 1).expand(n, blocks)    # per row (or one per tensor) -> every block
    return pack_4bit(layer.codes + 8, block_size), scale.contiguous().cpu().numpy()


def to_onnx(model: nn.Module, *, weights: str = "float32", block_size: int | None = None,
            accuracy_level: int = 0, opset: int = OPSET):
    """An onnx.ModelProto computing model(x) for x of shape (batch, in_features), output 'logits'.

    weights="float32": MatMul + Add per Linear (QuantizedLinear layers contribute their dequantized
    weights). weights="4bit": MatMulNBits from each QuantizedLinear's own codes and scales (nn.Linear
    layers stay float32). block_size: None chooses block_size_for(K). accuracy_level 0 computes in
    float; 4 lets ONNX Runtime round x to int8 per block (faster, no longer exactly the same function).
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper
    check_exportable(model)
    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r} must be one of {WEIGHTS}")
    if accuracy_level not in (0, 1, 2, 3, 4):
        raise ValueError(f"accuracy_level={accuracy_level!r} must be 0, 1, 2, 3 or 4")
    if block_size is not None and (block_size < 16 or block_size & (block_size - 1)):
        raise ValueError(f"block_size={block_size!r} must be a power of two >= 16")
    nodes, initializers = [], []
    current, in_features = "x", None

    def constant(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(array, name))
        return name

    for position, layer in enumerate(model):
        out = f"h{position}"
        if isinstance(layer, compaction.SelectInputs):
            in_features = in_features or layer.in_features
            index = constant(f"select{position}", layer.indices.cpu().numpy())
            nodes.append(helper.make_node("Gather", [current, index], [out], axis=1))
        elif isinstance(layer, (nn.Linear, QuantizedLinear)):
            in_features = in_features or layer.in_features
            bias = constant(f"bias{position}", layer.bias.detach().float().cpu().numpy())
            product = f"{out}_matmul"
            if weights == "4bit" and isinstance(layer, QuantizedLinear):
                size = block_size or block_size_for(layer.in_features)
                packed, scales = nbits_inputs(layer, size)
                nodes.append(helper.make_node(
                    "MatMulNBits", [current, constant(f"codes{position}", packed), constant(f"scales{position}", scales)],
                    [product], domain="com.microsoft", K=layer.in_features, N=layer.out_features, bits=4,
                    block_size=size, accuracy_level=accuracy_level))
            else:
                weight_t = layer.weight.detach().float().T.contiguous().cpu().numpy()   # (in, out)
                nodes.append(helper.make_node("MatMul", [current, constant(f"weight{position}", weight_t)], [product]))
            nodes.append(helper.make_node("Add", [product, bias], [out]))
        elif isinstance(layer, nn.ReLU):
            nodes.append(helper.make_node("Relu", [current], [out]))
        else:   # Dropout: the identity at inference
            continue
        current = out
    nodes[-1].output[0] = "logits"
    classes = [m for m in model if isinstance(m, (nn.Linear, QuantizedLinear))][-1].out_features
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", in_features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], initializers)
    imports = [helper.make_opsetid("", opset)]
    if any(node.domain == "com.microsoft" for node in nodes):
        imports.append(helper.make_opsetid("com.microsoft", 1))
    proto = helper.make_model(graph, opset_imports=imports, producer_name="tutorial_utils.onnx_export")
    proto.ir_version = min(proto.ir_version, 10)   # readable by ONNX Runtime releases of the last two years
    onnx.checker.check_model(proto)
    return proto


def op_types(proto) -> list[str]:
    """The op type of every node of the graph, in order (how to spot a Gemm or a missing MatMulNBits)."""
    return [node.op_type for node in proto.graph.node]
