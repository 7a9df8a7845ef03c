"""Files on disk: atomic writes, and a compact, documented file format for sparse MLPs.

File layout (all integers little-endian; no pickle anywhere):

    magic        4 bytes   b"DCMP"
    version      1 byte    2
    compression  1 byte    0 none, 1 zlib, 2 lzma: how the block below is entropy-coded
    block                  hlen (4 bytes), header (hlen bytes of UTF-8 JSON:
                           {"sizes": [784, ..., 10], "layers": [...]}), payload (the blobs the
                           header points to, as [offset, length] pairs)
    sha256       32 bytes  SHA-256 of everything before it

Each layer entry holds its weight's "shape", its sparse "encoding" ("dense", "bitmask" or
"relative" with "index_bits"), a "spec" of what an entry is (float32 weights; "uniform" codes of
"bits" bits with "scale" and "zero_point" blobs; "kmeans" codes with a "centroids" blob), and
blobs: "index" (packed mask bits or packed gap codes), "values" (the stored entries only: float32,
or codes packed in `bits` bits) and "bias" (float32). `save` picks, per layer, the encoding that
gives the fewest bytes unless told otherwise. The optional entropy-coding stage (zlib or lzma from
the standard library) plays the part of Deep Compression's Huffman coding: packed codes that are
not uniformly used (most weights near zero) compress further. Loading verifies the magic, the version and the trailing SHA-256,
so a truncated, corrupt or foreign file is a clear error; the round trip is exact.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import pathlib
import struct
import zlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from tutorial_utils import encoding, models, quantization, validate
from tutorial_utils.files import atomic_write  # noqa: F401  (public here too: storage.atomic_write)

MAGIC, VERSION = b"DCMP", 2
ENCODINGS = ("auto", "dense", "bitmask", "relative")
FLOAT_DTYPES = {"float16": "<f2", "float32": "<f4"}  # QuantConfig.scale_dtype -> NumPy dtype in the file
COMPRESSIONS = {"none": 0, "zlib": 1, "lzma": 2}


def _entries(module: nn.Module) -> tuple[np.ndarray, np.ndarray, dict, dict[str, bytes]]:
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


def _float_dtype(t: torch.Tensor) -> str:
    """'<f2' if every value of t survives a round trip through float16 exactly, else '<f4'."""
    t = t.detach().cpu().float()
    return "<f2" if torch.equal(t.half().float(), t) else "<f4"


def _pack_values(values: np.ndarray, spec: dict) -> bytes:
    return values.astype("<f4").tobytes() if spec["kind"] == "float32" else encoding.pack_bits(values, spec["bits"])


def _encode(entries: np.ndarray, absent: np.ndarray, how: str, index_bits: int) -> tuple[bytes, np.ndarray]:
    """(index bytes, flat positions whose entries are stored) under one sparse encoding."""
    present = entries != absent
    if how == "dense":
        return b"", np.arange(entries.size)
    if how == "bitmask":
        return encoding.bitmask_encode(present), np.flatnonzero(present)
    codes, positions = encoding.relative_encode(present, index_bits)
    return encoding.pack_bits(codes, index_bits), positions


def save(model: nn.Module, path: str | os.PathLike, *, sparse: str = "auto", index_bits: int = 5,
         compress: str = "none") -> int:
    """Write an MLP of nn.Linear and quantization.QuantizedLinear layers compactly; return the bytes written.

    Float layers store float32 weights; quantized layers store their integer codes packed in `bits`
    bits each, plus scales and zero points (or the k-means centroids). sparse="auto" stores each
    layer dense, as a bitmask or with relative indices, whichever is smallest. compress = "zlib" or
    "lzma" entropy-codes the header and payload; "auto" keeps the smallest of none, zlib and lzma.
    Written atomically.
    """
    validate.choice("sparse", sparse, ENCODINGS)
    validate.choice("compress", compress, (*COMPRESSIONS, "auto"))
    validate.bits("index_bits", index_bits)
    sizes = models.layer_sizes(model)
    payload, layers = bytearray(), []

    def blob(data: bytes) -> list[int]:
        payload.extend(data)
        return [len(payload) - len(data), len(data)]

    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, quantization.QuantizedLinear)):
            continue
        entries, absent, spec, extra = _entries(module)
        bias_dtype = _float_dtype(module.bias) if isinstance(module, quantization.QuantizedLinear) else "<f4"
        options = [sparse] if sparse != "auto" else ["dense", "bitmask", "relative"]
        candidates = []
        for how in options:
            index, positions = _encode(entries, absent, how, index_bits)
            candidates.append((len(index) + len(_pack_values(entries.reshape(-1)[positions], spec)), how, index, positions))
        _, how, index, positions = min(candidates, key=lambda c: c[0])
        spec = {**spec, **{key: blob(data) for key, data in extra.items()}}
        layers.append({"name": name, "shape": list(entries.shape), "encoding": how, "index_bits": index_bits,
                       "count": len(positions), "index": blob(index),
                       "values": blob(_pack_values(entries.reshape(-1)[positions], spec)), "spec": spec,
                       "bias_dtype": bias_dtype, "bias": blob(module.bias.detach().cpu().numpy().astype(bias_dtype).tobytes())})
    header = json.dumps({"sizes": sizes, "layers": layers}, separators=(",", ":")).encode()
    block = struct.pack("<I", len(header)) + header + bytes(payload)
    coded = {name: _CODERS[name][0](block) for name in (COMPRESSIONS if compress == "auto" else [compress])}
    name = min(coded, key=lambda n: len(coded[n]))
    body = MAGIC + struct.pack("<BB", VERSION, COMPRESSIONS[name]) + coded[name]
    return atomic_write(path, lambda f: f.write(body + hashlib.sha256(body).digest()))


_CODERS = {
    "none": (lambda b: b, lambda b: b),
    "zlib": (lambda b: zlib.compress(b, 9), zlib.decompress),
    "lzma": (lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
}


def _read(path: pathlib.Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    if raw[:4] != MAGIC:
        raise ValueError(f"{path.name} is not a distill-and-compress model file (magic {raw[:4]!r}, expected {MAGIC!r})")
    body, digest = raw[:-32], raw[-32:]
    if len(raw) < 6 + 32 or hashlib.sha256(body).digest() != digest:
        raise ValueError(f"{path.name} is truncated or corrupt: its SHA-256 does not match ({len(raw)} bytes)")
    version, code = struct.unpack("<BB", body[4:6])
    if version != VERSION:
        raise ValueError(f"{path.name} has format version {version}; this code reads version {VERSION}")
    names = {number: name for name, number in COMPRESSIONS.items()}
    if code not in names:
        raise ValueError(f"{path.name} uses an unknown compression code {code}")
    block = _CODERS[names[code]][1](body[6:])
    (hlen,) = struct.unpack("<I", block[:4])
    return json.loads(block[4:4 + hlen]), block[4 + hlen:]


def _layer(layer: dict, take: Callable[[list[int]], bytes]) -> nn.Module:
    """Rebuild one nn.Linear or QuantizedLinear from its header entry and blobs."""
    shape, count, spec = tuple(layer["shape"]), layer["count"], layer["spec"]
    n = int(np.prod(shape))
    if layer["encoding"] == "dense":
        positions = np.arange(n)
    elif layer["encoding"] == "bitmask":
        positions = encoding.bitmask_decode(take(layer["index"]), n)
    else:
        positions = encoding.relative_decode(encoding.unpack_bits(take(layer["index"]), layer["index_bits"], count), n)
    if len(positions) != count:
        raise ValueError(f"layer {layer['name']}: the index holds {len(positions)} entries, the header says {count}")
    bias = torch.from_numpy(np.frombuffer(take(layer["bias"]), dtype=layer["bias_dtype"]).astype("<f4"))
    if spec["kind"] == "float32":
        weight = np.zeros(n, dtype="<f4")
        weight[positions] = np.frombuffer(take(layer["values"]), dtype="<f4")
        linear = nn.utils.skip_init(nn.Linear, shape[1], shape[0])  # weights copied in: no random draws
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight.reshape(shape)))
            linear.bias.copy_(bias)
        return linear
    codes = encoding.unpack_bits(take(layer["values"]), spec["bits"], count)
    if spec["kind"] == "kmeans":
        entries = np.full(n, -1 if spec["zero_code"] is None else spec["zero_code"], dtype=np.int64)
        entries[positions] = codes
        centroids = torch.from_numpy(np.frombuffer(take(spec["centroids"]), dtype="<f4").copy())
        qweight = quantization.Codebook(torch.from_numpy(entries.reshape(shape)).to(torch.int32), centroids,
                                        spec["bits"], spec["zero_code"])
    else:
        scale_shape = tuple(spec["scale_shape"])
        scale = torch.from_numpy(np.frombuffer(take(spec["scale"]), dtype=spec["scale_dtype"]).astype("<f4")).reshape(scale_shape)
        zero_point = (torch.from_numpy(np.frombuffer(take(spec["zero_point"]), dtype="<i4").copy()).reshape(scale_shape)
                      if "zero_point" in spec else torch.zeros(scale_shape, dtype=torch.int32))
        qmin = quantization.qrange(spec["bits"], spec["symmetric"])[0]
        one_bit = spec["symmetric"] and spec["bits"] == 1
        entries = np.broadcast_to(-1 if one_bit else zero_point.numpy().astype(np.int64) - qmin, shape).reshape(-1).copy()
        entries[positions] = codes
        q = 2 * entries - 1 if one_bit else entries + qmin
        qweight = quantization.QTensor(torch.from_numpy(q.reshape(shape)).to(torch.int32), scale, zero_point,
                                       spec["bits"], spec["symmetric"], spec["axis"])
    act = None
    if "act" in spec:
        a = spec["act"]
        act = quantization.QTensor(torch.zeros(0, dtype=torch.int32), torch.tensor(a["scale"], dtype=torch.float32),
                                   torch.tensor(a["zero_point"], dtype=torch.int32), a["bits"], False)
    scale_dtype = None if spec["kind"] == "kmeans" else {v: k for k, v in FLOAT_DTYPES.items()}[spec["scale_dtype"]]
    return quantization.QuantizedLinear(qweight, bias, act=act, scale_dtype=scale_dtype)


def load(path: str | os.PathLike) -> nn.Sequential:
    """Read a file written by `save` and rebuild the MLP (in eval mode) with exactly the saved weights."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r} is not a file")
    header, payload = _read(path)

    def take(span: list[int]) -> bytes:
        return payload[span[0]:span[0] + span[1]]

    model = models.mlp(header["sizes"], init=False)
    for layer in header["layers"]:
        model[int(layer["name"])] = _layer(layer, take)
    return model.eval()
