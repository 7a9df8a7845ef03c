import os
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from tutorial_utils import int8, models, quantization


@pytest.fixture
def layer():
    torch.manual_seed(0)
    return torch.nn.Linear(64, 16)


@pytest.mark.parametrize("symmetric_input", [True, False])
def test_integer_linear_equals_the_fake_quantized_layer(layer, symmetric_input):
    x = torch.randn(8, 64)
    xq = quantization.quantize(x, 8, symmetric=symmetric_input)
    wq = quantization.quantize(layer.weight, 8, per_channel=True)
    expected = F.linear(quantization.dequantize(xq), quantization.dequantize(wq), layer.bias)
    got = int8.integer_linear(xq, wq, layer.bias)
    # the only difference is the bias rounded to the accumulator grid: at most half a step per output
    step = xq.scale * wq.scale.reshape(1, -1)
    assert torch.all((got - expected).abs() <= step / 2 + 1e-5)


def test_integer_linear_accumulates_exactly_in_integers(layer):
    x = torch.rand(4, 64)
    xq = int8.quantize_input(x)
    wq = quantization.quantize(layer.weight, 8, per_channel=True)
    exact = (xq.q.long() - xq.zero_point.long()) @ wq.q.long().T
    zero_bias = torch.zeros(16)
    torch.testing.assert_close(int8.integer_linear(xq, wq, zero_bias), (xq.scale * wq.scale.reshape(1, -1)) * exact.float())


def test_integer_linear_rejects_mismatches(layer):
    xq = quantization.quantize(torch.randn(2, 32), 8)
    wq = quantization.quantize(layer.weight, 8, per_channel=True)
    with pytest.raises(ValueError, match="x has 32 features but w expects 64"):
        int8.integer_linear(xq, wq, layer.bias)
    with pytest.raises(ValueError, match="symmetric per channel"):
        int8.integer_linear(quantization.quantize(torch.randn(2, 64), 8), quantization.quantize(layer.weight, 8),
                            layer.bias)


@pytest.mark.parametrize("backend", ["torchao", "legacy"])
def test_backends_stay_close_to_float(backend):
    torch.manual_seed(0)
    model = models.teacher().eval()
    fast = int8.to_backend(model, backend)
    x = torch.randn(32, 784)
    with torch.no_grad():
        reference, got = model(x), fast(x)
    assert (got - reference).abs().max() < 0.05 * reference.abs().max()
    assert isinstance(model[0], torch.nn.Linear)  # the float model is unchanged


def test_bad_backend_and_deprecation_message():
    with pytest.raises(ValueError, match="backend='tensorrt'"):
        int8.to_backend(models.teacher(), "tensorrt")
    assert "deprecated" in int8.legacy_deprecation_message()


def test_quantize_multiplier_represents_m_with_a_31_bit_mantissa():
    m = torch.tensor([0.5, 0.75, 1e-3, 0.999999999, 1 - 2.0**-33, 2.0**-20 * 1.2345], dtype=torch.float64)
    m0, shift = int8.quantize_multiplier(m)
    assert bool(((m0 >= 2**30) & (m0 < 2**31)).all()) and bool((shift >= 0).all())
    torch.testing.assert_close(m0.double() * 2.0 ** (-31 - shift.double()), m.double(), rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match=r"multiplier must lie in \(0, 1\)"):
        int8.quantize_multiplier(torch.tensor([1.5]))


def test_requantize_matches_the_float_reference():
    generator = torch.Generator().manual_seed(3)
    accumulator = torch.randint(-2**20, 2**20, (64, 16), generator=generator, dtype=torch.int32)
    multiplier = torch.rand(16, generator=generator, dtype=torch.float64) * 1e-4 + 1e-6     # per output channel
    m0, shift = int8.quantize_multiplier(multiplier)
    for relu, zero_point in ((False, 128), (True, 3)):
        codes = int8.requantize(accumulator, m0, shift, zero_point, relu=relu)
        assert codes.dtype == torch.uint8
        reference = torch.round(accumulator.double() * multiplier) + zero_point
        reference = reference.clamp(zero_point if relu else 0, 255)
        # M0 / 2^(31 + n) carries the multiplier to 31 bits: on these accumulators not one code differs
        # (truncating instead of rounding would be off by one on about half of them)
        assert torch.equal(codes.double(), reference)
        if relu:
            assert int(codes.min()) >= zero_point          # ReLU is the lower clamp at the zero point
    # exact ties round half up, as the docstring says: 0.5 -> 1, 1.5 -> 2, -0.5 -> 0, -1.5 -> -1, 2.5 -> 3
    half_m0, half_shift = int8.quantize_multiplier(torch.tensor([0.5], dtype=torch.float64))
    ties = int8.requantize(torch.tensor([[1, 3, -1, -3, 5]], dtype=torch.int32), half_m0, half_shift, 100)
    assert ties.tolist() == [[101, 102, 100, 99, 103]]
    with pytest.raises(TypeError, match="int32"):
        int8.requantize(accumulator.float(), m0, shift, 0)
    with pytest.raises(ValueError, match="zero_point"):
        int8.requantize(accumulator, m0, shift, 300)
    # a shift past 31 would shift int64 by 64 or more: refused, where it once gave 99 instead of 100
    tiny_m0, tiny_shift = int8.quantize_multiplier(torch.tensor([2.0**-40], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shift must hold 0..31 .*got 39 to 39"):
        int8.requantize(torch.tensor([[-2**31, -5]], dtype=torch.int32), tiny_m0, tiny_shift, 100)
    smallest_m0, largest_shift = int8.quantize_multiplier(torch.tensor([2.0**-32], dtype=torch.float64))
    assert int(largest_shift) == 31                                     # the smallest multiplier still taken
    assert int8.requantize(torch.tensor([[-2**31, 2**31 - 1]]), smallest_m0, largest_shift, 100).tolist() == [[100, 100]]
    with pytest.raises(ValueError, match=r"accumulator must hold int32 values; got 0 to 4294967296"):
        int8.requantize(torch.tensor([[0, 2**32]]), m0[:2], shift[:2], 0)


def test_accumulate_is_the_exact_integer_sum():
    """Guards: the int32 accumulators are sum_i (qx_i - Zx) qw_ji + round(b_j / (Sx Sw_j)) exactly, computed
    here in int64 without the int8 kernel or the 128-shift trick; the float result is only checked loosely."""
    generator = torch.Generator().manual_seed(11)
    x = quantization.quantize(torch.randn(32, 64, generator=generator), 8, symmetric=False)
    w = quantization.quantize(torch.randn(16, 64, generator=generator), 8, per_channel=True)
    bias = torch.randn(16, generator=generator)
    got = int8.accumulate(x, w, bias)
    centred = x.q.to(torch.int64) - x.zero_point.to(torch.int64)                 # (32, 64)
    expected = centred @ w.q.to(torch.int64).T + torch.round(bias / (x.scale * w.scale.reshape(-1))).to(torch.int64)
    assert got.dtype == torch.int32 and torch.equal(got.to(torch.int64), expected)


def test_accumulators_beyond_int32_are_refused_not_wrapped():
    x = quantization.quantize(torch.randn(4, 8), 8, symmetric=False)
    w = quantization.quantize(torch.randn(3, 8), 8, per_channel=True)
    with pytest.raises(ValueError, match="beyond int32; the bias is too large"):
        int8.accumulate(x, w, torch.full((3,), 1e12))


def _saturating_int_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """An int8 product as a kernel without VNNI computes it: a + 128 in uint8, pairs of products in int16."""
    products = (a.long() + 128)[:, :, None] * b.long()[None]                      # (m, k, n)
    pairs = products.reshape(a.shape[0], -1, 2, b.shape[1]).sum(dim=2).clamp(-2**15, 2**15 - 1)
    return (pairs.sum(dim=1) - 128 * b.long().sum(dim=0)).to(torch.int32)


@pytest.mark.parametrize("kernel, expected", [(_saturating_int_mm, True),
                                              (lambda a, b: (a.long() @ b.long()).int(), False)])
def test_kernel_saturates_tells_a_saturating_kernel_from_an_exact_one(monkeypatch, kernel, expected):
    monkeypatch.setattr(torch, "_int_mm", kernel)
    int8.kernel_saturates.cache_clear()
    try:
        assert int8.kernel_saturates() is expected
    finally:
        int8.kernel_saturates.cache_clear()


def test_accumulate_does_not_use_the_int8_kernel(monkeypatch, layer):
    # a guard, not a probe: with a saturating stand-in for torch._int_mm (a non-VNNI CPU's int8 kernel), the
    # integer-only sums must stay exact, so accumulate must never come to call that kernel
    monkeypatch.setattr(torch, "_int_mm", _saturating_int_mm)
    x = torch.full((4, 64), 1.0)
    xq = quantization.quantize(x, 8)
    wq = quantization.quantize(layer.weight, 8, per_channel=True)
    exact = xq.q.long() @ wq.q.long().T + torch.round(layer.bias.detach() / (xq.scale * wq.scale.flatten())).long()
    assert torch.equal(int8.accumulate(xq, wq, layer.bias), exact.int())


@pytest.mark.parametrize("saturates, largest_code", [(True, 64), (False, 128)])
def test_torchao_takes_7_bit_codes_where_the_kernel_saturates(monkeypatch, saturates, largest_code):
    monkeypatch.setattr(int8, "kernel_saturates", lambda: saturates)
    codes = int8.to_backend(models.teacher(), "torchao")[0].weight.qdata
    assert codes.abs().max().item() in (largest_code - 1, largest_code)   # 2 x 255 x 64 fits int16; x 127 does not


def test_legacy_backend_keeps_one_scale_per_row():
    fast = int8.to_backend(models.teacher(), "legacy")
    assert fast[0].weight().qscheme() == torch.per_channel_affine


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the AVX2 cap is for x86 CPUs")
def test_where_the_int8_kernel_saturates_the_sums_stay_exact_and_torchao_close(tmp_path):
    """oneDNN capped to AVX2 on this CPU (no VNNI instructions): its int8 kernel, which torch._int_mm runs here,
    saturates. This is how the saturating branch is exercised; on a CPU that reports no VNNI, PyTorch 2.14 took
    an exact path instead (scripts/emulated_avx2.py), so int8.kernel_saturates probes rather than guesses."""
    script = tmp_path / "avx2.py"
    script.write_text(
        "import torch\n"
        "from tutorial_utils import int8, models, quantization\n"
        "assert int8.kernel_saturates(), 'the AVX2 cap did not take: torch._int_mm is exact'\n"
        "torch.manual_seed(0)\n"
        "layer = torch.nn.Linear(64, 16)\n"
        "xq = quantization.quantize(torch.full((4, 64), 1.0), 8)\n"
        "wq = quantization.quantize(layer.weight, 8, per_channel=True)\n"
        "exact = xq.q.long() @ wq.q.long().T + torch.round(layer.bias.detach() / (xq.scale * wq.scale.flatten())).long()\n"
        "assert torch.equal(int8.accumulate(xq, wq, layer.bias), exact.int())\n"
        "model = models.teacher().eval()\n"
        "x = torch.randn(32, 784)\n"
        "with torch.no_grad():\n"
        "    reference, got = model(x), int8.to_backend(model, 'torchao')(x)\n"
        "assert (got - reference).abs().max() < 0.05 * reference.abs().max(), 'torchao saturated'\n")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
