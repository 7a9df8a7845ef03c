import pytest
import torch

from tutorial_utils import models, quantization, training


@pytest.fixture
def x():
    return torch.randn(16, 32, generator=torch.Generator().manual_seed(0))


def test_example_from_the_docstring():
    qt = quantization.quantize(torch.tensor([-1.0, 0.0, 0.5, 1.0]), 8)
    assert qt.q.tolist() == [-127, 0, 64, 127] and qt.scale.item() == pytest.approx(1 / 127)


@pytest.mark.parametrize("symmetric", [True, False])
def test_8bit_per_tensor_matches_torch_quantize_per_tensor(x, symmetric):
    qt = quantization.quantize(x, 8, symmetric=symmetric)
    dtype = torch.qint8 if symmetric else torch.quint8
    reference = torch.quantize_per_tensor(x, qt.scale.item(), int(qt.zero_point), dtype)
    assert torch.equal(reference.int_repr().to(torch.int32), qt.q)
    torch.testing.assert_close(reference.dequantize(), quantization.dequantize(qt))


def test_8bit_per_channel_matches_torch_quantize_per_channel(x):
    qt = quantization.quantize(x, 8, per_channel=True)
    reference = torch.quantize_per_channel(x, qt.scale.reshape(-1).double(), qt.zero_point.reshape(-1).long(),
                                           0, torch.qint8)
    assert torch.equal(reference.int_repr().to(torch.int32), qt.q)
    assert qt.scale.shape == (16, 1) and qt.axis == 0


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 12, 16])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
def test_round_trip_error_is_at_most_half_a_step(x, bits, symmetric, per_channel):
    qt = quantization.quantize(x, bits, symmetric=symmetric, per_channel=per_channel)
    qmin, qmax = quantization.qrange(bits, symmetric)
    assert qt.q.min() >= qmin and qt.q.max() <= qmax
    error = (x - quantization.dequantize(qt)).abs()
    assert torch.all(error <= qt.scale / 2 + 1e-6)


def test_zero_is_exact_and_asymmetric_uses_the_whole_range():
    x = torch.tensor([0.0, 0.1, 0.2, 3.0])
    qt = quantization.quantize(x, 4, symmetric=False)
    assert quantization.dequantize(qt)[0] == 0.0
    assert qt.q.min() == 0 and qt.q.max() == 15
    positive = quantization.quantize(torch.tensor([1.0, 2.0]), 4, symmetric=False)
    assert int(positive.zero_point) == 0  # min is clamped to 0, so 0 stays representable


def test_per_channel_isolates_an_outlier_row():
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1)) * 0.1
    x[0] *= 100
    def rows_error(qt):
        return torch.sqrt(torch.mean((x[1:] - quantization.dequantize(qt)[1:]) ** 2)).item()

    per_tensor = rows_error(quantization.quantize(x, 4))
    per_channel = rows_error(quantization.quantize(x, 4, per_channel=True))
    assert per_channel < per_tensor / 5


def test_one_bit_is_sign_times_mean_magnitude(x):
    qt = quantization.quantize(x, 1, per_channel=True)
    assert set(qt.q.unique().tolist()) == {-1, 1}
    torch.testing.assert_close(quantization.dequantize(qt), torch.sign(x) * x.abs().mean(dim=1, keepdim=True))


def test_all_zero_channel_does_not_divide_by_zero():
    x = torch.zeros(3, 4)
    x[1] = torch.arange(4.0)
    qt = quantization.quantize(x, 4, per_channel=True)
    assert torch.isfinite(qt.scale).all()
    assert torch.equal(quantization.dequantize(qt)[0], torch.zeros(4))


def test_fake_quantize_forward_and_straight_through_gradient(x):
    x = x.clone().requires_grad_(True)
    y = quantization.fake_quantize(x, 3, per_channel=True)
    torch.testing.assert_close(y, quantization.dequantize(quantization.quantize(x, 3, per_channel=True)))
    weights = torch.randn_like(x)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights)  # d y / d x = identity


@pytest.mark.parametrize("bits, message", [(0, "bits=0"), (17, "bits=17"), (4.0, "bits=4.0"), (True, "bits=True")])
def test_bad_bits(x, bits, message):
    with pytest.raises(ValueError, match=message):
        quantization.quantize(x, bits)
    with pytest.raises(ValueError, match=message):
        quantization.kmeans_quantize(x, bits)


def test_bad_tensors():
    with pytest.raises(ValueError, match="empty"):
        quantization.quantize(torch.zeros(0), 8)
    with pytest.raises(ValueError, match="NaN or inf"):
        quantization.quantize(torch.tensor([1.0, float("nan")]), 8)
    with pytest.raises(ValueError, match="NaN or inf"):
        quantization.quantize(torch.tensor([1.0, float("inf")]), 8)
    with pytest.raises(ValueError, match="per_channel needs a tensor of at least 2 dimensions"):
        quantization.quantize(torch.ones(5), 8, per_channel=True)
    with pytest.raises(TypeError, match="floating-point"):
        quantization.quantize(torch.ones(5, dtype=torch.int64), 8)


def test_kmeans_reduces_error_and_keeps_zeros():
    x = torch.randn(40, 50, generator=torch.Generator().manual_seed(2))
    errors = [quantization.quantization_error(x, quantization.kmeans_quantize(x, b)) for b in (1, 2, 3, 4)]
    assert errors == sorted(errors, reverse=True)
    # for a bell-shaped distribution k-means beats the uniform grid at the same bits
    assert errors[1] < quantization.quantization_error(x, quantization.quantize(x, 2, symmetric=False))
    x[x.abs() < 0.7] = 0
    codebook = quantization.kmeans_quantize(x, 3)
    assert codebook.zero_code == 0 and codebook.centroids[0] == 0
    assert torch.equal(quantization.dequantize(codebook) == 0, x == 0)
    assert len(codebook.centroids) == 8


def test_quantize_model_ptq_and_codes(small_splits):
    model = models.teacher()
    training.fit(model, small_splits, epochs=2, progress=False)
    q8 = quantization.quantize_model(model, 8)
    layer = q8[0]
    assert isinstance(layer, quantization.QuantizedLinear) and layer.qweight.q.dtype == torch.int32
    assert layer.qweight.q.abs().max() <= 127
    accuracy = training.evaluate(model, small_splits.x_test, small_splits.y_test)
    assert abs(training.evaluate(q8, small_splits.x_test, small_splits.y_test) - accuracy) <= 0.02
    assert isinstance(model[0], torch.nn.Linear)  # the input model is unchanged


def test_activation_calibration(small_splits):
    model = models.teacher()
    quantized = quantization.quantize_model(model, 8, act_bits=8, calibration=small_splits.x_train[:64])
    assert quantized[0].act.bits == 8 and quantized[2].act is not None
    hidden = torch.relu(model[0](small_splits.x_train[:64]))
    assert quantized[2].act.scale.item() == pytest.approx(hidden.max().item() / 255, rel=1e-5)
    with pytest.raises(ValueError, match="calibration"):
        quantization.quantize_model(model, 8, act_bits=8)


def test_qat_model_trains_and_converts_exactly(small_splits):
    model = models.teacher()
    qat = quantization.prepare_qat(model, 4)
    assert isinstance(qat[0], quantization.FakeQuantLinear) and qat[0].bits == 4
    training.fit(qat, small_splits, epochs=1, progress=False)
    converted = quantization.quantize_model(qat, 4)
    x = small_splits.x_test[:32]
    torch.testing.assert_close(converted(x), qat(x))
    assert not torch.equal(qat[0].weight, model[0].weight)  # training moved the float weights


def test_quantize_model_bad_method():
    with pytest.raises(ValueError, match="method='huffman'"):
        quantization.quantize_model(models.teacher(), 4, method="huffman")
    with pytest.raises(TypeError, match="nn.Sequential"):
        quantization.quantize_model(torch.nn.Linear(4, 4), 4)


def test_dequantize_model_gives_plain_linears_with_the_same_outputs():
    model = quantization.quantize_model(models.teacher(), 4)
    plain = quantization.dequantize_model(model)
    assert all(type(m) is not quantization.QuantizedLinear for m in plain)
    x = torch.randn(5, 784)
    torch.testing.assert_close(plain(x), model(x))
