import math

import pytest
import torch

from tutorial_utils import models, quantization, training


@pytest.fixture
def x():
    return torch.randn(16, 32, generator=torch.Generator().manual_seed(0))


# Hand-written oracles in plain Python floats and lists, independent of the package's torch code, so a
# wrong formula in the package cannot also be the reference it is checked against.

def _oracle_scale_zero_point(values, bits, symmetric):
    """(S, Z) from the module docstring: symmetric S = max|x| / (2^(b-1) - 1), Z = 0;
    asymmetric S = (max(x, 0) - min(x, 0)) / (2^b - 1), Z = round(-min(x, 0) / S)."""
    if symmetric:
        return max(abs(v) for v in values) / (2 ** (bits - 1) - 1), 0
    low, high = min(min(values), 0.0), max(max(values), 0.0)
    scale = (high - low) / (2**bits - 1)
    return scale, _round(-low / scale)


def _oracle_codes(values, scale, zero_point, bits, symmetric):
    """q = clamp(round(x / S) + Z, qmin, qmax) for each value."""
    qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    return [min(max(_round(v / scale) + zero_point, qmin), qmax) for v in values]


def _round(v):
    """round() (half to even, like torch.round) that refuses near-ties: the package computes in float32 and
    the oracle in float64, so a value this close to .5 could honestly round either way."""
    assert abs(v - math.floor(v) - 0.5) > 1e-3, f"{v} is too close to a rounding tie for an exact oracle"
    return round(v)


def _lloyd(values, k, iterations):
    """Plain Lloyd's algorithm, the reference for kmeans_quantize: k centroids evenly spaced between min and
    max, then `iterations` rounds of nearest-centroid assignment (the first on ties) and mean update;
    an empty cluster keeps its centroid. Returns (centroids, codes after the last update)."""
    lo, hi = min(values), max(values)
    centroids = [lo + (hi - lo) * i / (k - 1) for i in range(k)]
    for _ in range(iterations):
        codes = [_nearest(v, centroids) for v in values]
        for j in range(k):
            members = [v for v, c in zip(values, codes) if c == j]
            if members:
                centroids[j] = sum(members) / len(members)
    return centroids, [_nearest(v, centroids) for v in values]


def _nearest(v, centroids):
    return min(range(len(centroids)), key=lambda j: abs(v - centroids[j]))


# Row 1 is all positive (an asymmetric min clamps to 0, so Z = 0), row 2 all negative (Z = qmax).
SMALL = torch.tensor([[0.31, -1.7, 0.93, 0.05], [2.3, 0.41, 1.1, 0.83], [-0.6, -0.27, -1.3, -0.07]])


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_per_tensor_scale_zero_point_and_codes_follow_the_formulas(bits, symmetric):
    qt = quantization.quantize(SMALL, bits, symmetric=symmetric)
    values = SMALL.reshape(-1).tolist()
    scale, zero_point = _oracle_scale_zero_point(values, bits, symmetric)
    assert qt.scale.item() == pytest.approx(scale, rel=1e-6)  # float32 vs float64: a few ulps at most
    assert int(qt.zero_point) == zero_point
    assert qt.q.reshape(-1).tolist() == _oracle_codes(values, scale, zero_point, bits, symmetric)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_per_channel_scale_zero_point_and_codes_follow_the_formulas(bits, symmetric):
    """axis 0: each row gets the S and Z of the formulas applied to that row alone."""
    qt = quantization.quantize(SMALL, bits, symmetric=symmetric, per_channel=True, axis=0)
    rows = SMALL.tolist()
    expected = [_oracle_scale_zero_point(row, bits, symmetric) for row in rows]
    assert qt.scale.shape == qt.zero_point.shape == (3, 1)
    assert qt.scale.reshape(-1).tolist() == pytest.approx([s for s, _ in expected], rel=1e-6)
    assert qt.zero_point.reshape(-1).tolist() == [z for _, z in expected]
    assert qt.q.tolist() == [_oracle_codes(row, s, z, bits, symmetric) for row, (s, z) in zip(rows, expected)]


def test_example_from_the_docstring():
    qt = quantization.quantize(torch.tensor([-1.0, 0.0, 0.5, 1.0]), 8)
    assert qt.q.tolist() == [-127, 0, 64, 127] and qt.scale.item() == pytest.approx(1 / 127)


@pytest.mark.parametrize("symmetric", [True, False])
def test_8bit_per_tensor_matches_torch_quantize_per_tensor(x, symmetric):
    # torch gets the oracle's S and Z, not the package's: fed the package's own scale, a wrong scale would pass
    qt = quantization.quantize(x, 8, symmetric=symmetric)
    scale, zero_point = _oracle_scale_zero_point(x.reshape(-1).tolist(), 8, symmetric)
    dtype = torch.qint8 if symmetric else torch.quint8
    reference = torch.quantize_per_tensor(x, scale, zero_point, dtype)
    assert torch.equal(reference.int_repr().to(torch.int32), qt.q)
    torch.testing.assert_close(reference.dequantize(), quantization.dequantize(qt))


def test_8bit_per_channel_matches_torch_quantize_per_channel(x):
    qt = quantization.quantize(x, 8, per_channel=True)
    scales = [_oracle_scale_zero_point(row, 8, True)[0] for row in x.tolist()]  # the oracle's, as above
    reference = torch.quantize_per_channel(x, torch.tensor(scales, dtype=torch.float64),
                                           torch.zeros(len(scales), dtype=torch.int64), 0, torch.qint8)
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


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("scale_dtype", [torch.float32, torch.float16])
def test_fake_quantize_gives_the_bits_of_dequantize_quantize(x, bits, symmetric, per_channel, scale_dtype):
    """Bit for bit, signed zeros included (torch.equal alone calls -0.0 and 0.0 equal): QAT trains exactly
    the model its conversion gives."""
    x = torch.cat([x, -x.abs()[:2], x.abs()[:2] * 1e-3, torch.zeros(1, x.shape[1])])   # rows all <= 0, tiny, zero
    x[0, :5] = torch.tensor([-0.0, 1e-9, -1e-9, 0.0, -3.0])                          # codes that round to -0.0
    kwargs = dict(symmetric=symmetric, per_channel=per_channel, scale_dtype=scale_dtype)
    if bits == 1 and not symmetric:
        kwargs["symmetric"] = True
    if scale_dtype == torch.float16 and bits == 16 and per_channel and not symmetric:
        # the tiny row's scale, 2e-3 / 65535, is below float16's smallest number: both paths refuse it alike
        for quantizer in (quantization.fake_quantize, quantization.quantize):
            with pytest.raises(ValueError, match="does not fit float16"):
                quantizer(x, bits, **kwargs)
        return
    fake = quantization.fake_quantize(x, bits, **kwargs)
    reference = quantization.dequantize(quantization.quantize(x, bits, **kwargs))
    assert fake.dtype == reference.dtype == torch.float32
    assert torch.equal(fake.view(torch.int32), reference.view(torch.int32))


def test_the_finite_check_is_exact_when_a_finite_sum_overflows():
    big = torch.full((4,), 3e38)                                   # finite values, sum overflows to inf
    assert torch.isinf(big.sum())
    quantization.quantize(big, 8)                                  # accepted: every value is finite
    with pytest.raises(ValueError, match="NaN or inf"):
        quantization.fake_quantize(torch.tensor([float("inf"), float("-inf"), 1.0]), 4)   # sum NaN


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


@pytest.mark.parametrize("bits", [2, 3])
@pytest.mark.parametrize("iterations", [1, 30])
def test_kmeans_matches_a_plain_lloyd_loop(bits, iterations):
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(3))
    x[2, 5] = 6.0  # an outlier: the linear initialisation leaves centroids between it and the rest empty
    assert (x != 0).all()
    centroids, codes = _lloyd(x.reshape(-1).tolist(), 2**bits, iterations)
    codebook = quantization.kmeans_quantize(x, bits, iterations=iterations)
    assert codebook.zero_code is None
    assert codebook.centroids.tolist() == pytest.approx(centroids, abs=1e-5)
    assert codebook.q.reshape(-1).tolist() == codes
    if bits == 3:  # the case above really has empty clusters, whose centroids must have stayed put
        assert len(set(codes)) < 2**bits


def test_kmeans_with_zeros_pins_a_zero_centroid_and_clusters_the_rest():
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(4))
    x[x.abs() < 0.5] = 0
    values = x.reshape(-1).tolist()
    nonzero = [v for v in values if v != 0]
    assert 0 < len(nonzero) < len(values)
    centroids, _ = _lloyd(nonzero, 2**3 - 1, 30)  # one of the 8 codes is the pinned zero
    codebook = quantization.kmeans_quantize(x, 3)
    assert codebook.zero_code == 0 and codebook.centroids[0].item() == 0.0
    assert codebook.centroids[1:].tolist() == pytest.approx(centroids, abs=1e-5)
    # zeros keep code zero_code; every non-zero goes to its nearest non-zero centroid
    expected = [0 if v == 0 else 1 + _nearest(v, centroids) for v in values]
    assert codebook.q.reshape(-1).tolist() == expected


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
    assert isinstance(qat[0], quantization.FakeQuantLinear) and qat[0].config.bits == 4
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
