"""The CUDA branches, checked against the CPU results when a GPU is present (skipped otherwise, with the reason).

The tutorial is built and measured on CPUs and trains on a GPU only when asked (DC_DEVICE=cuda); these
tests make the first run on a GPU machine check every place that chooses a device: training, prediction,
latency timing (with synchronisation), distillation, pruning, QAT, k-means and integer arithmetic on GPU
tensors, the int8 backends and the ledger (CPU copies), attacks and membership losses, the whole pipeline,
and the 4-bit ONNX deployment fed from GPU tensors.
"""

import copy
import json

import pytest
import torch

from tutorial_utils import (deploy, distillation, int8, measure, models, privacy, pruning, quantization, recipes,
                            robustness, timing, training, workflow)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")


def test_setup_chooses_cuda_when_asked(monkeypatch):
    monkeypatch.delenv("DC_DEVICE", raising=False)
    assert training.setup(0).type == "cpu"      # a visible GPU alone changes nothing
    monkeypatch.setenv("DC_DEVICE", "cuda")
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


def test_qat_on_the_gpu_keeps_the_masks_and_saves_like_a_cpu_model(small_splits, tmp_path):
    training.setup(0)
    student = models.mlp([784, 32, 10]).cuda()
    masks = recipes.prune_(student, small_splits, sparsity=0.8, config=training.TrainConfig(epochs=1), device="cuda")
    final = recipes.quantize_aware(student, small_splits, quant=4, config=training.TrainConfig(epochs=1), masks=masks,
                                   device="cuda")
    assert models.device_of(final).type == "cuda"
    on_cpu = models.on_cpu(final)
    assert on_cpu is not final and models.device_of(final).type == "cuda"   # a copy: the GPU model stays
    x = small_splits.x_test[:64]
    torch.testing.assert_close(final(x.cuda()).cpu(), on_cpu(x), rtol=1e-4, atol=1e-4)
    deploy.export(final, tmp_path / "m.onnx", "4bit")   # weights leave the GPU as they are written


def test_kmeans_codebooks_and_integer_sums_on_gpu_tensors():
    torch.manual_seed(0)
    weights = torch.randn(32, 64)
    on_gpu = quantization.quantize_model(models.mlp([64, 32, 10]).cuda(), 3, method="kmeans")
    assert models.device_of(on_gpu).type == "cuda"
    book_cpu, book_gpu = quantization.kmeans_quantize(weights, 3), quantization.kmeans_quantize(weights.cuda(), 3)
    torch.testing.assert_close(book_gpu.centroids.cpu(), book_cpu.centroids, rtol=1e-5, atol=1e-6)
    x, bias = torch.rand(4, 64), torch.randn(32)
    xq, wq = int8.quantize_input(x), quantization.quantize(weights, 8, per_channel=True)
    xq_gpu, wq_gpu = int8.quantize_input(x.cuda()), quantization.quantize(weights.cuda(), 8, per_channel=True)
    torch.testing.assert_close(int8.integer_linear(xq_gpu, wq_gpu, bias.cuda()).cpu(),
                               int8.integer_linear(xq, wq, bias), rtol=1e-6, atol=1e-6)


def test_the_int8_backend_copies_a_gpu_model_to_the_cpu():
    model = models.mlp([784, 32, 10]).cuda()
    backend = int8.to_backend(model, "legacy")
    assert models.device_of(model).type == "cuda"
    x = torch.rand(8, 784)
    torch.testing.assert_close(backend(x), model(x.cuda()).cpu(), rtol=0.05, atol=0.05)   # int8 activations


def test_the_ledger_measures_a_gpu_model_on_a_cpu_copy(small_splits):
    training.setup(0)
    model = models.mlp([784, 32, 10])
    training.fit(model, small_splits, epochs=1, device="cuda", progress=False)
    ledger = measure.Ledger(threads=1, repeats=5)
    row = ledger.measure("on the gpu", model, small_splits, beyond=tuple(measure.BEYOND))
    assert models.device_of(model).type == "cuda"
    assert row["accuracy"] == training.evaluate(models.on_cpu(model), small_splits.x_test, small_splits.y_test)
    with pytest.raises(ValueError, match="baseline is on cuda:0 but candidate on cpu"):
        timing.latency_ratio(model, models.on_cpu(model), 8, rounds=1)


def test_attacks_and_membership_losses_on_gpu_tensors(small_splits):
    training.setup(0)
    model = models.mlp([784, 32, 10])
    training.fit(model, small_splits, epochs=1, device="cuda", progress=False)
    x, y = small_splits.x_test[:64], small_splits.y_test[:64]
    on_cpu = models.on_cpu(model)
    clean = robustness.robust_accuracy(on_cpu, x, y, epsilon=0.05)
    assert robustness.robust_accuracy(model, x.cuda(), y.cuda(), epsilon=0.05) == pytest.approx(clean, abs=0.05)
    torch.testing.assert_close(privacy.per_image_loss(model, x.cuda(), y.cuda()), privacy.per_image_loss(on_cpu, x, y),
                               rtol=1e-4, atol=1e-4)
    assert len(robustness.disagreement(model, on_cpu, x, y.cuda())["differ"]) <= 1   # one function, two devices


def test_the_pipeline_trains_on_the_gpu_when_asked_and_measures_on_the_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DC_DEVICE", "cuda")
    out = tmp_path / "run"
    workflow.run(workflow.PipelineConfig(out=str(out), epochs=2, finetune_epochs=1, qat_epochs=1, teacher="teacher",
                                         threads=1, cache_dir=str(tmp_path / "cache")))
    rows = json.loads((out / "ledger.json").read_text())["rows"]
    assert rows[-2]["bytes"] == (out / "model.dcmp").stat().st_size
    assert "training on cuda (measuring on the cpu)" in capsys.readouterr().out
