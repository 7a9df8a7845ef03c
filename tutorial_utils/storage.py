"""Files on disk: a compact, documented, pickle-free file format for (sparse, quantized) MLPs.

File layout (all integers little-endian; no pickle anywhere):

    magic        4 bytes   b"DCMP"
    version      1 byte    3
    compression  1 byte    0 none, 1 zlib, 2 lzma: how the block below is entropy-coded
    block                  hlen (4 bytes), header (hlen bytes of UTF-8 JSON: {"modules": [...],
                           "layers": [...]}), payload (the blobs the header points to, back to back)
    sha256       32 bytes  SHA-256 of everything before it

"modules" lists the nn.Sequential in order: {"kind": "linear" | "quantized" | "fake_quant", "layer": i}
for weight layers, and "relu", "tanh", "sigmoid", "gelu", "dropout" (with "p"), "flatten", "identity".
Each layer entry holds its weight's "shape", its sparse "encoding" ("dense", "bitmask" or "relative"
with "index_bits"), a "spec" of what an entry is (float32 weights; "uniform" codes of "bits" bits with
"scale" and "zero_point" blobs: the fields of a QuantConfig; "kmeans" codes with a "centroids" blob),
and blobs as [offset, length]: "index" (packed mask bits or gap codes), "values" (the stored entries:
float32, or codes packed in `bits` bits), the spec's blobs, and "bias". `save` picks, per layer, the
encoding with the fewest bytes unless told otherwise. zlib or lzma play the part of Deep Compression's
Huffman coding: packed codes that are not uniformly used compress further.

Any model the package makes round-trips exactly (every preset, dropout included; QAT, quantized,
k-means models, and compacted ones that keep every input, `compaction.compact(..., inputs=False)`); any
other layer (a compacted model's SelectInputs included) is refused at save time, naming it. `load` trusts
nothing: see `fileformat` (checksum, bounded decompression, every header field checked before a
tensor is built).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import os
import pathlib
import struct
import sys
import zlib

import torch
from torch import nn

from tutorial_utils import fileformat, fileheader, files, quantization, serialize, validate
from tutorial_utils.files import atomic_write  # noqa: F401  (public here too: storage.atomic_write)

MAGIC, VERSION = fileformat.MAGIC, fileformat.VERSION
ENCODINGS = ("auto", "dense", "bitmask", "relative")
COMPRESSIONS = fileformat.COMPRESSIONS
_CODERS = {"none": lambda b: b, "zlib": lambda b: zlib.compress(b, 9),
           "lzma": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME)}
def save(model: nn.Module, path: str | os.PathLike, *, sparse: str = "auto", index_bits: int = 5,
         compress: str = "none") -> int:
    """Write an nn.Sequential MLP compactly (see the module docstring); return the bytes written.

    Float layers store float32 weights; quantized layers store their integer codes packed in `bits`
    bits each, plus scales and zero points (or the k-means centroids). sparse="auto" stores each
    layer dense, as a bitmask or with relative indices, whichever is smallest. compress = "zlib" or
    "lzma" entropy-codes the header and payload; "auto" keeps the smallest. Written atomically.
    Raises TypeError naming the first layer the format cannot hold (before anything is written).
    """
    validate.choice("sparse", sparse, ENCODINGS)
    validate.choice("compress", compress, (*COMPRESSIONS, "auto"))
    validate.bits("index_bits", index_bits)
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential of layers, got {type(model).__name__}")
    payload, layers, modules = bytearray(), [], []

    def blob(data: bytes) -> list[int]:
        payload.extend(data)
        return [len(payload) - len(data), len(data)]

    for i, module in enumerate(model):
        if type(module) not in (nn.Linear, quantization.FakeQuantLinear, quantization.QuantizedLinear):
            modules.append(serialize.plain_entry(i, module))   # a Linear subclass is refused there, by name
            continue
        if module.bias is None:
            raise TypeError(f"model[{i}] is a Linear without bias, which the model file cannot store")
        if not all(torch.isfinite(t).all() for t in (module.weight, module.bias)):
            raise ValueError(f"model[{i}] holds NaN or infinite weights; a file of them could not be loaded back")
        kind = ("fake_quant" if isinstance(module, quantization.FakeQuantLinear) else
                "quantized" if isinstance(module, quantization.QuantizedLinear) else "linear")
        modules.append({"kind": kind, "layer": len(layers)})
        if kind == "fake_quant":
            modules[-1]["config"] = dataclasses.asdict(module.config)
        entries, absent, spec, extra = serialize.layer_entries(module)
        bias_dtype = serialize.float_dtype(module.bias) if kind == "quantized" else "<f4"
        options = [sparse] if sparse != "auto" else ["dense", "bitmask", "relative"]
        candidates = []
        for how in options:
            index, positions = serialize.encode_index(entries, absent, how, index_bits)
            candidates.append((len(index) + len(serialize.pack_values(entries.reshape(-1)[positions], spec)), how, index, positions))
        _, how, index, positions = min(candidates, key=lambda c: c[0])
        entry = {"name": str(i), "shape": list(entries.shape), "encoding": how, "index_bits": index_bits,
                 "count": len(positions), "index": blob(index),
                 "values": blob(serialize.pack_values(entries.reshape(-1)[positions], spec))}
        entry["spec"] = {**spec, **{key: blob(data) for key, data in extra.items()}}
        entry.update(bias_dtype=bias_dtype, bias=blob(module.bias.detach().cpu().numpy().astype(bias_dtype).tobytes()))
        layers.append(entry)
    header = json.dumps({"modules": modules, "layers": layers}, separators=(",", ":")).encode()
    # what load would refuse (a scale per column, a codebook of another size) is refused before `path` is replaced
    fileheader.check(json.loads(header), name=pathlib.Path(path).name, max_parameters=sys.maxsize)
    block = struct.pack("<I", len(header)) + header + bytes(payload)
    coded = {name: _CODERS[name](block) for name in (COMPRESSIONS if compress == "auto" else [compress])}
    name = min(coded, key=lambda n: len(coded[n]))
    body = MAGIC + struct.pack("<BB", VERSION, COMPRESSIONS[name]) + coded[name]
    return files.atomic_write(path, lambda f: f.write(body + hashlib.sha256(body).digest()))


def load(path: str | os.PathLike, *, max_parameters: int = fileformat.MAX_PARAMETERS) -> nn.Sequential:
    """Read a file written by `save` and rebuild the model (in eval mode) with exactly the saved weights.

    Nothing is allocated before the whole header is checked (`fileformat.read`); a model of more than
    `max_parameters` weights and biases is refused unless the limit is raised. Raises ValueError naming
    the file and the field for anything wrong, FileNotFoundError for a missing file.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r} is not a file")
    validate.positive_int("max_parameters", max_parameters)
    header, payload = fileformat.read(path, max_parameters=max_parameters)

    def take(span: list[int]) -> bytes:
        return payload[span[0]:span[0] + span[1]]

    layers = []
    for entry in header["modules"]:
        if entry["kind"] not in fileformat.LINEAR_KINDS:
            layers.append(serialize.plain_module(entry))
            continue
        layer = serialize.rebuild_layer(header["layers"][entry["layer"]], take, path.name)
        if entry["kind"] == "fake_quant":
            try:
                config = quantization.QuantConfig(**entry["config"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path.name}: modules[].config: {exc}") from None
            fake = nn.utils.skip_init(quantization.FakeQuantLinear, layer.in_features, layer.out_features, config)
            fake.load_state_dict(layer.state_dict())
            try:  # weights whose scale the config's grid cannot hold would only fail later, in forward
                fake(torch.zeros(1, layer.in_features))
            except ValueError as exc:
                raise ValueError(f"{path.name}: a fake_quant layer's weights do not fit its config ({exc})") from None
            layer = fake
        elif (entry["kind"] == "quantized") != isinstance(layer, quantization.QuantizedLinear):
            raise ValueError(f"{path.name}: a {entry['kind']} module points to a layer of another kind")
        layers.append(layer)
    return nn.Sequential(*layers).eval()
