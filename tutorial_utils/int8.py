"""Integer-only inference and real int8 backends: where quantization turns into speed (or does not).

Integer-only Linear (Jacob et al. 2018), input x ~ Sx (qx - Zx) per tensor, weight w ~ Sw qw per
output channel (symmetric, Zw = 0):
    y_j = sum_i x_i w_ji + b_j ~ Sx Sw_j * ( sum_i (qx_i - Zx) qw_ji  +  qb_j ),   qb_j = round(b_j / (Sx Sw_j))
The sum runs over int8 products accumulated in int32; one float multiply per output rescales it.

For speed, the float model is handed to a maintained int8 backend: torchao's `quantize_` with
`Int8DynamicActivationInt8WeightConfig` (weights int8 per channel, activations quantized on the fly
per row), or the deprecated `torch.ao.quantization.quantize_dynamic` (fbgemm/x86 kernels; weights int8
per channel here, activations rounded to 7 bits). On CPUs without VNNI int8 kernels can saturate
(`kernel_saturates`): the integer-only sums here are computed exactly in int64, and torchao is given
7-bit codes there.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import warnings

import torch
from torch import nn

from tutorial_utils import validate
from tutorial_utils.qtensor import QTensor, quantize

BACKENDS = ("torchao", "torchao+compile", "legacy")


def integer_linear(x: QTensor, w: QTensor, bias: torch.Tensor) -> torch.Tensor:
    """y = Sx Sw (int32 sum of (qx - Zx) qw + qb): a Linear layer computed with integer arithmetic.

    x: per-tensor QTensor of shape (batch, in); w: symmetric per-channel QTensor of shape (out, in),
    both of at most 8 bits. Returns float32 (batch, out), equal to F.linear(dequantize(x), dequantize(w),
    bias) up to the rounding of the bias to integers and F.linear's own float32 rounding (the integer sums
    are exact). `accumulate` returns the int32 sums themselves.
    """
    return x.scale * w.scale.reshape(1, -1) * accumulate(x, w, bias).float()


def accumulate(x: QTensor, w: QTensor, bias: torch.Tensor) -> torch.Tensor:
    """The int32 accumulators sum_i (qx_i - Zx) qw_ji + qb_j of integer_linear, (batch, out)."""
    if x.axis is not None or x.bits > 8 or w.bits > 8 or not w.symmetric or w.axis != 0:
        raise ValueError("integer_linear needs x per tensor and w symmetric per channel (axis 0), both <= 8 bits")
    if x.q.shape[1] != w.q.shape[1]:
        raise ValueError(f"x has {x.q.shape[1]} features but w expects {w.q.shape[1]}")
    # Unsigned 8-bit input codes 0..255 become int8 by a shift of 128: (qx - Zx) = (qx - 128) - (Zx - 128).
    shift = 0 if x.symmetric else 2 ** (x.bits - 1)
    qx, qw = (x.q - shift).to(torch.int8), w.q.to(torch.int8)
    # The product of the int8 codes, summed exactly in int64 on every CPU. torch._int_mm is PyTorch's int8 x
    # int8 -> int32 kernel for the same product, but on a CPU without VNNI it can saturate (kernel_saturates).
    # (int64 products have no CUDA kernel: GPU codes are summed on the CPU, exact either way)
    accumulator = (qx.cpu().long() @ qw.cpu().long().T).to(qx.device)   # (batch, out)
    zero_point = (x.zero_point - shift).to(torch.int64)
    scale = x.scale * w.scale.reshape(1, -1)                         # (1, out): Sx Sw_j
    qbias = torch.round(bias.detach() / scale).to(torch.int64)       # bias on the accumulator's grid
    # the Zx term per output and the bias, summed in int64 so that an overflow is seen, not wrapped
    total = accumulator - zero_point * qw.to(torch.int64).sum(dim=1) + qbias
    if total.numel() and total.abs().max() >= 2**31:
        raise ValueError(f"the accumulators reach {total.abs().max().item():,}, beyond int32; the bias is too large "
                         f"for the scales Sx Sw (its codes reach {qbias.abs().max().item():,})")
    return total.to(torch.int32)


@functools.lru_cache(maxsize=None)
def kernel_saturates() -> bool:
    """Whether this CPU's int8 matrix product (torch._int_mm) saturates, as oneDNN's kernels without VNNI do.

    Without VNNI (AVX2, AVX-512 before VNNI) those kernels multiply uint8 by int8 codes and add each pair of
    products in a 16-bit integer (vpmaddubsw), shifting signed inputs by 128 into uint8 first: a pair can
    reach 2 x 255 x 127 = 64,770 > 32,767 and clips before the int32 sum. VNNI's vpdpbusd adds into int32
    directly. Which kernel torch._int_mm runs is PyTorch's choice, by CPU and build: oneDNN capped to AVX2
    on a VNNI CPU (ONEDNN_MAX_CPU_ISA) saturates, while on an emulated AVX2-only CPU PyTorch 2.14 took an
    exact path (scripts/emulated_avx2.py), so this probes rather than guesses from the instruction set.
    The probe multiplies codes of 127 and compares with the exact sum 127 x 127 x 64 = 1,032,256.
    Side effects: none (one 32 x 64 x 32 product, computed once per process).
    """
    x, w = torch.full((32, 64), 127, dtype=torch.int8), torch.full((64, 32), 127, dtype=torch.int8)
    try:
        got = torch._int_mm(x, w)
    except RuntimeError:   # no int8 kernel in this build: nothing that could saturate
        return False
    return bool((got != 127 * 127 * 64).any())


@contextlib.contextmanager
def quiet_torch_logs():
    """Silence torch's logger (torch.compile chatter) inside the block; its level is restored after."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def to_backend(model: nn.Module, backend: str = "torchao") -> nn.Module:
    """An int8 copy of a float MLP for real speed: "torchao", "torchao+compile" or "legacy" (deprecated).

    torch.compile needs a C++ compiler and takes seconds to tens of seconds the first time it runs; this
    function runs the compiled model on (2, in_features) and (1, in_features) batches of zeros under
    torch.inference_mode, as timing.latency_ms calls it, so that compiling happens here and not in a timing.
    torchao's codes are 7-bit (reduce_range) on a CPU whose int8 kernel saturates (kernel_saturates), 8-bit
    elsewhere. The copy is on the CPU, whatever device `model` is on. Raises RuntimeError naming the
    backend if it is not available here (no torchao, no compiler).
    """
    validate.choice("backend", backend, BACKENDS)
    model = copy.deepcopy(model).cpu().eval()   # these int8 kernels are CPU kernels: a GPU model's copy moves
    if backend == "legacy":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation is taught in notebook 03, not repeated on every call
            # one scale per output row, as the tutorial's own codes have; the dynamic Linear quantizes its
            # activations to 7 bits (reduce_range), keeping uint8 x int8 pairs inside 16 bits on CPUs without VNNI
            per_row = torch.ao.quantization.per_channel_dynamic_qconfig
            return torch.ao.quantization.quantize_dynamic(model, {nn.Linear: per_row}, dtype=torch.qint8)
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as exc:
        raise RuntimeError(f"backend={backend!r} needs torchao (pip install torchao): {exc}") from exc
    # Where the CPU's int8 kernel saturates (no VNNI), halve the ranges of weights and activations (7 bits),
    # as fbgemm does for its activations: every pair of products then fits in 16 bits. Elsewhere keep 8 bits.
    quantize_(model, Int8DynamicActivationInt8WeightConfig(reduce_range=kernel_saturates()))
    if not backend.endswith("+compile"):
        return model
    compiled = torch.compile(model, dynamic=True)
    # torch.compile is lazy: without a C++ compiler it fails on the first call, so make that call here
    # (where the caller catches it) rather than in the middle of a timing loop.
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    try:
        # one graph for any batch of 2 or more rows (dynamic) and one for a single row (torch.compile
        # specialises size 1), traced as timing calls it (an ordinary tensor under inference_mode): a
        # no_grad call, or an input made inside inference_mode, would be compiled again there
        for x in (torch.zeros(2, first.in_features), torch.zeros(1, first.in_features)):
            with torch.inference_mode():
                compiled(x)
    except Exception as exc:
        raise RuntimeError(f"backend={backend!r} could not compile here ({type(exc).__name__}: "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); it needs a working "
                           f"C++ compiler. Use backend='torchao', or DC_COMPILE=0 in notebook 03") from exc
    return compiled


def legacy_deprecation_message() -> str:
    """The first line of the warning torch.ao.quantization.quantize_dynamic raises, or '' if none."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.utils.skip_init(nn.Linear, 2, 2)), {nn.Linear},
                                               dtype=torch.qint8)
    messages = [str(w.message).strip().splitlines()[0] for w in caught if "deprecated" in str(w.message)]
    return messages[0] if messages else ""


def quantize_input(x: torch.Tensor, bits: int = 8) -> QTensor:
    """Per-tensor asymmetric quantization of activations, as integer_linear expects them (1 to 8 bits: the
    integer kernels multiply 8-bit codes, so wider inputs are refused here, not deep inside them)."""
    return quantize(x, validate.bits("bits", bits, high=8), symmetric=False)


def quantize_multiplier(multiplier: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real multipliers M in (0, 1) as M = M0 * 2^-(31 + n): M0 an int64 holding an int32 in [2^30, 2^31),
    n >= 0 an integer shift (Jacob et al. 2018, section 2.2), one per element. Returns (M0, n)."""
    multiplier = torch.as_tensor(multiplier, dtype=torch.float64)
    if not bool(((multiplier > 0) & (multiplier < 1)).all()):
        raise ValueError(f"multiplier must lie in (0, 1) (Sx * Sw / Sy); got values from {multiplier.min().item()} "
                         f"to {multiplier.max().item()}")
    mantissa, exponent = torch.frexp(multiplier)                     # M = mantissa * 2^exponent, mantissa in [0.5, 1)
    m0 = torch.round(mantissa * 2.0**31).to(torch.int64)
    shift = (-exponent).to(torch.int64)
    carry = m0 == 2**31                                              # mantissa rounded up to 1.0
    m0, shift = torch.where(carry, m0 // 2, m0), torch.where(carry, shift - 1, shift)
    at_one = shift < 0                                               # M rounded to 1: the largest M0 below it
    return torch.where(at_one, torch.full_like(m0, 2**31 - 1), m0), torch.where(at_one, torch.zeros_like(shift), shift)


def requantize(accumulator: torch.Tensor, m0: torch.Tensor, shift: torch.Tensor, zero_point: int, *,
               relu: bool = False) -> torch.Tensor:
    """int32 accumulators -> uint8 output codes with integer arithmetic only:

        q_y = clamp(Zy + round(acc * M0 / 2^(31 + n)), low, 255),   low = Zy with relu (ReLU as a clamp), else 0

    The product is formed in int64 and rounded half up by adding 2^(30 + n) before the shift; it fits
    (|acc| <= 2^31, M0 < 2^31, n <= 31) with room for the rounding term. A multiplier below 2^-32 (n > 31)
    would shift past int64; it would round every int32 accumulator to 0 anyway, and is refused.
    m0 and shift broadcast over the accumulator's last dimension (one per output channel, or one).
    """
    if accumulator.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"accumulator must be an int32 (or int64) tensor, got {accumulator.dtype}")
    for name, value, low, high, meaning in (("accumulator", accumulator, -2**31, 2**31 - 1, "int32 values"),
                                            ("m0", m0, 0, 2**31 - 1, "0..2^31 - 1 (quantize_multiplier)"),
                                            ("shift", shift, 0, 31, "0..31 (multipliers from 2^-32 to 1)")):
        smallest, largest = (int(value.min()), int(value.max())) if value.numel() else (low, high)
        if smallest < low or largest > high:   # compared as Python ints: an int32 tensor cannot hold 2^31
            raise ValueError(f"{name} must hold {meaning}; got {smallest} to {largest}")
    validate.integer("zero_point", zero_point, low=0, high=255)
    total_shift = 31 + shift.to(torch.int64)
    product = accumulator.to(torch.int64) * m0.to(torch.int64)
    rounded = (product + (torch.ones_like(total_shift) << (total_shift - 1))) >> total_shift
    return torch.clamp(rounded + zero_point, zero_point if relu else 0, 255).to(torch.uint8)
