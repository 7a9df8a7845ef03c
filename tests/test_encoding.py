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
def present():
    rng = np.random.default_rng(0)
    mask = rng.random((30, 50)) > 0.9
    mask[0, :] = False
    mask[-1, -1] = True  # a stored entry after a long gap
    return mask


def test_bitmask_round_trip(present):
    packed = encoding.bitmask_encode(present)
    assert len(packed) == (1500 + 7) // 8
    assert np.array_equal(encoding.bitmask_decode(packed, 1500), np.flatnonzero(present))
    with pytest.raises(ValueError, match="does not fit 2000 entries"):
        encoding.bitmask_decode(packed, 2000)


@pytest.mark.parametrize("index_bits", [1, 3, 5, 8])
def test_relative_round_trip_with_fillers(present, index_bits):
    codes, positions = encoding.relative_encode(present, index_bits)
    assert codes.max() < 2**index_bits
    real = np.flatnonzero(present)
    assert set(real) <= set(positions) and len(positions) == len(codes)
    fillers = np.setdiff1d(positions, real)
    assert not present.reshape(-1)[fillers].any()  # fillers only land on absent entries
    # and no more of them than the gaps need: a gap of g positions takes (g - 1) // 2^index_bits fillers
    needed, previous = 0, -1
    for position in real:
        needed += (position - previous - 1) // 2**index_bits
        previous = position
    assert len(fillers) == needed
    assert np.array_equal(encoding.relative_decode(codes, present.size), positions)


def test_relative_indices_by_hand():
    present = np.zeros(12, dtype=bool)
    present[[2, 3, 11]] = True
    codes, positions = encoding.relative_encode(present, index_bits=2)  # a code covers gaps 1..4
    # gaps: 3 (code 2), 1 (code 0), 8 (a filler at position 7, then gap 4 -> code 3)
    assert codes.tolist() == [2, 0, 3, 3] and positions.tolist() == [2, 3, 7, 11]


def test_relative_decode_rejects_overflow():
    with pytest.raises(ValueError, match="outside a tensor of 4 entries"):
        encoding.relative_decode(np.array([3, 3]), 4)


def test_empty_and_full_masks():
    for present in (np.zeros(10, dtype=bool), np.ones(10, dtype=bool)):
        codes, positions = encoding.relative_encode(present, 5)
        assert np.array_equal(positions, np.flatnonzero(present))
        assert np.array_equal(encoding.bitmask_decode(encoding.bitmask_encode(present), 10), np.flatnonzero(present))
