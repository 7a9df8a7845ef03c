"""Reading model files without trusting them: bounded decompression and a header checked before any allocation.

A model file (see `storage` for the layout) can be truncated, corrupt, or crafted. Reading it here
never allocates more than the header's validated sizes:

1. the SHA-256 of the body is checked (catches accidental damage);
2. the block is decompressed as a stream, at most MAX_HEADER_BYTES for the header first;
3. the header is checked field by field (kinds, shapes, counts, bit widths, blob spans inside the
   payload, blob lengths that follow from the counts, layers that chain), against `max_parameters`;
4. only then is the payload decompressed, exactly as many bytes as the header's blobs add up to.

Every failure is a ValueError naming the file and the field.

Example:
    >>> header, payload = read("model.dcmp")          # checked header, payload bytes
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

from tutorial_utils import encoding, fileheader

MAGIC, VERSION = b"DCMP", 3
COMPRESSIONS = {"none": 0, "zlib": 1, "lzma": 2}
MAX_HEADER_BYTES = 1 << 20
LZMA_MEMORY = 256 << 20          # the most an lzma decoder may use (the writer's preset needs about 65 MB)
MAX_PARAMETERS = fileheader.MAX_PARAMETERS
LINEAR_KINDS = fileheader.LINEAR_KINDS


class _Stream:
    """Decompress on demand: read(n) returns exactly n bytes or raises, so nothing is inflated unasked."""

    def __init__(self, data: bytes, compression: str, name: str) -> None:
        self.name, self.kind = name, compression
        self.data = data if compression == "none" else b""
        # lzma's decoder gets a memory limit: a crafted header can ask for a dictionary of gigabytes
        makers = {"none": None, "zlib": zlib.decompressobj, "lzma": lambda: lzma.LZMADecompressor(memlimit=LZMA_MEMORY)}
        self.decoder = makers[compression]() if makers[compression] else None
        self.pending, self.position = data, 0

    def read(self, n: int, what: str) -> bytes:
        if n == 0:  # zlib reads max_length=0 as "no limit": never ask the decoder for nothing
            return b""
        if self.decoder is None:
            chunk = self.data[self.position:self.position + n]
            self.position += len(chunk)
        else:
            try:
                if self.kind == "zlib":
                    chunk = self.decoder.decompress(self.pending, n)
                    self.pending = self.decoder.unconsumed_tail
                else:
                    chunk = self.decoder.decompress(self.pending, max_length=n)
                    self.pending = b""
            except (zlib.error, lzma.LZMAError, EOFError) as exc:
                raise ValueError(f"{self.name}: the {self.kind} stream is corrupt ({exc})") from exc
        if len(chunk) != n:
            raise ValueError(f"{self.name}: the file ends inside the {what} ({len(chunk)} of {n} bytes)")
        return chunk

    def at_end(self) -> bool:
        return self.read_extra() == b""

    def read_extra(self) -> bytes:
        if self.decoder is None:
            return self.data[self.position:self.position + 1]
        if getattr(self.decoder, "eof", False):  # the compressed stream has ended: only trailing bytes remain
            return b"?" if self.decoder.unused_data or self.pending else b""
        try:
            return self.decoder.decompress(self.pending, 1) if self.kind == "zlib" else \
                self.decoder.decompress(self.pending, max_length=1)
        except (zlib.error, lzma.LZMAError, EOFError):
            return b"?"


def read(path: str | os.PathLike, *, max_parameters: int = MAX_PARAMETERS) -> tuple[dict, bytes]:
    """(checked header, payload) of a model file; ValueError naming the file and the field otherwise."""
    path, name = pathlib.Path(path), pathlib.Path(path).name
    limit = 8 * max_parameters + MAX_HEADER_BYTES + 64   # 8 bytes a weight is more than any encoding stores
    if path.stat().st_size > limit:   # a wrong path to a huge file is refused before it is read into memory
        raise ValueError(f"{name} holds {path.stat().st_size:,} bytes, more than a model of at most "
                         f"{max_parameters:,} parameters can take ({limit:,}); raise max_parameters if it is one")
    raw = path.read_bytes()
    if raw[:4] != MAGIC:
        raise ValueError(f"{name} is not a distill-and-compress model file (magic {raw[:4]!r}, expected {MAGIC!r})")
    body, digest = raw[:-32], raw[-32:]
    if len(raw) < 6 + 32 or hashlib.sha256(body).digest() != digest:
        raise ValueError(f"{name} is truncated or corrupt: its SHA-256 does not match ({len(raw)} bytes)")
    version, code = struct.unpack("<BB", body[4:6])
    if version != VERSION:
        raise ValueError(f"{name} has format version {version}; this code reads version {VERSION}")
    names = {number: key for key, number in COMPRESSIONS.items()}
    if code not in names:
        raise ValueError(f"{name} uses an unknown compression code {code}")
    stream = _Stream(body[6:], names[code], name)
    (hlen,) = struct.unpack("<I", stream.read(4, "header length"))
    if not 2 <= hlen <= MAX_HEADER_BYTES:
        raise ValueError(f"{name}: header length {hlen:,} must be in 2..{MAX_HEADER_BYTES:,} bytes")
    try:
        header = json.loads(stream.read(hlen, "header").decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge integers, [[[[... nesting
        raise ValueError(f"{name}: the header is not valid UTF-8 JSON ({exc})") from exc
    payload_bytes = fileheader.check(header, name=name, max_parameters=max_parameters)
    payload = stream.read(payload_bytes, "payload")
    if not stream.at_end():
        raise ValueError(f"{name}: data follows the payload the header describes")
    return header, payload


def floats(data: bytes, dtype: str, name: str, field: str) -> np.ndarray:
    """float32 values of a blob stored as `dtype`; ValueError naming the field if any is NaN or infinite."""
    values = np.frombuffer(data, dtype=dtype).astype("<f4")
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: {field} holds NaN or infinite values")
    return values


def positions(layer: dict, take: Callable[[list[int]], bytes], n: int, name: str) -> np.ndarray:
    """Flat positions of the stored entries, checked against the header's count."""
    count, field = layer["count"], f"layers[{layer['name']}]"
    if layer["encoding"] == "dense":
        return np.arange(n)
    if layer["encoding"] == "bitmask":
        positions = encoding.bitmask_decode(take(layer["index"]), n)
    else:
        try:
            positions = encoding.relative_decode(encoding.unpack_bits(take(layer["index"]), layer["index_bits"], count), n)
        except ValueError as exc:
            raise ValueError(f"{name}: {field}.index: {exc}") from None
    if len(positions) != count:
        raise ValueError(f"{name}: {field}.index holds {len(positions)} entries, the header says count={count}")
    return positions
