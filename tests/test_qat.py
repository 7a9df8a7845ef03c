"""qat: FakeQuantLinear against the reference fake quantization, prepare_qat's copy, and the config's rules."""

import pytest
import torch
from torch import nn

from tutorial_utils import models, qat, quantization
from tutorial_utils.qtensor import QuantConfig


def test_fake_quant_linear_is_a_linear_of_the_fake_quantized_weight_and_rounded_bias():
    """forward(x) = x W_q^T + b_h with W_q = fake_quantize(W) on the config's grid and b_h the bias as the
    conversion will store it (float16 here); gradients reach W straight through the rounding."""
    torch.manual_seed(0)
    config = QuantConfig(bits=3, per_channel=True, scale_dtype="float16")
    layer = qat.FakeQuantLinear(6, 4, config)
    x = torch.randn(5, 6)
    weight = quantization.fake_quantize(layer.weight, 3, per_channel=True, scale_dtype=torch.float16)
    expected = x @ weight.T + layer.bias.half().float()
    torch.testing.assert_close(layer(x), expected)
    layer(x).sum().backward()
    torch.testing.assert_close(layer.weight.grad, torch.ones(5, 4).T @ x)   # the straight-through gradient
    with pytest.raises(TypeError, match="config must be a QuantConfig, got int"):
        qat.FakeQuantLinear(6, 4, 4)


def test_prepare_qat_copies_the_weights_and_leaves_the_model_and_the_random_stream_alone():
    torch.manual_seed(0)
    model = models.mlp([6, 5, 3], dropout=0.2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    prepared = qat.prepare_qat(model, 4)
    assert torch.equal(torch.get_rng_state(), state)
    assert [type(m).__name__ for m in prepared] == ["FakeQuantLinear", "ReLU", "Dropout", "FakeQuantLinear"]
    assert all(torch.equal(prepared.state_dict()[k], v) for k, v in before.items())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items()) and isinstance(model[0], nn.Linear)
    assert qat.qat_config(prepared) == QuantConfig(bits=4) and qat.qat_config(model) is None


def test_replace_linears_and_qat_config_refuse_what_they_cannot_read():
    with pytest.raises(TypeError, match="model must be an nn.Sequential MLP, got Linear"):
        qat.replace_linears(nn.Linear(3, 3), lambda layer: layer)
    mixed = nn.Sequential(qat.FakeQuantLinear(4, 3, QuantConfig(bits=4)), nn.ReLU(),
                          qat.FakeQuantLinear(3, 2, QuantConfig(bits=8)))
    with pytest.raises(ValueError, match="model mixes FakeQuantLinear layers of several configs"):
        qat.qat_config(mixed)


def test_as_config_shorthands():
    assert qat.as_config(4) == QuantConfig(bits=4, symmetric=True, per_channel=True, scale_dtype="float16")
    assert qat.as_config(4, per_channel=False, half_precision_meta=False) == \
        QuantConfig(bits=4, per_channel=False, scale_dtype="float32")
    assert qat.as_config(None) is None
    with pytest.raises(ValueError, match="bits=0 must be an integer in 1..16"):
        qat.as_config(0)
