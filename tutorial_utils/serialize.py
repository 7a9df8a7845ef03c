"""One layer of a model file, both ways: a module to a header entry plus blobs, and back.

Writing: `layer_entries` turns a Linear or QuantizedLinear into per-weight entries (float32 weights, or
unsigned codes in [0, 2^bits)), the entry that means "zero weight", the value spec and its extra blobs;
`encode_index` stores the non-zero positions dense, as a bitmask or as relative indices.
Reading: `rebuild_layer` turns a header entry that `fileheader.check` has accepted back into the
module, refusing values the header cannot vouch for (NaN, scales <= 0, codes outside the grid).
`storage` puts the pieces together.

Example:
    >>> entries, absent, spec, blobs = layer_entries(model[0])
"""

from __future__ import annotations

from collections.abc import Callable
import numpy as np
import torch
from torch import nn

from tutorial_utils import encoding, fileformat, quantization

FLOAT_DTYPES = {"float16": "<f2", "float32": "<f4"}  # QuantConfig.scale_dtype -> NumPy dtype in the file

_PLAIN = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.GELU: "gelu", nn.Dropout: "dropout",
          nn.Flatten: "flatten", nn.Identity: "identity"}


def plain_entry(i: int, module: nn.Module) -> dict:
    """The header entry of one non-weight module, or TypeError naming a layer the format cannot hold."""
    kind = _PLAIN.get(type(module))
    if kind is None:
        raise TypeError(f"model[{i}] is a {type(module).__name__}, which the model file cannot store; supported: "
                        f"Linear, QuantizedLinear, FakeQuantLinear, {', '.join(t.__name__ for t in _PLAIN)}")
    entry = {"kind": kind}
    if kind == "dropout":
        entry["p"] = float(module.p)
    elif kind == "flatten":
        entry.update(start_dim=module.start_dim, end_dim=module.end_dim)
    elif kind == "gelu":
        entry["approximate"] = module.approximate
    return entry




def layer_entries(module: nn.Module) -> tuple[np.ndarray, np.ndarray, dict, dict[str, bytes]]:
    """(per-weight entries (out, in), the entry meaning "zero weight" (broadcastable), value spec, blobs).

    float32 layers store weights; quantized layers store unsigned integer codes in [0, 2^bits).
    """
    if not isinstance(module, quantization.QuantizedLinear):
        return module.weight.detach().cpu().numpy().astype("<f4"), np.array(0.0, "<f4"), {"kind": "float32"}, {}
    qw, spec, blobs = module.qweight, {}, {}
    if isinstance(qw, quantization.Codebook):
        entries = qw.q.cpu().numpy().astype(np.int64)
        absent = np.array(-1 if qw.zero_code is None else qw.zero_code)
        spec = {"kind": "kmeans", "bits": qw.bits, "zero_code": qw.zero_code}
        blobs = {"centroids": qw.centroids.cpu().numpy().astype("<f4").tobytes()}
    else:
        q, qmin = qw.q.cpu().numpy().astype(np.int64), qw.qmin
        one_bit = qw.symmetric and qw.bits == 1  # codes -1/+1 -> 0/1; no code means zero
        entries = (q + 1) // 2 if one_bit else q - qmin
        absent = np.array(-1) if one_bit else qw.zero_point.cpu().numpy().astype(np.int64) - qmin
        config = module.config  # the file stores exactly the QuantConfig's fields (per_channel as the axis)
        spec = {"kind": "uniform", "bits": config.bits, "symmetric": config.symmetric, "axis": qw.axis,
                "scale_shape": list(qw.scale.shape), "scale_dtype": FLOAT_DTYPES[config.scale_dtype]}
        blobs = {"scale": qw.scale.cpu().numpy().astype(spec["scale_dtype"]).tobytes()}
        if not qw.symmetric:  # symmetric grids have Z = 0 everywhere: nothing to store
            blobs["zero_point"] = qw.zero_point.cpu().numpy().astype("<i4").tobytes()
    if module.act is not None:
        a = module.act
        spec["act"] = {"bits": a.bits, "scale": float(a.scale), "zero_point": int(a.zero_point)}
    return entries, absent, spec, blobs


def float_dtype(t: torch.Tensor) -> str:
    """'<f2' if every value of t survives a round trip through float16 exactly, else '<f4'."""
    t = t.detach().cpu().float()
    return "<f2" if torch.equal(t.half().float(), t) else "<f4"


def pack_values(values: np.ndarray, spec: dict) -> bytes:
    return values.astype("<f4").tobytes() if spec["kind"] == "float32" else encoding.pack_bits(values, spec["bits"])


def encode_index(entries: np.ndarray, absent: np.ndarray, how: str, index_bits: int) -> tuple[bytes, np.ndarray]:
    """(index bytes, flat positions whose entries are stored) under one sparse encoding."""
    present = entries != absent
    if how == "dense":
        return b"", np.arange(entries.size)
    if how == "bitmask":
        return encoding.bitmask_encode(present), np.flatnonzero(present)
    codes, positions = encoding.relative_encode(present, index_bits)
    return encoding.pack_bits(codes, index_bits), positions


def rebuild_layer(layer: dict, take: Callable[[list[int]], bytes], name: str) -> nn.Module:
    """Rebuild one nn.Linear or QuantizedLinear from its (already checked) header entry and blobs."""
    shape, count, spec, field = tuple(layer["shape"]), layer["count"], layer["spec"], f"layers[{layer['name']}]"
    n = shape[0] * shape[1]
    positions = fileformat.positions(layer, take, n, name)
    bias = torch.from_numpy(fileformat.floats(take(layer["bias"]), layer["bias_dtype"], name, f"{field}.bias").copy())
    if spec["kind"] == "float32":
        weight = np.zeros(n, dtype="<f4")
        weight[positions] = fileformat.floats(take(layer["values"]), "<f4", name, f"{field}.values")
        linear = nn.utils.skip_init(nn.Linear, shape[1], shape[0])  # weights copied in: no random draws
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight.reshape(shape)))
            linear.bias.copy_(bias)
        return linear
    codes = encoding.unpack_bits(take(layer["values"]), spec["bits"], count)
    if spec["kind"] == "kmeans":
        entries = np.full(n, -1 if spec["zero_code"] is None else spec["zero_code"], dtype=np.int64)
        entries[positions] = codes
        if (entries < 0).any():
            raise ValueError(f"{name}: {field} leaves weights without a code and has no zero_code")
        centroids = torch.from_numpy(fileformat.floats(take(spec["centroids"]), "<f4", name, f"{field}.spec.centroids").copy())
        qweight = quantization.Codebook(torch.from_numpy(entries.reshape(shape)).to(torch.int32), centroids,
                                        spec["bits"], spec["zero_code"])
    else:
        scale_shape = tuple(spec["scale_shape"])
        scale = torch.from_numpy(fileformat.floats(take(spec["scale"]), spec["scale_dtype"], name, f"{field}.spec.scale").copy())
        if (scale <= 0).any():
            raise ValueError(f"{name}: {field}.spec.scale holds values <= 0")
        scale = scale.reshape(scale_shape)
        qmin, qmax = quantization.qrange(spec["bits"], spec["symmetric"])
        zero_point = (torch.from_numpy(np.frombuffer(take(spec["zero_point"]), dtype="<i4").copy()).reshape(scale_shape)
                      if "zero_point" in spec else torch.zeros(scale_shape, dtype=torch.int32))
        if ((zero_point < qmin) | (zero_point > qmax)).any():
            raise ValueError(f"{name}: {field}.spec.zero_point lies outside {qmin}..{qmax}")
        one_bit = spec["symmetric"] and spec["bits"] == 1
        entries = np.broadcast_to(-1 if one_bit else zero_point.numpy().astype(np.int64) - qmin, shape).reshape(-1).copy()
        entries[positions] = codes
        if one_bit and (entries < 0).any():
            raise ValueError(f"{name}: {field}: 1-bit codes cannot hold a zero, but the index leaves weights out")
        q = 2 * entries - 1 if one_bit else entries + qmin
        if (q > qmax).any():
            raise ValueError(f"{name}: {field}.values hold codes above {qmax}")
        qweight = quantization.QTensor(torch.from_numpy(q.reshape(shape)).to(torch.int32), scale, zero_point,
                                       spec["bits"], spec["symmetric"], spec["axis"])
    act = None
    if "act" in spec:
        a = spec["act"]
        act = quantization.QTensor(torch.zeros(0, dtype=torch.int32), torch.tensor(a["scale"], dtype=torch.float32),
                                   torch.tensor(a["zero_point"], dtype=torch.int32), a["bits"], False)
    scale_dtype = None if spec["kind"] == "kmeans" else {v: k for k, v in FLOAT_DTYPES.items()}[spec["scale_dtype"]]
    return quantization.QuantizedLinear(qweight, bias, act=act, scale_dtype=scale_dtype)


def plain_module(entry: dict) -> nn.Module:
    """The non-weight module of a checked header entry (ReLU, Dropout(p), Flatten, ...)."""
    kind = entry["kind"]
    if kind == "dropout":
        return nn.Dropout(entry["p"])
    if kind == "flatten":
        return nn.Flatten(entry["start_dim"], entry["end_dim"])
    if kind == "gelu":
        return nn.GELU(approximate=entry["approximate"])
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}[kind]()
