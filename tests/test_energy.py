"""energy: the estimate's terms against hand counts (Horowitz 45 nm), what a layer really computes, batches."""

import pytest
import torch

from tutorial_utils import energy, int8, measure, models, pruning, quantization, storage


def test_measure_publishes_the_same_estimate():
    assert measure.energy_estimate is energy.energy_estimate and measure.PJ is energy.PJ


def test_energy_estimate_follows_the_formula():
    teacher = models.teacher()
    estimate = energy.energy_estimate(teacher)
    weight_bytes = 101_632 * 4 + 138 * 4                                   # float32 weights and biases
    assert estimate["compute_pj"] == pytest.approx(101_632 * (3.7 + 0.9))
    assert estimate["weights_pj"] == pytest.approx(weight_bytes * 100 / 8)  # 407 KB: Horowitz's 1 MB cache
    assert estimate["activations_pj"] == pytest.approx(((784 + 128) * 4 + (128 + 10) * 4) * 10 / 8)
    assert estimate["weight_level"] == "1 MB cache" and "estimate" in estimate["assumptions"]
    wide = energy.energy_estimate(models.mlp([784, 1200, 1200, 10]))       # 9.5 MB: from DRAM
    assert wide["weight_level"] == "DRAM"


@pytest.mark.parametrize(("size", "level"), [(8 * 1024, "8 KB cache"), (8 * 1024 + 1, "32 KB cache"),
                                             (1024 * 1024, "1 MB cache"), (1024 * 1024 + 1, "DRAM")])
def test_memory_level_is_the_smallest_that_holds_the_bytes(size, level):
    assert energy.memory_level(size)[0] == level


def test_the_same_computation_costs_the_same_whatever_file_stores_it(small_splits, tmp_path):

    model = models.teacher()
    pruning.apply_masks_(model, pruning.magnitude_masks(model, 0.9, scope="global"))
    csr = measure.csr_bytes(model, tmp_path / "csr.pt")
    packed = storage.save(model, tmp_path / "model.dcmp")
    ledger = measure.Ledger(latency_batch_size=8, repeats=2)
    rows = [ledger.measure(name, model, small_splits, file_bytes=size) for name, size in (("csr", csr), ("packed", packed))]
    assert csr > 64 * 1024 > packed                                        # the old model's 100x cliff lay between
    assert rows[0]["energy_nj"] == rows[1]["energy_nj"] and rows[0]["energy_nj_batch"] == rows[1]["energy_nj_batch"]


@pytest.mark.parametrize("backend", ["legacy", "torchao"])
def test_an_int8_backend_is_never_charged_more_than_its_float_twin(backend):
    from tutorial_utils import int8

    for model in (models.student(), models.teacher(), models.lenet_300_100()):
        deployed = int8.to_backend(model, backend)
        for batch_size in (1, 256):
            int8_nj = energy.energy_estimate(deployed, batch_size=batch_size)["total_nj"]
            assert int8_nj < energy.energy_estimate(model, batch_size=batch_size)["total_nj"]
        # A 4-bit-coded layer dequantizes and multiplies in float32: charged as float, not as int8.
        coded = energy.energy_estimate(quantization.quantize_model(model, 4))
        assert coded["compute_pj"] == energy.energy_estimate(model)["compute_pj"]
        assert energy.energy_estimate(deployed)["compute_pj"] < coded["compute_pj"] / 10


def test_amortized_weight_traffic_falls_with_batch_size():
    model = models.teacher()
    estimates = [energy.energy_estimate(model, batch_size=b) for b in (1, 2, 16, 256, 4096)]
    weights = [e["weights_pj"] for e in estimates]
    assert all(a > b for a, b in zip(weights, weights[1:]))
    assert weights[0] == pytest.approx(256 * weights[3])
    assert len({e["compute_pj"] for e in estimates}) == 1                  # the arithmetic per image does not change


def test_hypothetical_compressed_hardware_reads_the_file_and_skips_zeros():

    model = models.teacher()
    pruning.apply_masks_(model, pruning.magnitude_masks(model, 0.9, scope="global"))
    dense = energy.energy_estimate(model)
    eie = energy.energy_estimate(model, weight_bytes=6_000, skip_zeros=True)
    nonzero_weights = sum(int(layer.weight.count_nonzero()) for layer in (model[0], model[2]))
    assert eie["compute_pj"] == pytest.approx(nonzero_weights * (3.7 + 0.9))
    assert eie["compute_pj"] < dense["compute_pj"] / 9
    assert eie["weight_level"] == "8 KB cache" and eie["weights_pj"] == pytest.approx(6_000 * 10 / 8)
    with pytest.raises(ValueError, match="batch_size=0"):
        energy.energy_estimate(model, batch_size=0)


def test_energy_of_the_teacher_by_hand_in_float32_and_in_int8():
    """Guards: each term of the estimate against a hand count for 784-128-10 (101,632 MACs, 138 biases).
    float32: compute 101,632 * (3.7 + 0.9) pJ; weights 407,080 bytes from the 1 MB cache at 100 / 8 pJ a
    byte; activations (784 + 128) * 4 in + (128 + 10) * 4 out = 4,200 bytes at 10 / 8 pJ a byte.
    int8 (PyTorch's dynamic int8 Linear): compute * (0.2 + 0.1) pJ; weights 101,632 bytes + 552 of float
    biases; activations 784 + 128 int8 in + 552 float out = 1,464 bytes."""
    from tutorial_utils import int8

    teacher = models.teacher()
    float32 = energy.energy_estimate(teacher)
    assert float32["compute_pj"] == pytest.approx(101_632 * 4.6)
    assert float32["weights_pj"] == pytest.approx(407_080 * 12.5)
    assert float32["activations_pj"] == pytest.approx(4_200 * 1.25)
    assert float32["weight_level"] == "1 MB cache"
    quantized = energy.energy_estimate(int8.to_backend(teacher, "legacy"))
    assert quantized["compute_pj"] == pytest.approx(101_632 * 0.3)
    assert quantized["weights_pj"] == pytest.approx(102_184 * 12.5)
    assert quantized["activations_pj"] == pytest.approx(1_464 * 1.25)
    assert quantized["total_nj"] == pytest.approx((101_632 * 0.3 + 102_184 * 12.5 + 1_464 * 1.25) / 1000)
    assert energy.energy_estimate(teacher, batch_size=256)["weights_pj"] == pytest.approx(407_080 * 12.5 / 256)


def test_skip_zeros_counts_a_torchao_layers_codes():
    # torchao's Int8Tensor cannot count its zeros (a crash inside torchao); its int8 codes can
    model = models.teacher()
    pruning.apply_masks_(model, pruning.magnitude_masks(model, 0.5))
    fast = int8.to_backend(model, "torchao")
    nonzero = sum(int(m.weight.count_nonzero()) for m in model if isinstance(m, torch.nn.Linear))
    assert energy.energy_estimate(fast, skip_zeros=True)["compute_pj"] == pytest.approx(nonzero * energy.MAC_PJ["int8"])
