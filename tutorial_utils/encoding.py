"""Bit-level encodings behind the compact model file: n-bit packing and two sparse index formats.

- `pack_bits` / `unpack_bits`: integers in [0, 2^bits) packed back to back, most significant bit first.
- bitmask: one bit per weight (1 = stored), then the stored values in row-major order.
- relative indices (Deep Compression, Han et al. 2016): for each stored weight, the gap to the previous
  one, minus 1, in `index_bits` bits. A gap larger than 2^index_bits is bridged by filler entries whose
  value is 0, each advancing 2^index_bits positions.

Per weight of a layer with density d (fraction of non-zeros) and b-bit values, roughly:
    bitmask  = 1 + d * b bits,      relative = d * (index_bits + b) bits (+ fillers),
so relative indices win when the layer is sparse (d below about 1 / index_bits).

Example:
    >>> codes = np.array([3, 0, 7, 5]); packed = pack_bits(codes, 3)
    >>> len(packed), unpack_bits(packed, 3, 4).tolist()
    (2, [3, 0, 7, 5])
"""

from __future__ import annotations

import numpy as np


def _check_bits(bits: int, name: str = "bits", high: int = 32) -> None:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 1 <= bits <= high:
        raise ValueError(f"{name}={bits!r} must be an integer in 1..{high}")


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers < 2^bits into ceil(n * bits / 8) bytes (big-endian bit order)."""
    _check_bits(bits)
    codes = np.asarray(codes).reshape(-1).astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= 2**bits):
        raise ValueError(f"codes must lie in [0, {2**bits - 1}] for bits={bits}; got {codes.min()}..{codes.max()}")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bit_matrix = ((codes[:, None] >> shifts) & 1).astype(np.uint8)  # (n, bits)
    return np.packbits(bit_matrix.reshape(-1)).tobytes()


def unpack_bits(buffer: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of pack_bits: the first `count` codes of `bits` bits each, as int64."""
    _check_bits(bits)
    if len(buffer) * 8 < count * bits:
        raise ValueError(f"buffer of {len(buffer)} bytes is too short for {count} codes of {bits} bits")
    flat = np.unpackbits(np.frombuffer(buffer, dtype=np.uint8))[: count * bits].astype(np.int64)
    return flat.reshape(count, bits) @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))


def bitmask_encode(dense: np.ndarray) -> tuple[bytes, np.ndarray]:
    """(packed mask of dense != 0, the non-zero values in row-major order)."""
    flat = np.asarray(dense).reshape(-1)
    stored = flat != 0
    return np.packbits(stored).tobytes(), flat[stored]


def bitmask_decode(mask: bytes, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Dense array of `shape` with `values` at the set bits of `mask`, zeros elsewhere."""
    n = int(np.prod(shape))
    stored = np.unpackbits(np.frombuffer(mask, dtype=np.uint8))[:n].astype(bool)
    if len(mask) != (n + 7) // 8 or stored.sum() != len(values):
        raise ValueError(f"bitmask of {len(mask)} bytes with {int(stored.sum())} set bits does not fit "
                         f"{len(values)} values and shape {shape}")
    dense = np.zeros(n, dtype=values.dtype)
    dense[stored] = values
    return dense.reshape(shape)


def relative_encode(dense: np.ndarray, index_bits: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(gap codes, values) of the non-zeros of `dense`, with zero-valued fillers for long gaps.

    gap code = (position - previous position) - 1, in [0, 2^index_bits); previous starts at -1.
    """
    _check_bits(index_bits, "index_bits", 16)
    flat = np.asarray(dense).reshape(-1)
    positions = np.flatnonzero(flat)
    gaps = np.diff(positions, prepend=-1)  # >= 1
    span = 2**index_bits
    fillers = (gaps - 1) // span  # filler entries needed before each stored value
    total = len(positions) + int(fillers.sum())
    codes = np.full(total, span - 1, dtype=np.int64)  # a filler advances `span` positions
    values = np.zeros(total, dtype=flat.dtype)
    slots = np.cumsum(fillers + 1) - 1  # where each real entry lands after its fillers
    codes[slots] = gaps - 1 - fillers * span
    values[slots] = flat[positions]
    return codes, values


def relative_decode(codes: np.ndarray, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Dense array of `shape` from relative_encode's (codes, values)."""
    n = int(np.prod(shape))
    positions = np.cumsum(np.asarray(codes, dtype=np.int64) + 1) - 1
    if len(codes) != len(values) or (len(positions) and positions[-1] >= n):
        raise ValueError(f"relative indices reach position {positions[-1] if len(positions) else -1}, "
                         f"outside a tensor of {n} entries, or codes and values differ in length")
    dense = np.zeros(n, dtype=values.dtype)
    dense[positions] = values
    return dense.reshape(shape)
