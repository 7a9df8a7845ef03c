"""IDX files (LeCun's MNIST format), read with bounds: magic 0x0000_08_ndim, big-endian dims, bytes.

A reader of files from elsewhere must not trust them: a .gz of a few hundred kilobytes can inflate to
gigabytes, and a truncated one must fail with the file's name, not a bare EOFError. `read_idx`
decompresses at most MAX_IDX_BYTES and checks the header against the data's length.

Example:
    >>> images = read_idx(pathlib.Path("data/mnist-5k/t10k-images-idx3-ubyte.gz"))   # (1000, 28, 28) uint8
"""

from __future__ import annotations

import gzip
import math
import pathlib

import numpy as np

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MAX_IDX_BYTES = 256 * 2**20  # the largest IDX file read: full MNIST's training images are 47 MB


class DatasetUnavailableError(RuntimeError):
    """The dataset is neither bundled, cached nor downloadable; the message says how to get it."""


def read_idx(path: pathlib.Path) -> np.ndarray:
    """Read one IDX file of unsigned bytes (gzip'ed or plain): magic 0x0000_08_ndim, dims, data.

    Raises ValueError naming the file if it is truncated, corrupt, not an IDX file of bytes, or larger
    than MAX_IDX_BYTES once decompressed (a small .gz cannot make the reader allocate gigabytes).
    """
    path = pathlib.Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:  # truncated or corrupt compressed stream
        raise ValueError(f"{path.name} cannot be read as an IDX file ({type(exc).__name__}: {exc})") from exc
    if len(raw) > MAX_IDX_BYTES:
        raise ValueError(f"{path.name} holds more than {MAX_IDX_BYTES:,} bytes once decompressed; "
                         f"an MNIST-style IDX file is at most about 47 MB")
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or not 1 <= raw[3] <= 4:
        raise ValueError(f"{path.name} is not an IDX file of unsigned bytes (header {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + math.prod(dims)   # exact: np.prod wraps around past 2^63
    if len(raw) != expected:
        raise ValueError(f"{path.name} is truncated or padded: {len(raw)} bytes, expected {expected} for dims {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()  # writable


def find(folder: pathlib.Path, stem: str) -> pathlib.Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DatasetUnavailableError(f"{folder} has no {stem}.gz (or {stem}); it needs the four IDX files {FILES}")
