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
