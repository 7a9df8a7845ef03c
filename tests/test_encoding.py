import numpy as np
import pytest

from tutorial_utils import encoding


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8, 11, 16])
def test_pack_unpack_round_trip_and_size(bits):
    codes = np.random.default_rng(bits).integers(0, 2**bits, size=1001)
    packed = encoding.pack_bits(codes, bits)
    assert len(packed) == (1001 * bits + 7) // 8
    assert np.array_equal(encoding.unpack_bits(packed, bits, 1001), codes)


def test_pack_bits_matches_numpy_packbits_for_one_bit():
    codes = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1])
    assert encoding.pack_bits(codes, 1) == np.packbits(codes.astype(np.uint8)).tobytes()


def test_pack_bits_layout_is_msb_first():
    assert encoding.pack_bits(np.array([1, 2]), 4) == bytes([0x12])


def test_pack_bits_bad_input():
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 7\]"):
        encoding.pack_bits(np.array([8]), 3)
    with pytest.raises(ValueError, match="bits=0"):
        encoding.pack_bits(np.array([0]), 0)
    with pytest.raises(ValueError, match="too short"):
        encoding.unpack_bits(b"\x00", 5, 2)


@pytest.fixture
def sparse_matrix():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(30, 50)).astype(np.float32)
    dense[rng.random(dense.shape) < 0.9] = 0
    dense[0, :] = 0
    dense[-1, -1] = 1.5  # a non-zero after a long gap
    return dense


def test_bitmask_round_trip(sparse_matrix):
    mask, values = encoding.bitmask_encode(sparse_matrix)
    assert len(mask) == (1500 + 7) // 8 and len(values) == np.count_nonzero(sparse_matrix)
    assert np.array_equal(encoding.bitmask_decode(mask, values, sparse_matrix.shape), sparse_matrix)
    with pytest.raises(ValueError, match="does not fit"):
        encoding.bitmask_decode(mask, values[:-1], sparse_matrix.shape)


@pytest.mark.parametrize("index_bits", [1, 3, 5, 8])
def test_relative_round_trip_with_fillers(sparse_matrix, index_bits):
    codes, values = encoding.relative_encode(sparse_matrix, index_bits)
    assert codes.max() < 2**index_bits
    fillers = len(codes) - np.count_nonzero(sparse_matrix)
    assert fillers >= 0 and np.count_nonzero(values) == np.count_nonzero(sparse_matrix)
    assert np.array_equal(encoding.relative_decode(codes, values, sparse_matrix.shape), sparse_matrix)


def test_relative_indices_by_hand():
    dense = np.zeros(12, dtype=np.float32)
    dense[[2, 3, 11]] = [5, 6, 7]
    codes, values = encoding.relative_encode(dense, index_bits=2)  # a code covers gaps 1..4
    # gaps: 3 (code 2), 1 (code 0), 8 (one filler of 4 at position 7, then gap 4 -> code 3)
    assert codes.tolist() == [2, 0, 3, 3] and values.tolist() == [5, 6, 0, 7]


def test_relative_decode_rejects_overflow():
    with pytest.raises(ValueError, match="outside a tensor of 4 entries"):
        encoding.relative_decode(np.array([3, 3]), np.array([1.0, 2.0], dtype=np.float32), (4,))
