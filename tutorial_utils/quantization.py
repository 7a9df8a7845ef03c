"""Quantization: the affine scheme r = S (q - Z), fake quantization for training, k-means weight sharing.

Uniform (Jacob et al. 2018), b bits:
    symmetric   q in [-(2^(b-1) - 1), 2^(b-1) - 1], Z = 0,   S = max|x| / (2^(b-1) - 1)
                (b = 1: q = sign(x) in {-1, +1}, S = mean|x|, the binary scheme of XNOR-Net)
    asymmetric  q in [0, 2^b - 1],  S = (max - min) / (2^b - 1),  Z = round(-min / S)
                (min <= 0 <= max is enforced, so that 0 is exactly representable)
    q = clamp(round(x / S) + Z, qmin, qmax),   x ~ S (q - Z),   |x - S (q - Z)| <= S / 2 inside the range.
Per channel (axis=0) gives each output row of a weight matrix its own S and Z, so one large row
does not coarsen the grid of all the others.

Example:
    >>> qt = quantize(torch.tensor([-1.0, 0.0, 0.5, 1.0]), 8)
    >>> qt.q.tolist(), round(qt.scale.item(), 5)
    ([-127, 0, 64, 127], 0.00787)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch


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


def check_bits(bits: int, name: str = "bits") -> None:
    """Raise ValueError unless bits is an integer in 1..16."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"{name}={bits!r} must be an integer in 1..16")


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """(qmin, qmax) of the integer codes."""
    if symmetric:
        return (-1, 1) if bits == 1 else (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
    return 0, 2**bits - 1


def _check_tensor(x: torch.Tensor, per_channel: bool, axis: int) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    if x.numel() == 0:
        raise ValueError("x is empty: there is nothing to quantize")
    if not torch.isfinite(x).all():
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
    rounded = scale.to(torch.float16)
    rounded = torch.where(rounded.float() < scale, torch.nextafter(rounded, torch.tensor(float("inf"), dtype=torch.float16)), rounded)
    if not torch.isfinite(rounded).all() or (rounded == 0).any():
        raise ValueError("the scale does not fit float16 (values too large or too small); use scale_dtype=torch.float32")
    return rounded.float()


def quantize(x: torch.Tensor, bits: int, *, symmetric: bool = True, per_channel: bool = False,
             axis: int = 0, scale_dtype: torch.dtype = torch.float32) -> QTensor:
    """Affine quantization of x to `bits`-bit integer codes (see the module docstring for the formulas).

    scale_dtype=torch.float16 rounds each scale up to a half-precision value, so that a file can store
    it in 2 bytes without changing the model.
    """
    check_bits(bits)
    _check_tensor(x, per_channel, axis)
    x = x.detach().float()
    qmin, qmax = qrange(bits, symmetric)
    if symmetric and bits == 1:
        scale = _round_scale(_reduce(x.abs(), "mean", per_channel, axis), scale_dtype)
        q = torch.where(x >= 0, 1, -1)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    elif symmetric:
        scale = _round_scale(_reduce(x.abs(), "max", per_channel, axis) / qmax, scale_dtype)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
        q = torch.clamp(torch.round(x / scale), qmin, qmax)
    else:
        low = torch.clamp(_reduce(x, "min", per_channel, axis), max=0.0)
        high = torch.clamp(_reduce(x, "max", per_channel, axis), min=0.0)
        scale = _round_scale((high - low) / (qmax - qmin), scale_dtype)
        zero_point = torch.clamp(torch.round(-low / scale), qmin, qmax).to(torch.int32)
        q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
    return QTensor(q.to(torch.int32), scale, zero_point, bits, symmetric, axis % x.ndim if per_channel else None)


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
        qt = quantize(x, bits, symmetric=symmetric, per_channel=per_channel, axis=axis, scale_dtype=scale_dtype)
        return dequantize(qt).to(x.dtype)

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


def kmeans_quantize(x: torch.Tensor, bits: int, *, iterations: int = 30) -> Codebook:
    """Weight sharing (Han et al. 2016): cluster the values of x into 2^bits centroids with k-means.

    Centroids start evenly spaced between min(x) and max(x) (the "linear" initialisation Han et al.
    found best, since it keeps the rare large weights), then Lloyd's algorithm alternates
    assignment q_i = argmin_k |x_i - c_k| and update c_k = mean of the x_i assigned to k.
    Exact zeros (pruned weights) keep a centroid of their own, fixed at 0, and are not clustered.
    """
    check_bits(bits)
    _check_tensor(x, False, 0)
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations={iterations!r} must be a positive integer")
    flat = x.detach().float().reshape(-1)
    nonzero = flat != 0
    zero_code = 0 if not nonzero.all() else None
    values = flat[nonzero] if zero_code is not None and nonzero.any() else flat
    k = 2**bits - (1 if zero_code is not None else 0)
    centroids = torch.linspace(values.min().item(), values.max().item(), max(k, 1))
    for _ in range(iterations if k > 0 else 0):
        q = (values[:, None] - centroids[None, :]).abs().argmin(dim=1)  # (n,) nearest centroid
        sums = torch.zeros_like(centroids).index_add_(0, q, values)
        counts = torch.bincount(q, minlength=len(centroids)).float()
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)  # empty clusters stay put
    if zero_code is not None:
        centroids = torch.cat([torch.zeros(1), centroids[:k]])
    q = (flat[:, None] - centroids[None, :]).abs().argmin(dim=1)
    if zero_code is not None:  # every exact zero on the pinned centroid, every non-zero off it
        others = (flat[:, None] - centroids[None, 1:]).abs().argmin(dim=1) + 1 if k > 0 else q
        q = torch.where(nonzero, others, torch.zeros_like(q))
    return Codebook(q.reshape(x.shape).to(torch.int32), centroids, bits, zero_code)


def quantization_error(x: torch.Tensor, qt: QTensor | Codebook) -> float:
    """Root-mean-square error between x and its dequantized approximation."""
    return math.sqrt(torch.mean((x.detach().float() - dequantize(qt)) ** 2).item())


class QuantizedLinear(torch.nn.Module):
    """A Linear layer whose weight is stored as integer codes (uniform or k-means) plus float32 bias.

    The forward pass uses the dequantized weight in float32 ("simulated" quantization): the codes are
    what a file stores and an integer kernel would use; the arithmetic here is still float. With
    `act_bits`, inputs are fake-quantized per tensor with a scale calibrated on real batches.
    """

    def __init__(self, weight: QTensor | Codebook, bias: torch.Tensor, *, act: QTensor | None = None) -> None:
        super().__init__()
        self.qweight, self.act = weight, act
        self.register_buffer("weight", dequantize(weight).float())  # cached: dequantize once, not per call
        self.register_buffer("bias", bias.detach().float().clone())

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act is not None:  # activation grid fixed at calibration: clamp to it, round to it
            qmin, qmax = qrange(self.act.bits, self.act.symmetric)
            scale, zero_point = self.act.scale.to(x.device), self.act.zero_point.to(x.device)
            x = scale * (torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) - zero_point)
        return torch.nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        kind = "k-means" if isinstance(self.qweight, Codebook) else "uniform"
        acts = f", act_bits={self.act.bits}" if self.act is not None else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.qweight.bits} ({kind}){acts}"


class FakeQuantLinear(torch.nn.Linear):
    """nn.Linear whose forward uses fake_quantize(weight): quantization-aware training through training.fit."""

    bits: int = 8
    per_channel: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The same grid quantize_model will use: float16 scales, float16 biases (straight-through).
        weight = fake_quantize(self.weight, self.bits, per_channel=self.per_channel, scale_dtype=torch.float16)
        bias = self.bias + (self.bias.to(torch.float16).float() - self.bias).detach()
        return torch.nn.functional.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", bits={self.bits}, per_channel={self.per_channel}"


def _replace_linears(model: torch.nn.Module, build) -> torch.nn.Sequential:
    if not isinstance(model, torch.nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
    layers = [build(m) if isinstance(m, torch.nn.Linear) else copy.deepcopy(m) for m in model]
    return torch.nn.Sequential(*layers)


def prepare_qat(model: torch.nn.Sequential, bits: int, *, per_channel: bool = True) -> torch.nn.Sequential:
    """A copy of `model` with every nn.Linear replaced by a FakeQuantLinear of the same weights."""
    check_bits(bits)

    def build(linear: torch.nn.Linear) -> FakeQuantLinear:
        layer = FakeQuantLinear(linear.in_features, linear.out_features, device=linear.weight.device)
        layer.load_state_dict(linear.state_dict())
        layer.bits, layer.per_channel = bits, per_channel
        return layer

    return _replace_linears(model, build)


@torch.no_grad()
def dequantize_model(model: torch.nn.Sequential) -> torch.nn.Sequential:
    """A float copy: every QuantizedLinear becomes an nn.Linear holding its dequantized weights.

    Used to hand a quantized model to an int8 backend, whose converter expects nn.Linear layers.
    """
    def build(layer: torch.nn.Module) -> torch.nn.Module:
        if not isinstance(layer, QuantizedLinear):
            return copy.deepcopy(layer)
        linear = torch.nn.Linear(layer.in_features, layer.out_features)
        linear.weight.copy_(layer.weight)
        linear.bias.copy_(layer.bias)
        return linear

    if not isinstance(model, torch.nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
    return torch.nn.Sequential(*[build(m) for m in model])


@torch.no_grad()
def quantize_model(model: torch.nn.Sequential, bits: int, *, per_channel: bool = True, symmetric: bool = True,
                   method: str = "uniform", act_bits: int | None = None, calibration: torch.Tensor | None = None,
                   half_precision_meta: bool = True) -> torch.nn.Sequential:
    """Post-training quantization: a copy of `model` whose Linear weights are `bits`-bit codes.

    method="uniform" uses quantize(...); method="kmeans" uses kmeans_quantize (per layer).
    With act_bits, each layer's input is quantized asymmetrically per tensor, with min and max
    calibrated by running `calibration` inputs (a few hundred training images) through the model.
    With half_precision_meta (the default), weight scales are rounded up to float16 and biases rounded
    to float16, so the file stores them in 2 bytes each with an exact round trip; the effect on
    accuracy is far below the quantization of the weights themselves.
    Works on nn.Linear and FakeQuantLinear layers (after QAT). The input model is not changed.
    """
    check_bits(bits)
    if method not in ("uniform", "kmeans"):
        raise ValueError(f"method={method!r} must be 'uniform' or 'kmeans'")
    if act_bits is not None:
        check_bits(act_bits, "act_bits")
        if calibration is None or calibration.ndim != 2:
            raise ValueError("act_bits needs calibration inputs of shape (n, features)")
    inputs: list[torch.Tensor] = []
    if act_bits is not None:  # record every Linear's input on the calibration batch
        hooks = [m.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach()))
                 for m in model if isinstance(m, torch.nn.Linear)]
        was_training = model.training
        model.eval()(calibration.to(next(model.parameters()).device))
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    recorded = iter(inputs)

    def build(linear: torch.nn.Linear) -> QuantizedLinear:
        scale_dtype = torch.float16 if half_precision_meta else torch.float32
        weight = (kmeans_quantize(linear.weight, bits) if method == "kmeans"
                  else quantize(linear.weight, bits, symmetric=symmetric, per_channel=per_channel, scale_dtype=scale_dtype))
        act = quantize(next(recorded), act_bits, symmetric=False) if act_bits is not None else None
        bias = linear.bias.detach().to(scale_dtype).float()
        return QuantizedLinear(weight, bias, act=act)

    return _replace_linears(model, build).eval()
