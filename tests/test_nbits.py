"""nbits: the MatMulNBits layout (low nibble first, zero-weight padding) and the block size with the fewest bytes."""

import numpy as np
import torch

from tutorial_utils import nbits


def test_packing_puts_even_codes_in_the_low_nibble_and_pads_with_zero_weights():
    codes = torch.tensor([[1, 2, 3, 15, 0]])
    packed = nbits.pack_4bit(codes, 16)
    assert packed.shape == (1, 1, 8) and packed.dtype == np.uint8
    assert packed[0, 0, :3].tolist() == [1 | 2 << 4, 3 | 15 << 4, 0 | 8 << 4]
    assert packed[0, 0, 3:].tolist() == [8 | 8 << 4] * 5


def test_block_size_minimises_bytes():
    def row_bytes(k: int, size: int) -> int:   # code bytes (padding included) + a 4-byte scale per block
        return -(-k // size) * (size // 2 + 4)

    assert nbits.block_size_for(784) == 64     # 13 blocks: 468 bytes per row, against 588 for 16
    assert nbits.block_size_for(64) == 64
    for k in (10, 100, 520, 784, 1200):
        best = nbits.block_size_for(k)
        assert best >= 16 and best & (best - 1) == 0
        assert row_bytes(k, best) == min(row_bytes(k, 2 ** e) for e in range(4, 12))
