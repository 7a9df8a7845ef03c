"""ONNX graphs written from an MLP's own layers: float32 MatMul, 4-bit MatMulNBits from the QAT codes, or
an integer first layer that takes the raw 8-bit pixels.

torch.onnx.export turns every nn.Linear into one `Gemm` node, which ONNX Runtime's 4-bit and dynamic int8
quantizers leave alone (they convert only `MatMul`): the model stays float32 without a word. Here each
Linear is written as the two nodes it really is,

    y = x @ W^T + b      ->   MatMul(x, W^T) -> Add(., b)                     (float32 weights)
                          ->   MatMulNBits(x, packed codes, scales) -> Add(., b)  (4-bit weights)

MatMulNBits (an ONNX Runtime contrib operator; layout in module nbits) holds the QAT codes and row
scales themselves: at accuracy_level 0 the graph computes the QAT model's function. The batch is symbolic.

weights="int8-pixels" takes the stored uint8 pixels p and folds the normalisation x = (p / 255 - mean) /
std into the first layer (fold_pixels): one MatMulIntegerToFloat (uint8 x int8, int32 sums, then scale
and bias), no float input to quantize, still the QAT model's function. fused=False writes it in standard
operators, MatMulInteger -> Cast -> Mul -> Add, which ONNX Runtime runs as four kernels: 13-16% slower
at batch 1 and 256 in one side-by-side run on a 2-core AMD EPYC. Codes of at most 4 bits are stored as
ONNX's INT4 (opset 21, two per byte), widened by a Cast that ONNX Runtime folds when the session loads.

Example:
    >>> proto = to_onnx(final, weights="4bit")
    >>> op_types(proto)        # ['MatMulNBits', 'Add', 'Relu', 'MatMulNBits', 'Add']
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tutorial_utils import compaction, data, nbits, validate
from tutorial_utils.quantization import QuantizedLinear

WEIGHTS = ("float32", "4bit", "int8-pixels")
OPSET = 17


def _onnx():
    try:
        import onnx
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("ONNX export needs the onnx package: pip install -e '.[deploy]'") from error
    return onnx


def check_exportable(model: nn.Module) -> None:
    """Raise TypeError unless model is an nn.Sequential of SelectInputs, Linear, QuantizedLinear, ReLU, Dropout;
    ValueError for a QuantizedLinear with act_bits (the exported graphs do not round activations)."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
    allowed = (compaction.SelectInputs, nn.Linear, QuantizedLinear, nn.ReLU, nn.Dropout)
    for position, layer in enumerate(model):
        if not isinstance(layer, allowed):
            raise TypeError(f"model[{position}] is {type(layer).__name__}; export handles Linear, "
                            f"QuantizedLinear, ReLU, Dropout and compaction.SelectInputs only")
    if not any(isinstance(layer, (nn.Linear, QuantizedLinear)) for layer in model):
        raise TypeError("model has no Linear layer to export")
    for position, layer in enumerate(model):
        if isinstance(layer, QuantizedLinear) and layer.act_bits is not None:
            # the graphs write weights only: a file would skip this rounding and compute another function
            raise ValueError(f"model[{position}] rounds its input to act_bits={layer.act_bits} bits, which export "
                             "does not write; export the weight-only model (quantize_model without act_bits)")


def _symmetric_codes(layer: nn.Module, *, max_bits: int = 8) -> bool:
    """True for a QuantizedLinear of symmetric uniform codes of at most max_bits bits, one scale per row or
    one for the layer (integer weights, zero point 0)."""
    return (isinstance(layer, QuantizedLinear) and layer.kind == "uniform" and layer.symmetric
            and layer.bits <= max_bits and layer.scale.numel() in (1, layer.out_features)
            and (layer.scale.numel() == 1 or layer.axis == 0))


def takes_pixels(model: nn.Module) -> bool:
    """True if weights="int8-pixels" can export `model`: its first layer holds symmetric codes of <= 7 bits."""
    if not isinstance(model, nn.Sequential):
        return False
    first = next((m for m in model if not isinstance(m, nn.Dropout)), None)
    return _symmetric_codes(first, max_bits=7) and first.act_bits is None


def fold_pixels(layer: QuantizedLinear, *, mean: float = data.MEAN, std: float = data.STD
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first layer rewritten for raw pixels p in 0..255: (codes^T int8 (K, N), scale (N,), bias (N,)).

    The model sees x = (p / 255 - mean) / std and computes W x + b with W = diag(s) Q (symmetric codes
    Q, row scales s). Expanding,

        W x + b = s / (255 std) * (Q p)  +  (b - (mean / std) * s * (Q 1))

    so one integer product Q p and a per-unit scale and bias give the layer's output. Needs symmetric
    uniform codes of at most 7 bits (|Q| <= 63, so that 2 * 255 * |Q| fits int16: CPUs without VNNI add
    pairs of uint8 x int8 products in int16, saturating), K * 255 * max|Q| < 2^31 (the int32 sum), and
    float inputs (no act_bits). Example: codes_t, scale, bias = fold_pixels(final[0]); then
    pixels @ codes_t * scale + bias == final[0]((pixels / 255 - MEAN) / STD) to float rounding.
    """
    if not _symmetric_codes(layer, max_bits=7) or layer.act_bits is not None:
        found = type(layer).__name__ if not isinstance(layer, QuantizedLinear) else (
            f"{layer.kind} codes, bits={layer.bits}, symmetric={getattr(layer, 'symmetric', None)}, "
            f"act_bits={layer.act_bits}")
        raise ValueError("weights='int8-pixels' needs a first layer of symmetric uniform codes of at most 7 bits, "
                         "one scale per row or per layer, without activation quantization "
                         f"(quantization.quantize_model); found {found}")
    worst = layer.in_features * 255 * int(layer.codes.abs().max())
    if worst >= 2 ** 31:
        raise ValueError(f"weights='int8-pixels': in_features={layer.in_features} pixels of 255 times codes up to "
                         f"{int(layer.codes.abs().max())} can sum to {worst:,}, past int32's 2,147,483,647")
    for name, value in (("mean", mean), ("std", std)):
        if not isinstance(value, (int, float)) or not np.isfinite(value) or (name == "std" and value <= 0):
            raise ValueError(f"{name}={value!r} must be a finite number{' > 0' if name == 'std' else ''}")
    codes = layer.codes.to(torch.int64)                                    # (N, K)
    scale = layer.scale.double().reshape(-1).expand(layer.out_features)    # per row, or one per tensor
    bias = layer.bias.double() - (mean / std) * scale * codes.sum(dim=1).double()
    return (codes.T.contiguous().to(torch.int8).cpu().numpy(), (scale / (255 * std)).float().cpu().numpy(),
            bias.float().cpu().numpy())


def to_onnx(model: nn.Module, *, weights: str = "float32", block_size: int | None = None,
            accuracy_level: int = 0, opset: int = OPSET, mean: float = data.MEAN, std: float = data.STD,
            fused: bool = True):
    """An onnx.ModelProto computing model(x) for x of shape (batch, in_features), output 'logits'.

    weights="float32": MatMul + Add per Linear (QuantizedLinear layers contribute their dequantized
    weights). weights="4bit": MatMulNBits from each QuantizedLinear's own codes and scales (nn.Linear
    layers stay float32). block_size: None chooses nbits.block_size_for(K). accuracy_level 0 computes in
    float; 4 lets ONNX Runtime round x to int8 per block (faster, no longer exactly the same function).
    weights="int8-pixels": input uint8 pixels of images normalised with (mean, std), first layer one
    MatMulIntegerToFloat(p, codes, 1, scale, bias) (fold_pixels; fused=False: MatMulInteger -> Cast -> Mul
    -> Add, standard ONNX), later layers MatMul on weights rebuilt at load from their stored symmetric
    codes and scales (float32 weights for plain, asymmetric or k-means layers); mean and std are kept in
    the model's metadata ("pixel_mean", "pixel_std"), and the opset is raised to 21 (INT4 codes).
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper
    check_exportable(model)
    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r} must be one of {WEIGHTS}")
    validate.integer("accuracy_level", accuracy_level, low=0, high=4)      # True or 1.0 are not levels
    for names, kind, given in (("block_size, accuracy_level", "4bit", (block_size, accuracy_level) != (None, 0)),
                               ("mean, std, fused", "int8-pixels", (mean, std, fused) != (data.MEAN, data.STD, True))):
        if given and weights != kind:   # a setting of another kind of graph, which would be ignored in silence
            raise ValueError(f"{names} apply to weights={kind!r} only; got block_size={block_size!r}, accuracy_level="
                             f"{accuracy_level!r}, mean={mean!r}, std={std!r}, fused={fused!r} with weights={weights!r}")
    if block_size is not None and (validate.integer("block_size", block_size, low=16) & (block_size - 1)):
        raise ValueError(f"block_size={block_size!r} must be a power of two >= 16")
    if weights == "4bit" and not any(isinstance(m, QuantizedLinear) for m in model):   # the silent-float32 trap
        raise ValueError("weights='4bit' needs QuantizedLinear layers (their codes become MatMulNBits); this model "
                         "has none, so the file would be plain float32: quantize it first, or export 'float32'")
    if weights == "int8-pixels" and isinstance(next(m for m in model if not isinstance(m, nn.Dropout)),
                                               compaction.SelectInputs):
        raise ValueError("weights='int8-pixels' needs the first layer to take the pixels themselves; this model "
                         "selects inputs first (a uint8 Gather is slow: use compaction.compact(model, inputs=False))")
    nodes, initializers = [], []
    current, in_features = "x", None

    def constant(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(array, name))
        return name

    def stored_codes(name: str, codes: np.ndarray, bits: int, to: int) -> str:
        """Integer codes kept as INT4 (two per byte) when they fit in 4 bits, else INT8; Cast to `to`
        (ONNX Runtime folds the Cast of a constant once, when the session loads)."""
        if bits > 4:
            initializers.append(numpy_helper.from_array(codes.astype(np.int8), name))
        else:
            nibbles = codes.astype(np.int8).reshape(-1).view(np.uint8) & 0x0F
            nibbles = np.append(nibbles, np.zeros(codes.size % 2, np.uint8))    # an odd count: pad one nibble
            initializers.append(helper.make_tensor(name, TensorProto.INT4, codes.shape,
                                                   (nibbles[0::2] | (nibbles[1::2] << 4)).tobytes(), raw=True))
        nodes.append(helper.make_node("Cast", [name], [f"{name}_cast"], to=to))
        return f"{name}_cast"

    for position, layer in enumerate(model):
        out = f"h{position}"
        if isinstance(layer, compaction.SelectInputs):
            in_features = in_features or layer.in_features
            index = constant(f"select{position}", layer.indices.cpu().numpy())
            nodes.append(helper.make_node("Gather", [current, index], [out], axis=1))
        elif isinstance(layer, (nn.Linear, QuantizedLinear)):
            product, bias = f"{out}_matmul", layer.bias.detach().float().cpu().numpy()
            if weights == "int8-pixels" and current == "x":
                codes_t, scale, bias = fold_pixels(layer, mean=mean, std=std)
                codes = stored_codes(f"codes{position}", codes_t, layer.bits, TensorProto.INT8)
                if fused:   # y = (p codes) * pixel_scale * scale + bias in one kernel; zero points are 0
                    nodes.append(helper.make_node(
                        "MatMulIntegerToFloat", ["x", codes, constant("pixel_scale", np.ones(1, np.float32)),
                                                 constant(f"scale{position}", scale), "", "",
                                                 constant(f"bias{position}", bias)], [out], domain="com.microsoft"))
                    current, in_features = out, layer.in_features
                    continue
                nodes += [helper.make_node("MatMulInteger", ["x", codes], [f"{out}_int32"]),   # standard ONNX
                          helper.make_node("Cast", [f"{out}_int32"], [f"{out}_float"], to=TensorProto.FLOAT),
                          helper.make_node("Mul", [f"{out}_float", constant(f"scale{position}", scale)], [product])]
            elif weights == "int8-pixels" and _symmetric_codes(layer):    # W^T = codes^T * scale, folded at load
                codes = stored_codes(f"codes{position}", layer.codes.T.cpu().numpy(), layer.bits, TensorProto.FLOAT)
                scale = layer.scale.float().reshape(-1).expand(layer.out_features).cpu().numpy()
                nodes += [helper.make_node("Mul", [codes, constant(f"scale{position}", scale)], [f"{out}_weight"]),
                          helper.make_node("MatMul", [current, f"{out}_weight"], [product])]
            elif weights == "4bit" and isinstance(layer, QuantizedLinear):
                size = block_size or nbits.block_size_for(layer.in_features)
                packed, scales = nbits.inputs(layer, size)
                nodes.append(helper.make_node(
                    "MatMulNBits", [current, constant(f"codes{position}", packed), constant(f"scales{position}", scales)],
                    [product], domain="com.microsoft", K=layer.in_features, N=layer.out_features, bits=4,
                    block_size=size, accuracy_level=accuracy_level))
            else:
                weight_t = layer.weight.detach().float().T.contiguous().cpu().numpy()   # (in, out)
                nodes.append(helper.make_node("MatMul", [current, constant(f"weight{position}", weight_t)], [product]))
            in_features = in_features or layer.in_features
            nodes.append(helper.make_node("Add", [product, constant(f"bias{position}", bias)], [out]))
        elif isinstance(layer, nn.ReLU):
            nodes.append(helper.make_node("Relu", [current], [out]))
        else:   # Dropout: the identity at inference
            continue
        current = out
    nodes[-1].output[0] = "logits"
    classes = [m for m in model if isinstance(m, (nn.Linear, QuantizedLinear))][-1].out_features
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info(
            "x", TensorProto.UINT8 if weights == "int8-pixels" else TensorProto.FLOAT, ["batch", in_features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])], initializers)
    imports = [helper.make_opsetid("", max(opset, 21) if weights == "int8-pixels" else opset)]   # INT4: opset 21
    if any(node.domain == "com.microsoft" for node in nodes):
        imports.append(helper.make_opsetid("com.microsoft", 1))
    proto = helper.make_model(graph, opset_imports=imports, producer_name="tutorial_utils.onnx_export")
    proto.ir_version = min(proto.ir_version, 10)   # readable by ONNX Runtime releases of the last two years
    if weights == "int8-pixels":
        helper.set_model_props(proto, {"pixel_mean": repr(float(mean)), "pixel_std": repr(float(std))})
    onnx.checker.check_model(proto)
    return proto


def op_types(proto) -> list[str]:
    """The op type of every node of the graph, in order (how to spot a Gemm or a missing MatMulNBits)."""
    return [node.op_type for node in proto.graph.node]
