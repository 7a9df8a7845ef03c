"""Files on disk: atomic writes, and a compact, documented file format for sparse MLPs.

File layout (all integers little-endian; no pickle anywhere):

    magic    4 bytes   b"DCMP"
    version  1 byte    1
    hlen     4 bytes   length of the header
    header   hlen      UTF-8 JSON: {"sizes": [784, ..., 10], "layers": [...]}
    payload            the blobs the header points to, as [offset, length] pairs
    sha256   32 bytes  SHA-256 of everything before it

Each layer entry holds its weight's "shape", its "encoding" ("dense", "bitmask" or "relative" with
"index_bits") and blobs: "index" (packed mask bits or packed gap codes), "values" (float32 weights,
the stored ones only) and "bias" (float32). `save` picks, per layer, the encoding that gives the
fewest bytes unless told otherwise. Loading verifies the magic, the version and the trailing SHA-256,
so a truncated, corrupt or foreign file is a clear error; the round trip is exact.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import struct
import tempfile
import warnings
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

from tutorial_utils import encoding, models

MAGIC, VERSION = b"DCMP", 1
ENCODINGS = ("auto", "dense", "bitmask", "relative")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> int:
    """Call write(f) on a temporary binary file beside `path`, then move it onto `path`; return its bytes.

    os.replace is atomic, so an interrupted run leaves the old file or none, never half a file.
    Side effects: creates missing parent folders; replaces `path`. On any error the temporary file is
    removed and `path` is left as it was.

    Example:
        >>> atomic_write("out.bin", lambda f: f.write(b"abc"))
        3
    """
    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(f"path={str(path)!r} cannot be written ({exc.strerror}); choose a writable folder") from exc
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


def _encode_layer(weight: np.ndarray, how: str, index_bits: int) -> tuple[str, bytes, np.ndarray]:
    """(encoding, index bytes, stored float32 values) for one weight matrix."""
    if how == "dense":
        return "dense", b"", weight.reshape(-1)
    if how == "bitmask":
        mask, values = encoding.bitmask_encode(weight)
        return "bitmask", mask, values
    codes, values = encoding.relative_encode(weight, index_bits)
    return "relative", encoding.pack_bits(codes, index_bits), values


def save(model: nn.Module, path: str | os.PathLike, *, sparse: str = "auto", index_bits: int = 5) -> int:
    """Write `model` (an MLP of nn.Linear layers) in the compact format; return the bytes written.

    sparse="auto" stores each layer as dense, bitmask or relative indices, whichever is smallest.
    The file is written atomically.
    """
    if sparse not in ENCODINGS:
        raise ValueError(f"sparse={sparse!r} must be one of {ENCODINGS}")
    sizes = models.layer_sizes(model)
    payload, layers = bytearray(), []

    def blob(data: bytes) -> list[int]:
        payload.extend(data)
        return [len(payload) - len(data), len(data)]

    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        weight = module.weight.detach().cpu().numpy().astype(np.float32)
        options = [sparse] if sparse != "auto" else ["dense", "bitmask", "relative"]
        candidates = [_encode_layer(weight, how, index_bits) for how in options]
        how, index, values = min(candidates, key=lambda c: len(c[1]) + 4 * len(c[2]))
        layers.append({"name": name, "shape": list(weight.shape), "encoding": how, "index_bits": index_bits,
                       "count": len(values), "index": blob(index), "values": blob(values.astype("<f4").tobytes()),
                       "bias": blob(module.bias.detach().cpu().numpy().astype("<f4").tobytes())})
    header = json.dumps({"sizes": sizes, "layers": layers}, separators=(",", ":")).encode()
    body = MAGIC + struct.pack("<BI", VERSION, len(header)) + header + bytes(payload)
    return atomic_write(path, lambda f: f.write(body + hashlib.sha256(body).digest()))


def _read(path: pathlib.Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    if raw[:4] != MAGIC:
        raise ValueError(f"{path.name} is not a distill-and-compress model file (magic {raw[:4]!r}, expected {MAGIC!r})")
    body, digest = raw[:-32], raw[-32:]
    if len(raw) < 9 + 32 or hashlib.sha256(body).digest() != digest:
        raise ValueError(f"{path.name} is truncated or corrupt: its SHA-256 does not match ({len(raw)} bytes)")
    version, hlen = struct.unpack("<BI", body[4:9])
    if version != VERSION:
        raise ValueError(f"{path.name} has format version {version}; this code reads version {VERSION}")
    return json.loads(body[9:9 + hlen]), body[9 + hlen:]


def load(path: str | os.PathLike) -> nn.Sequential:
    """Read a file written by `save` and rebuild the MLP (in eval mode) with exactly the saved weights."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r} is not a file")
    header, payload = _read(path)
    model = models.mlp(header["sizes"])
    modules = dict(model.named_modules())

    def take(span: list[int]) -> bytes:
        return payload[span[0]:span[0] + span[1]]

    with torch.no_grad():
        for layer in header["layers"]:
            shape, count = tuple(layer["shape"]), layer["count"]
            values = np.frombuffer(take(layer["values"]), dtype="<f4")
            if layer["encoding"] == "dense":
                weight = values.reshape(shape)
            elif layer["encoding"] == "bitmask":
                weight = encoding.bitmask_decode(take(layer["index"]), values, shape)
            else:
                codes = encoding.unpack_bits(take(layer["index"]), layer["index_bits"], count)
                weight = encoding.relative_decode(codes, values, shape)
            module = modules[layer["name"]]
            module.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
            module.bias.copy_(torch.from_numpy(np.frombuffer(take(layer["bias"]), dtype="<f4").copy()))
    return model.eval()


def csr_bytes(model: nn.Module, path: str | os.PathLike) -> int:
    """Bytes of torch.save'ing every Linear weight as a torch sparse CSR tensor (int64 indices) plus biases.

    The sparse format most people reach for first: 8 bytes of column index + 4 of value per non-zero, so
    it is larger than dense float32 (4 bytes per weight) until a layer is more than two-thirds zeros.
    """
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            with warnings.catch_warnings():  # "sparse CSR support is in beta": true, and not the point here
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                state[f"{name}.weight"] = module.weight.detach().cpu().to_sparse_csr()
            state[f"{name}.bias"] = module.bias.detach().cpu()
    return atomic_write(path, lambda f: torch.save(state, f))
