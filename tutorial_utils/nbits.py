"""ONNX Runtime's MatMulNBits layout: the QAT codes and scales of a layer, packed as the kernel reads them.

MatMulNBits stores each row of W (N, K) in blocks of `block_size` codes along K, two 4-bit codes per
byte, low nibble first, and computes w = (u - 8) * scale_block with u in 0..15. The tutorial's
symmetric codes c in [-7, 7] become u = c + 8, and every block of a row gets the row's scale:

    packed (N, ceil(K / block_size), block_size // 2) uint8,   scales (N, ceil(K / block_size)) float32

Example:
    >>> packed, scales = inputs(final[0], block_size_for(784))     # 64 rows of 13 blocks
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tutorial_utils import validate
from tutorial_utils.quantization import QuantizedLinear


def block_size_for(k: int) -> int:
    """The power-of-two block size (16 to the next power of two >= k) with the fewest bytes per row:
    ceil(k / bs) blocks of bs / 2 code bytes + one 4-byte scale each (padding codes count too)."""
    validate.positive_int("k", k)
    sizes = [2 ** e for e in range(4, max(4, math.ceil(math.log2(k))) + 1)]
    return min(sizes, key=lambda bs: (math.ceil(k / bs) * (bs // 2 + 4), bs))


def pack_4bit(codes: torch.Tensor, block_size: int) -> np.ndarray:
    """Unsigned 4-bit codes u (N, K), values 0..15 -> uint8 (N, ceil(K / block_size), block_size // 2).

    Padding at the end of K uses u = 8 (weight 0); code 2i goes to the low nibble, 2i + 1 to the high.
    """
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise TypeError(f"codes must be an integer tensor (values 0..15); got dtype {codes.dtype}, which would be "
                        "truncated")
    if codes.ndim != 2 or codes.numel() == 0 or codes.min() < 0 or codes.max() > 15:
        got = (f"shape {tuple(codes.shape)}" if codes.ndim != 2 or codes.numel() == 0
               else f"values {codes.min().item()} to {codes.max().item()}")
        raise ValueError(f"codes must be a non-empty 2-d tensor of unsigned 4-bit values 0..15; got {got}")
    if not (validate.positive_int("block_size", block_size) >= 16 and block_size & (block_size - 1) == 0):
        raise ValueError(f"block_size={block_size!r} must be a power of two >= 16 (MatMulNBits' block sizes)")
    n, k = codes.shape
    blocks = math.ceil(k / block_size)
    padded = torch.full((n, blocks * block_size), 8, dtype=torch.uint8)
    padded[:, :k] = codes.to(torch.uint8).cpu()
    pairs = padded.reshape(n, blocks, block_size // 2, 2)
    return (pairs[..., 0] | (pairs[..., 1] << 4)).numpy()


def inputs(layer: QuantizedLinear, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(packed codes, scales of shape (N, blocks)) of a symmetric uniform layer of at most 4 bits."""
    if layer.kind != "uniform" or not layer.symmetric:
        raise ValueError(f"weights='4bit' needs symmetric uniform codes (QuantConfig(symmetric=True)); "
                         f"this layer has {layer.kind} codes, symmetric={getattr(layer, 'symmetric', None)}")
    if layer.bits > 4:
        raise ValueError(f"weights='4bit' needs codes of at most 4 bits; this layer has bits={layer.bits} "
                         f"(use weights='float32' and an int8 quantization)")
    if layer.act_bits is not None:
        raise ValueError("weights='4bit' does not quantize activations; this layer has act_bits="
                         f"{layer.act_bits}")
    n, k = layer.codes.shape
    if layer.scale.numel() not in (1, n) or (layer.scale.numel() > 1 and layer.axis != 0):
        raise ValueError(f"weights='4bit' needs one scale per output row (axis 0) or one per layer; this layer has "
                         f"{layer.scale.numel()} scales along axis={layer.axis} for {n} rows")
    blocks = math.ceil(k / block_size)
    scale = layer.scale.float().reshape(-1, 1).expand(n, blocks)    # per row (or one per tensor) -> every block
    return pack_4bit(layer.codes + 8, block_size), scale.contiguous().cpu().numpy()
