"""A sweep of bad inputs across the public API: each is a ValueError/TypeError/FileNotFoundError that
names the argument, shows the value, and says what is allowed."""

import pytest
import torch

from tutorial_utils import data, distillation, encoding, measure, models, pruning, quantization, storage, training

T = torch.randn(4, 4)
STUDENT = models.student()


@pytest.mark.parametrize("call, error, message", [
    (lambda: data.load("cifar10"), ValueError, r"name='cifar10' must be one of \('mnist-5k'"),
    (lambda: data.load("fashion-mnist", root="/no/such/folder"), FileNotFoundError, r"root='/no/such/folder' does not exist"),
    (lambda: data.random_shift(torch.zeros(2, 784), max_shift=30), ValueError, r"max_shift=30 must be an integer in 0..27"),
    (lambda: models.mlp([784, 0, 10]), ValueError, r"sizes=\[784, 0, 10\] must list"),
    (lambda: models.mlp([784, 10], dropout=-0.1), ValueError, r"dropout=-0.1 must be a number in \[0, 1\)"),
    (lambda: models.preset("vgg"), ValueError, r"name='vgg' must be one of \('big-teacher'"),
    (lambda: training.setup(seed=-5), ValueError, r"seed=-5 must be an integer in 0..4294967295"),
    (lambda: training.fit(STUDENT, None, epochs=0), ValueError, r"epochs=0 must be a positive integer"),
    (lambda: training.fit(STUDENT, None, epochs=1, lr=-1.0), ValueError, r"lr=-1.0 must be a positive finite number"),
    (lambda: training.fit(STUDENT, None, epochs=1, batch_size=0), ValueError, r"batch_size=0 must be a positive integer"),
    (lambda: pruning.magnitude_masks(STUDENT, 1.0), ValueError, r"sparsity=1.0 must be a number in \[0, 1\)"),
    (lambda: pruning.magnitude_masks(STUDENT, float("nan")), ValueError, r"sparsity=nan must be a number in \[0, 1\)"),
    (lambda: pruning.magnitude_masks(STUDENT, 0.5, scope="row"), ValueError, r"scope='row' must be one of"),
    (lambda: pruning.apply_masks_(STUDENT, {"0.weight": torch.ones(2, 2)}), ValueError, r"masks\['0.weight'\] has shape \(2, 2\)"),
    (lambda: pruning.agp_sparsity(11, 10, 0.9), ValueError, r"step=11 must be an integer in 0..10"),
    (lambda: pruning.prune_neurons(STUDENT, -0.5), ValueError, r"amount=-0.5 must be a number in \[0, 1\)"),
    (lambda: quantization.quantize(T, 0), ValueError, r"bits=0 must be an integer in 1..16"),
    (lambda: quantization.quantize(T, 17), ValueError, r"bits=17 must be an integer in 1..16"),
    (lambda: quantization.quantize(T, 4.5), ValueError, r"bits=4.5 must be an integer in 1..16"),
    (lambda: quantization.quantize(torch.tensor([]), 8), ValueError, r"x is empty"),
    (lambda: quantization.quantize(torch.tensor([float("inf")]), 8), ValueError, r"NaN or inf"),
    (lambda: quantization.quantize(torch.ones(3), 8, per_channel=True), ValueError, r"per_channel needs a tensor of at least 2 dimensions"),
    (lambda: quantization.kmeans_quantize(T, 4, iterations=0), ValueError, r"iterations=0 must be a positive integer"),
    (lambda: distillation.kd_loss(T, T, torch.zeros(4, dtype=torch.long), temperature=0), ValueError, r"temperature=0 must be a finite number > 0"),
    (lambda: distillation.kd_loss(T, T, torch.zeros(4, dtype=torch.long), alpha=1.2), ValueError, r"alpha=1.2 must be a number in \[0, 1\]"),
    (lambda: distillation.kd_loss(T, torch.randn(4, 3), torch.zeros(4, dtype=torch.long)), ValueError, r"student_logits \(4, 4\) and teacher_logits \(4, 3\)"),
    (lambda: encoding.pack_bits(torch.tensor([9]).numpy(), 3), ValueError, r"codes must lie in \[0, 7\] for bits=3"),
    (lambda: storage.save(STUDENT, "/tmp/x.dcmp", sparse="coo"), ValueError, r"sparse='coo' must be one of"),
    (lambda: storage.load("/no/such/file.dcmp"), FileNotFoundError, r"path='/no/such/file.dcmp' is not a file"),
    (lambda: measure.latency_ms(STUDENT, 0), ValueError, r"batch_size=0 must be a positive integer"),
    (lambda: measure.Ledger().add(""), ValueError, r"stage='' must be a non-empty string"),
])
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
