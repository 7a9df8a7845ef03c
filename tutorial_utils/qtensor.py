"""Quantized tensors: the affine scheme r = S (q - Z), fake quantization for training, k-means weight sharing.

Uniform (Jacob et al. 2018), b bits:
    symmetric   q in [-(2^(b-1) - 1), 2^(b-1) - 1], Z = 0,   S = max|x| / (2^(b-1) - 1)
                (b = 1: q = sign(x) in {-1, +1}, S = mean|x|, the binary scheme of XNOR-Net)
    asymmetric  q in [0, 2^b - 1],  S = (max - min) / (2^b - 1),  Z = round(-min / S)
                (min <= 0 <= max is enforced, so that 0 is exactly representable)
    q = clamp(round(x / S) + Z, qmin, qmax),   x ~ S (q - Z),   |x - S (q - Z)| <= S / 2 inside the range.
Per channel (axis=0) gives each output row of a weight matrix its own S and Z, so one large row
does not coarsen the grid of all the others.

A `QuantConfig` names one grid (bits, symmetric or affine, per channel or per tensor, scale dtype);
the model conversions in `quantization` and the file format in `storage` all take it from here.

Example:
    >>> qt = quantize(torch.tensor([-1.0, 0.0, 0.5, 1.0]), 8)
    >>> qt.q.tolist(), round(qt.scale.item(), 5)
    ([-127, 0, 64, 127], 0.00787)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tutorial_utils import validate

SCALE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass(frozen=True)
class QuantConfig:
    """One quantization grid for a model's Linear weights, shared by QAT, conversion and the file format.

    bits: 1..16 per code. symmetric: q in [-(2^(b-1) - 1), 2^(b-1) - 1] with Z = 0, else affine
    q in [0, 2^b - 1]. per_channel: one scale per output row (axis 0), else one per tensor.
    scale_dtype: "float16" rounds every scale *up* to a half-precision value and biases to float16, so
    a file stores them in 2 bytes with an exact round trip; "float32" keeps both in float32. A scale below
    6.1e-05 (tiny weights, or many bits) is a float16 subnormal, rounded up by as much as 5.96e-08, so its
    grid can be coarser than asked by more than float16's usual 0.1%; below 5.96e-08 it is refused.

    Example:
        >>> QuantConfig(bits=4)
        QuantConfig(bits=4, symmetric=True, per_channel=True, scale_dtype='float16')
    """

    bits: int = 8
    symmetric: bool = True
    per_channel: bool = True
    scale_dtype: str = "float16"

    def __post_init__(self) -> None:
        validate.bits("bits", self.bits)
        for name in ("symmetric", "per_channel"):
            validate.flag(name, getattr(self, name))
        validate.choice("scale_dtype", self.scale_dtype, tuple(SCALE_DTYPES))

    @property
    def torch_scale_dtype(self) -> torch.dtype:
        return SCALE_DTYPES[self.scale_dtype]


@dataclass(frozen=True)
class QTensor:
    """Integer codes q (int32) with scale and zero_point broadcastable to q: x ~ scale * (q - zero_point)."""

    q: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    bits: int
    symmetric: bool
    axis: int | None = None  # None: one scale for the whole tensor

    @property
    def qmin(self) -> int:
        return qrange(self.bits, self.symmetric)[0]


@dataclass(frozen=True)
class Codebook:
    """k-means weight sharing: x ~ centroids[q], with 2^bits centroids (Deep Compression).

    If x had exact zeros (pruned weights), centroid `zero_code` is pinned at 0.0 so they stay zero.
    """

    q: torch.Tensor
    centroids: torch.Tensor
    bits: int
    zero_code: int | None = None


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """(qmin, qmax) of the integer codes."""
    validate.bits("bits", bits, high=32)
    if symmetric:
        return (-1, 1) if bits == 1 else (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
    return 0, 2**bits - 1


def check_tensor(x: torch.Tensor, per_channel: bool, axis: int) -> None:
    """Raise unless x is a non-empty, finite float tensor (of at least 2 dims with a valid axis if per channel)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    if x.numel() == 0:
        raise ValueError("x is empty: there is nothing to quantize")
    # A finite sum means every element is finite, at a fraction of an element-wise test (this runs on every
    # QAT step); only a sum that overflows or is NaN needs the exact test.
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf; quantization needs finite values")
    if per_channel and (x.ndim < 2 or not -x.ndim <= axis < x.ndim):
        raise ValueError(f"per_channel needs a tensor of at least 2 dimensions and a valid axis; "
                         f"got shape {tuple(x.shape)} and axis={axis}")


def _reduce(x: torch.Tensor, fn: str, per_channel: bool, axis: int) -> torch.Tensor:
    """min/max/mean over everything (a 0-d tensor) or over all dims but `axis` (kept for broadcasting)."""
    if not per_channel:
        return getattr(x, fn)()
    dims = [d for d in range(x.ndim) if d != axis % x.ndim]
    return getattr(x, "amin" if fn == "min" else "amax" if fn == "max" else "mean")(dim=dims, keepdim=True)


def _round_scale(scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """scale rounded *up* to the nearest value of `dtype` (so max|x| / scale never exceeds qmax), as float32."""
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel: any scale works
    if dtype == torch.float32:
        return scale
    if dtype != torch.float16:
        raise ValueError(f"scale_dtype={dtype} must be torch.float32 or torch.float16")
    # Below float16's smallest normal number (2^-14) its spacing is a fixed 2^-24, so rounding up coarsens the
    # grid by up to 2^-24 / scale, more than the usual 2^-10: a documented cost. Below 2^-24 itself the grid
    # would be replaced by a far coarser one (weights of 1e-9 at 8 bits all became code 0): refused.
    if not bool(torch.isfinite(scale).all()) or float(scale.max()) > 65504 or float(scale.min()) < 2**-24:
        raise ValueError(f"a scale from {float(scale.min()):.3g} to {float(scale.max()):.3g} does not fit float16 "
                         "(5.96e-08 to 65504): values too small or too large for the bits; use scale_dtype float32")
    rounded = scale.to(torch.float16)
    rounded = torch.where(rounded.float() < scale, torch.nextafter(rounded, torch.tensor(float("inf"), dtype=torch.float16)), rounded)
    if not torch.isfinite(rounded).all():                 # 65504 rounded up is infinity
        raise ValueError("the scale does not fit float16 (values too large); use scale_dtype=torch.float32")
    return rounded.float()


def _grid(x: torch.Tensor, bits: int, symmetric: bool, per_channel: bool, axis: int,
          scale_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes, scale, zero point) of x (float32, checked), the codes and zero point as whole floats."""
    validate.flag("symmetric", symmetric)
    validate.flag("per_channel", per_channel)
    qmin, qmax = qrange(bits, symmetric)
    if symmetric and bits == 1:
        scale = _round_scale(_reduce(x.abs(), "mean", per_channel, axis), scale_dtype)
        return torch.where(x >= 0, 1.0, -1.0), scale, torch.zeros_like(scale)
    if symmetric:
        scale = _round_scale(_reduce(x.abs(), "max", per_channel, axis) / qmax, scale_dtype)
        return torch.clamp(torch.round(x / scale), qmin, qmax), scale, torch.zeros_like(scale)
    low = torch.clamp(_reduce(x, "min", per_channel, axis), max=0.0)
    high = torch.clamp(_reduce(x, "max", per_channel, axis), min=0.0)
    scale = _round_scale((high - low) / (qmax - qmin), scale_dtype)
    zero_point = torch.clamp(torch.round(-low / scale), qmin, qmax)
    return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax), scale, zero_point


def quantize(x: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = False,
             axis: int = 0, scale_dtype: torch.dtype = torch.float32) -> QTensor:
    """Affine quantization of x to `bits`-bit integer codes (see the module docstring for the formulas).

    scale_dtype=torch.float16 rounds each scale up to a half-precision value, so that a file can store
    it in 2 bytes without changing the model.
    """
    validate.bits("bits", bits)
    check_tensor(x, per_channel, axis)
    q, scale, zero_point = _grid(x.detach().float(), bits, symmetric, per_channel, axis, scale_dtype)
    return QTensor(q.to(torch.int32), scale, zero_point.to(torch.int32), bits, symmetric,
                   axis % x.ndim if per_channel else None)


def dequantize(qt: QTensor | Codebook) -> torch.Tensor:
    """Real values back from codes: scale * (q - zero_point), or centroids[q] for a Codebook."""
    if isinstance(qt, Codebook):
        return qt.centroids[qt.q.long()]
    if not isinstance(qt, QTensor):
        raise TypeError(f"qt must be a QTensor or Codebook, got {type(qt).__name__}")
    return qt.scale * (qt.q - qt.zero_point).float()


class _FakeQuantize(torch.autograd.Function):
    """Forward: dequantize(quantize(x)). Backward: the straight-through estimator, d out / d x = 1."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bits: int, symmetric: bool, per_channel: bool, axis: int,
                scale_dtype: torch.dtype) -> torch.Tensor:
        # dequantize(quantize(x)) without the integer tensors: the same floats (codes are whole numbers, exact
        # in float32; + 0.0 turns a -0.0 into the 0.0 an integer code gives), in fewer steps on every QAT step.
        validate.bits("bits", bits)
        check_tensor(x, per_channel, axis)
        q, scale, zero_point = _grid(x.detach().float(), bits, symmetric, per_channel, axis, scale_dtype)
        return (scale * (q - zero_point + 0.0)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        # round() has zero gradient almost everywhere; pretending it is the identity lets training move
        # the float weights that the rounding is applied to (Bengio et al. 2013; Jacob et al. 2018).
        return grad_output, None, None, None, None, None


def fake_quantize(x: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = False,
                  axis: int = 0, scale_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """x rounded to its quantization grid but kept in floating point, with a straight-through gradient.

    Used for quantization-aware training: the forward pass sees the quantized values, the backward
    pass updates the underlying float values as if no rounding had happened.
    """
    return _FakeQuantize.apply(x, bits, symmetric, per_channel, axis, scale_dtype)


def quantization_error(x: torch.Tensor, qt: QTensor | Codebook) -> float:
    """Root-mean-square error between x and its dequantized approximation: sqrt(mean((x - dequantize(qt))^2))."""
    return math.sqrt(torch.mean((x.detach().float() - dequantize(qt)) ** 2).item())
