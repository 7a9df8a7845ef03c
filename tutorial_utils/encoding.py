"""Bit-level encodings behind the compact model file: n-bit packing and two sparse index formats.

- `pack_bits` / `unpack_bits`: integers in [0, 2^bits) packed back to back, most significant bit first.
- bitmask: one bit per weight (1 = stored), then the stored values in row-major order.
- relative indices (Deep Compression, Han et al. 2016): for each stored weight, the gap to the previous
  one, minus 1, in `index_bits` bits. A gap larger than 2^index_bits is bridged by filler entries whose
  value is 0, each advancing 2^index_bits positions.

Per weight of a layer with density d (fraction of non-zeros) and b-bit values, roughly:
    bitmask  = 1 + d * b bits,      relative = d * (index_bits + b) bits (+ fillers),
so relative indices win when the layer is sparse (d below about 1 / index_bits).

The sparse encodings only say *where* the stored entries are; the values (float32 or packed codes)
are stored by the caller, one per position.

Example:
    >>> codes = np.array([3, 0, 7, 5]); packed = pack_bits(codes, 3)
    >>> len(packed), unpack_bits(packed, 3, 4).tolist()
    (2, [3, 0, 7, 5])
"""

from __future__ import annotations

import numpy as np

from tutorial_utils import validate


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers < 2^bits into ceil(n * bits / 8) bytes (big-endian bit order)."""
    validate.bits("bits", bits, high=32)
    codes = np.asarray(codes).reshape(-1)
    if codes.size and not np.issubdtype(codes.dtype, np.integer):   # 2.7 would be stored as 2
        raise ValueError(f"codes must be integers; got dtype {codes.dtype}")
    codes = codes.astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= 2**bits):
        raise ValueError(f"codes must lie in [0, {2**bits - 1}] for bits={bits}; got {codes.min()}..{codes.max()}")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bit_matrix = ((codes[:, None] >> shifts) & 1).astype(np.uint8)  # (n, bits)
    return np.packbits(bit_matrix.reshape(-1)).tobytes()


def unpack_bits(buffer: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of pack_bits: the first `count` codes of `bits` bits each, as int64."""
    validate.bits("bits", bits, high=32)
    validate.nonnegative_int("count", count)
    if len(buffer) * 8 < count * bits:
        raise ValueError(f"buffer of {len(buffer)} bytes is too short for {count} codes of {bits} bits")
    raw = np.frombuffer(buffer, dtype=np.uint8)
    if bits in (8, 16):  # whole bytes: read them as big-endian integers, no bit matrix at all
        return np.frombuffer(raw.tobytes()[: count * bits // 8], dtype=">u1" if bits == 8 else ">u2").astype(np.int64)
    weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)
    codes = np.empty(count, dtype=np.int64)
    step = 1 << 16  # codes per chunk: the (chunk, bits) bit matrix stays a few MB whatever count is
    for start in range(0, count, step):
        stop = min(count, start + step)
        first, last = start * bits, stop * bits
        chunk = np.unpackbits(raw[first // 8: (last + 7) // 8])[first % 8: first % 8 + last - first]
        codes[start:stop] = chunk.reshape(stop - start, bits).astype(np.int64) @ weights
    return codes


def bitmask_encode(present: np.ndarray) -> bytes:
    """One bit per entry, 1 where the entry is stored (row-major), packed into bytes."""
    return np.packbits(np.asarray(present, dtype=bool).reshape(-1)).tobytes()


def bitmask_decode(mask: bytes, count: int) -> np.ndarray:
    """Flat positions of the set bits among the first `count` bits of `mask`."""
    validate.nonnegative_int("count", count)
    if len(mask) != (count + 7) // 8:
        raise ValueError(f"bitmask of {len(mask)} bytes does not fit {count} entries")
    return np.flatnonzero(np.unpackbits(np.frombuffer(mask, dtype=np.uint8))[:count])


def relative_encode(present: np.ndarray, index_bits: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(gap codes, flat positions) of the stored entries, with filler entries bridging long gaps.

    gap code = (position - previous position) - 1, in [0, 2^index_bits); previous starts at -1. The
    returned positions include the fillers', so that the caller stores one value per code: a filler's
    value must be the tensor's "absent" value (a zero weight).
    """
    validate.bits("index_bits", index_bits)
    positions = np.flatnonzero(np.asarray(present, dtype=bool).reshape(-1))
    gaps = np.diff(positions, prepend=-1)  # >= 1
    span = 2**index_bits
    fillers = (gaps - 1) // span  # filler entries needed before each stored one
    codes = np.full(len(positions) + int(fillers.sum()), span - 1, dtype=np.int64)  # a filler advances `span`
    slots = np.cumsum(fillers + 1) - 1  # where each real entry lands after its fillers
    codes[slots] = gaps - 1 - fillers * span
    return codes, relative_decode(codes, positions[-1] + 1 if len(positions) else 0)


def relative_decode(codes: np.ndarray, count: int) -> np.ndarray:
    """Flat positions (fillers included) from relative_encode's gap codes, checked against `count` entries."""
    validate.nonnegative_int("count", count)
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and codes.min() < 0:   # a gap code is >= 0: a negative one would point before the tensor
        raise ValueError(f"codes must be gap codes >= 0; got {codes.min()}")
    positions = np.cumsum(codes + 1) - 1
    if len(positions) and positions[-1] >= count:
        raise ValueError(f"relative indices reach position {positions[-1]}, outside a tensor of {count} entries")
    return positions
