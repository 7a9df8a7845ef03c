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
    # bytes per row = ceil(k / bs) blocks x (bs / 2 code bytes + a 4-byte scale), worked by hand:
    #   k = 100:  16: 7 x 12 = 84,  32: 4 x 20 = 80,  64: 2 x 36 = 72,  128: 1 x 68 = 68
    #   k = 520:  32: 17 x 20 = 340,  64: 9 x 36 = 324,  128: 5 x 68 = 340
    #   k = 784:  32: 25 x 20 = 500,  64: 13 x 36 = 468,  128: 7 x 68 = 476
    #   k = 1200: 128: 10 x 68 = 680,  256: 5 x 132 = 660,  512: 3 x 260 = 780
    expected = {10: 16, 100: 128, 520: 64, 784: 64, 1200: 256, 64: 64, 16: 16}
    assert {k: nbits.block_size_for(k) for k in expected} == expected