"""qtensor's QuantConfig and k-means limits, and the model conversion built on them (quantization): one config
from QAT to codes, QuantizedLinear's buffers and state_dict, activation grids, shorthand rules."""

import dataclasses
import re

import numpy as np
import pytest
import torch
from torch.ao.quantization.observer import MinMaxObserver

from tutorial_utils import models, qtensor, quantization
from tutorial_utils.qtensor import QuantConfig

# --- QuantConfig ----------------------------------------------------------------------------------------

def test_quantconfig_defaults_and_torch_scale_dtype():
    """Guards: the documented defaults, and scale_dtype names map to the torch dtypes used for scales."""
    assert QuantConfig() == QuantConfig(bits=8, symmetric=True, per_channel=True, scale_dtype="float16")
    assert QuantConfig().torch_scale_dtype is torch.float16
    assert QuantConfig(scale_dtype="float32").torch_scale_dtype is torch.float32
    assert QuantConfig(bits=np.int64(4)) == QuantConfig(bits=4)


def test_quantconfig_is_frozen_and_hashable():
    """Guards: qat_config collects configs in a set, and a config must not change after QAT layers share it."""
    config = QuantConfig(bits=4)
    assert len({config, QuantConfig(bits=4), QuantConfig(bits=5)}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.bits = 8


@pytest.mark.parametrize("bits", [0, 17, 2.0, True, -4, "8", None])
def test_quantconfig_refuses_bad_bits(bits):
    """Guards: bits outside 1..16, floats and bools are refused when the config is made, not at conversion."""
    with pytest.raises(ValueError, match=re.escape(f"bits={bits!r} must be an integer in 1..16")):
        QuantConfig(bits=bits)


@pytest.mark.parametrize("scale_dtype", ["bfloat16", "float64", torch.float16, "fp16", None])
def test_quantconfig_refuses_unknown_scale_dtypes(scale_dtype):
    """Guards: only float32 and float16 scales are stored by the file format; a torch.dtype is not a name."""
    with pytest.raises(ValueError, match=r"scale_dtype=.* must be one of \('float32', 'float16'\)"):
        QuantConfig(scale_dtype=scale_dtype)


@pytest.mark.parametrize("field", ["symmetric", "per_channel"])
@pytest.mark.parametrize("value", [1, 0, "yes", None, np.bool_(True)])
def test_quantconfig_refuses_non_bool_flags(field, value):
    """Guards: symmetric/per_channel must be real bools (1 or "yes" would compare unequal to True in configs)."""
    with pytest.raises(TypeError, match=re.escape(f"{field}={value!r} must be True or False")):
        QuantConfig(**{field: value})


# --- k-means limits (quantization.kmeans_quantize: the public name, wherever the code lives) ---------------

@pytest.mark.parametrize("bits", [9, 16])
def test_kmeans_refuses_more_than_8_bits(bits):
    """Guards: the (values x centroids) distance table would not fit; the limit 1..8 is named."""
    with pytest.raises(ValueError, match=re.escape(f"bits={bits} must be an integer in 1..8")):
        quantization.kmeans_quantize(torch.randn(100, 100), bits)


@pytest.mark.parametrize("numel, bits, suggestion", [(10, 4, 3), (3, 2, 1), (16, 5, 4), (17, 5, 4), (255, 8, 7)])
def test_kmeans_refuses_more_centroids_than_values(numel, bits, suggestion):
    """Guards: 2**bits > numel is a clear ValueError with counts and a bit width that works."""
    x = torch.randn(numel)
    message = f"bits={bits} asks for {2**bits} centroids but x has only {numel} values; use bits <= {suggestion}"
    with pytest.raises(ValueError, match=re.escape(message)):
        quantization.kmeans_quantize(x, bits)
    codebook = quantization.kmeans_quantize(x, suggestion)  # the suggestion itself is accepted
    assert len(codebook.centroids) == 2**suggestion <= numel


@pytest.mark.parametrize("numel", [1, 2, 5])
def test_kmeans_too_many_centroids_message_never_suggests_a_refused_width(numel):
    """Guards: whatever the size, a 'use bits <= k' hint must name a k that kmeans_quantize accepts."""
    x = torch.randn(numel)
    with pytest.raises(ValueError) as info:
        quantization.kmeans_quantize(x, 8)
    hint = re.search(r"use bits <= (\d+)", str(info.value))
    if numel == 1:   # no bit width works: the message says why instead of suggesting one
        assert hint is None and "k-means needs at least 2 values" in str(info.value)
    else:
        assert hint is not None, str(info.value)
        quantization.kmeans_quantize(x, int(hint.group(1)))


# --- QAT conversion: one config --------------------------------------------------------------------------

@pytest.fixture
def model():
    torch.manual_seed(0)
    return models.mlp([12, 8, 5])


@pytest.fixture
def qat4(model):
    qat = quantization.prepare_qat(model, QuantConfig(bits=4))
    with torch.no_grad():  # as if trained: move the weights off the grid they were prepared on
        for p in qat.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return qat


@pytest.mark.parametrize("other", [QuantConfig(bits=8), 8, QuantConfig(bits=4, per_channel=False),
                                   QuantConfig(bits=4, scale_dtype="float32")])
def test_converting_a_qat_model_with_another_config_is_refused(qat4, other):
    """Guards: a model trained on one grid and converted to another would compute something untrained."""
    with pytest.raises(ValueError) as info:
        quantization.quantize_model(qat4, other)
    message = str(info.value)
    assert "differs from the config the QAT model was trained with" in message
    assert f"config={quantization.as_config(other)}" in message and str(QuantConfig(bits=4)) in message


def test_converting_a_qat_model_without_config_uses_the_trained_one(qat4):
    """Guards: config omitted gives the same codes, scales and biases as passing the QAT config (or bits=4)."""
    implicit = quantization.quantize_model(qat4)
    explicit = quantization.quantize_model(qat4, QuantConfig(bits=4))
    shorthand = quantization.quantize_model(qat4, 4)
    for other in (explicit, shorthand):
        for key, value in implicit.state_dict().items():
            assert torch.equal(value, other.state_dict()[key]), key
    assert all(layer.bits == 4 for layer in implicit if isinstance(layer, quantization.QuantizedLinear))


def test_converted_model_computes_what_qat_trained(qat4):
    """Guards: the QuantizedLinear forward equals the FakeQuantLinear forward it was converted from."""
    x = torch.randn(6, 12)
    converted = quantization.quantize_model(qat4)
    torch.testing.assert_close(converted(x), qat4.eval()(x), rtol=0, atol=1e-6)


def test_a_float_model_without_config_is_refused(model):
    """Guards: there is no trained config to fall back on for a plain float model."""
    with pytest.raises(ValueError, match="config=None: give a QuantConfig or bits"):
        quantization.quantize_model(model)


# --- QuantizedLinear buffers ----------------------------------------------------------------------------

def test_state_dict_holds_codes_scales_and_bias_but_not_the_derived_weight(model):
    """Guards: the file-worthy buffers are saved; the dequantized weight (derived) is not."""
    quantized = quantization.quantize_model(model, 4)
    keys = set(quantized.state_dict())
    for i in (0, 2):
        assert {f"{i}.codes", f"{i}.scale", f"{i}.zero_point", f"{i}.bias"} <= keys
        assert f"{i}.weight" not in keys
    assert quantized.state_dict()["0.codes"].dtype == torch.int32
    assert quantized.state_dict()["0.zero_point"].dtype == torch.int32
    kmeans = quantization.quantize_model(model, 3, method="kmeans")
    assert set(kmeans.state_dict()) == {"0.codes", "0.centroids", "0.bias", "2.codes", "2.centroids", "2.bias"}


def test_buffers_move_with_to_and_integer_codes_stay_integer(model):
    """Guards: .to() moves every buffer (derived weight included); a float dtype cast leaves codes int32."""
    quantized = quantization.quantize_model(model, 4)
    on_meta = quantized.to("meta")
    assert all(b.device.type == "meta" for b in on_meta.buffers())
    quantized = quantization.quantize_model(model, 4).to(torch.device("cpu"))
    assert all(b.device.type == "cpu" for b in quantized.buffers())
    doubled = quantization.quantize_model(model, 4).to(torch.float64)
    assert doubled[0].codes.dtype == torch.int32 and doubled[0].zero_point.dtype == torch.int32
    assert doubled[0].scale.dtype == torch.float64


def test_load_state_dict_refreshes_the_derived_weight(model):
    """Guards: after loading another model's codes, the forward pass is exactly that other model's."""
    torch.manual_seed(1)
    other_float = models.mlp([12, 8, 5])
    mine, other = quantization.quantize_model(model, 4), quantization.quantize_model(other_float, 4)
    x = torch.randn(7, 12)
    assert not torch.equal(mine(x), other(x))
    mine.load_state_dict(other.state_dict())
    assert torch.equal(mine(x), other(x))
    assert torch.equal(mine[0].weight, qtensor.dequantize(other[0].qweight))


def test_activation_grid_keeps_only_scale_and_zero_point(model):
    """Guards: with act_bits each layer keeps 0-d act_scale/act_zero_point (as torch's MinMaxObserver computes
    them), never the calibration batch's codes."""
    torch.manual_seed(2)
    calibration = torch.randn(64, 12) * 2 + 0.5
    quantized = quantization.quantize_model(model, 8, act_bits=8, calibration=calibration)
    for i in (0, 2):
        layer = quantized[i]
        assert layer.act_scale.shape == () and layer.act_zero_point.shape == ()
        assert layer.act_zero_point.dtype == torch.int32
        assert layer.act.q.numel() == 0
    per_layer = {key.split(".", 1)[1] for key in quantized.state_dict()}
    assert per_layer == {"codes", "scale", "zero_point", "bias", "act_scale", "act_zero_point"}
    assert all(t.numel() < calibration.numel() for t in quantized.state_dict().values())
    observer = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    observer(calibration)
    scale, zero_point = observer.calculate_qparams()
    torch.testing.assert_close(quantized[0].act_scale, scale.reshape(()), rtol=1e-6, atol=0)
    assert int(quantized[0].act_zero_point) == int(zero_point)


def test_activation_grid_survives_a_state_dict_round_trip(model):
    """Guards: act_scale/act_zero_point are buffers, so loading a state_dict carries the calibrated grid."""
    calibration = torch.randn(32, 12)
    a = quantization.quantize_model(model, 8, act_bits=4, calibration=calibration)
    b = quantization.quantize_model(model, 8, act_bits=4, calibration=calibration * 3)
    x = torch.randn(5, 12) * 3
    assert not torch.equal(a(x), b(x))
    a.load_state_dict(b.state_dict())
    assert torch.equal(a(x), b(x))


# --- as_config ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shorthand", [{"per_channel": False}, {"symmetric": True}, {"half_precision_meta": False}])
def test_as_config_refuses_shorthands_with_a_full_config(shorthand):
    """Guards: QuantConfig plus per_channel=... is ambiguous (which wins?), so it is refused, also via quantize_model."""
    with pytest.raises(ValueError, match=re.escape(f"{sorted(shorthand)} may only be given with bits")):
        quantization.as_config(QuantConfig(bits=4), **shorthand)
    with pytest.raises(ValueError, match="may only be given with bits"):
        quantization.as_config(None, **shorthand)
    with pytest.raises(ValueError, match="may only be given with bits"):
        quantization.quantize_model(models.mlp([4, 2]), QuantConfig(bits=4), **shorthand)


def test_as_config_builds_configs_from_bits_and_shorthands():
    """Guards: bits plus shorthands give the documented config; None stays None; a config passes through."""
    assert quantization.as_config(None) is None
    config = QuantConfig(bits=3, symmetric=False)
    assert quantization.as_config(config) is config
    assert quantization.as_config(4) == QuantConfig(bits=4)
    assert quantization.as_config(4, per_channel=False, symmetric=False, half_precision_meta=False) == QuantConfig(
        bits=4, symmetric=False, per_channel=False, scale_dtype="float32")
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="must be an integer in 1..16"):
            quantization.as_config(bad)


def test_per_channel_along_another_axis_is_one_scale_per_column_by_hand():
    """Guards: axis is honoured (a _reduce that ignored it passed every other test): symmetric 4-bit codes of
    x (5, 7) along axis 1 are round(x / s_j) with s_j = max_i |x_ij| / 7, one scale per column."""
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(4))
    qt = quantization.quantize(x, 4, per_channel=True, axis=1)
    scale = x.abs().amax(dim=0) / 7                                     # (7,)
    assert qt.scale.shape == (1, 7) and qt.axis == 1
    torch.testing.assert_close(qt.scale.flatten(), scale)
    assert torch.equal(qt.q, torch.round(x / scale).to(torch.int32))


def test_float16_scales_are_the_smallest_half_value_not_below_the_exact_scale():
    """Guards: scales stored in 2 bytes are rounded *up* (qtensor._round_scale), so max|x| / scale never exceeds
    the largest code: each is >= the float32 scale, and the half value just below it would be < it."""
    w = torch.randn(16, 9, generator=torch.Generator().manual_seed(5)) * torch.logspace(-3, 3, 16)[:, None]
    exact = quantization.quantize(w, 4, per_channel=True).scale.flatten()
    half = quantization.quantize(w, 4, per_channel=True, scale_dtype=torch.float16).scale.flatten()
    assert torch.equal(half, half.half().float())                       # really half-precision values
    below = torch.nextafter(half.half(), torch.tensor(0.0, dtype=torch.float16)).float()
    assert (half >= exact).all() and (below < exact).all()
    assert quantization.quantize(w, 4, per_channel=True, scale_dtype=torch.float16).q.abs().max() <= 7
    with pytest.raises(ValueError, match=r"does not fit float16 \(5.96e-08 to 65504\)"):
        quantization.quantize(torch.tensor([[1e9, 1.0]]), 8, scale_dtype=torch.float16)
    # a subnormal scale was rounded up to 2^-24 in silence: these weights all became code 0
    with pytest.raises(ValueError, match=r"a scale from 1.57e-11 to 1.57e-11 does not fit float16"):
        quantization.quantize(torch.tensor([[1e-9, -2e-9]]), 8, scale_dtype=torch.float16)


def test_one_bit_asymmetric_by_hand():
    """Guards: the asymmetric formula at its smallest width. x = [-1, 0.2, 0.5, 3]: S = (3 - (-1)) / (2^1 - 1)
    = 4, Z = round(1 / 4) = 0, q = clamp(round(x / 4) + 0, 0, 1) = [0, 0, 0, 1], dequantized [0, 0, 0, 4]
    (every error within S / 2 = 2)."""
    qt = quantization.quantize(torch.tensor([-1.0, 0.2, 0.5, 3.0]), 1, symmetric=False)
    assert qt.q.tolist() == [0, 0, 0, 1] and qt.scale.item() == 4.0 and qt.zero_point.item() == 0
    assert quantization.dequantize(qt).tolist() == [0.0, 0.0, 0.0, 4.0]
