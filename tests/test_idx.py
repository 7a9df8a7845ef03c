"""idx: the IDX reader against torchvision's own reader and hand-built files; clear errors for bad files."""

import gzip
import struct

import numpy as np
import pytest
from torchvision.datasets import mnist

from tutorial_utils import data, idx


def _idx(array: np.ndarray) -> bytes:
    """IDX bytes by the format's definition: 0, 0, 0x08 (unsigned byte), ndim, big-endian dims, the data."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.mark.parametrize("stem", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_the_bundled_files_read_as_torchvision_reads_them(stem, tmp_path):
    path = data.DATA_DIR / "mnist-5k" / f"{stem}.gz"
    plain = tmp_path / stem
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    reference = mnist.read_sn3_pascalvincent_tensor(str(plain), strict=False).numpy()
    assert np.array_equal(idx.read_idx(path), reference) and np.array_equal(idx.read_idx(plain), reference)


def test_a_hand_built_file_plain_or_gzipped_and_find_prefers_the_gz(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "x-idx3-ubyte").write_bytes(_idx(array))
    got = idx.read_idx(tmp_path / "x-idx3-ubyte")
    assert np.array_equal(got, array) and got.flags.writeable
    assert idx.find(tmp_path, "x-idx3-ubyte") == tmp_path / "x-idx3-ubyte"
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(array[:1])))
    assert idx.find(tmp_path, "x-idx3-ubyte") == tmp_path / "x-idx3-ubyte.gz"
    assert np.array_equal(idx.read_idx(tmp_path / "x-idx3-ubyte.gz"), array[:1])
    with pytest.raises(idx.DatasetUnavailableError, match="has no y-idx1-ubyte.gz"):
        idx.find(tmp_path, "y-idx1-ubyte")


@pytest.mark.parametrize("content, message", [
    (_idx(np.zeros((2, 3), np.uint8))[:-1], r"truncated or padded: 17 bytes, expected 18 for dims \(2, 3\)"),
    (_idx(np.zeros((2, 3), np.uint8)) + b"\x00", r"truncated or padded: 19 bytes"),
    (bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + b"\x00\x00\x00\x00", r"not an IDX file of unsigned bytes \(header 00000d01\)"),
    (b"\x00\x00", r"not an IDX file of unsigned bytes"),
    # dims whose product passes 2^63: np.prod wrapped around and the error came from numpy, without the file
    (bytes([0, 0, 8, 3]) + struct.pack(">III", 2**31, 2**31, 4), r"expected 18446744073709551632 for dims"),
])
def test_bad_files_are_named_errors(content, message, tmp_path):
    path = tmp_path / "bad-idx2-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as caught:
        idx.read_idx(path)
    assert str(caught.value).startswith("bad-idx2-ubyte ")      # the message names the file
