"""The CUDA branches, checked against the CPU results when a GPU is present (skipped otherwise, with the reason).

The tutorial is built and measured on CPUs; these tests make the first run on a GPU machine check every
place that chooses a device: training, prediction, latency timing (with synchronisation), distillation,
quantized layers and the 4-bit ONNX deployment fed from GPU tensors.
"""

import copy

import pytest
import torch

from tutorial_utils import deploy, distillation, models, pruning, quantization, recipes, timing, training

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")


def test_setup_chooses_cuda():
    assert training.setup(0).type == "cuda"


def test_training_and_prediction_on_the_gpu_match_the_cpu(small_splits):
    training.setup(0)
    model = models.mlp([784, 32, 10])
    on_gpu = copy.deepcopy(model).cuda()
    training.fit(model, small_splits, epochs=1, device="cpu", progress=False)
    training.setup(0)
    training.fit(on_gpu, small_splits, epochs=1, device="cuda", progress=False)
    assert models.device_of(on_gpu).type == "cuda"
    cpu_accuracy = training.evaluate(model, small_splits.x_test, small_splits.y_test)
    gpu_accuracy = training.evaluate(on_gpu, small_splits.x_test, small_splits.y_test)
    assert abs(cpu_accuracy - gpu_accuracy) <= 0.03          # float sums in another order, same recipe
    logits = training.predict(on_gpu, small_splits.x_test)
    assert logits.device.type == "cpu" and logits.shape == (len(small_splits.x_test), 10)


def test_distillation_and_masks_on_the_gpu(small_splits):
    training.setup(0)
    teacher = models.mlp([784, 64, 10]).cuda()
    student = distillation.train_student(small_splits, teacher=teacher, epochs=1, device="cuda")
    assert models.device_of(student).type == "cuda"
    masks = recipes.prune_(student, small_splits, sparsity=0.8, teacher=teacher,
                           config=training.TrainConfig(epochs=1), device="cuda")
    assert all(m.device.type == "cuda" for m in masks.values())
    assert pruning.sparsity(student) == pytest.approx(0.8, abs=0.01)


def test_quantized_layers_on_the_gpu_compute_what_they_compute_on_the_cpu():
    model = quantization.quantize_model(models.mlp([784, 32, 10]), 4)
    x = torch.rand(16, 784)
    torch.testing.assert_close(model.cuda()(x.cuda()).cpu(), model.cpu()(x), rtol=1e-4, atol=1e-4)


def test_latency_is_timed_with_synchronisation():
    model = models.mlp([784, 64, 10]).cuda()
    assert timing.latency_ms(model, 256, repeats=5, warmup=2) > 0


def test_runtime_model_takes_gpu_tensors(tmp_path):
    model = quantization.quantize_model(models.mlp([784, 32, 10]), 4)
    deploy.export(model, tmp_path / "m.onnx", "4bit")
    x = torch.rand(8, 784)
    torch.testing.assert_close(deploy.runtime_model(tmp_path / "m.onnx")(x.cuda()), model(x), rtol=1e-4, atol=1e-4)
