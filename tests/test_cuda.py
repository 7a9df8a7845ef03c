"""The CUDA branches, checked against the CPU results: every test runs on "cuda" where PyTorch sees a GPU,
and on "cpu" everywhere.

The tutorial is built and measured on CPUs and trains on a GPU only when asked (DC_DEVICE=cuda). On a GPU
machine these tests check every place that chooses a device: training, prediction, latency timing (with
synchronisation), distillation, pruning, narrowing, QAT, compaction, k-means and integer arithmetic on
GPU tensors, the int8 backends and the ledger (CPU copies), attacks and membership losses, the .dcmp
file, the whole pipeline, and the 4-bit ONNX deployment fed from GPU tensors. The "cpu" runs check the
tests themselves (names, signatures, fixtures), so that they cannot rot while no GPU runs them; the
"cuda" runs skip, with the reason, where there is no GPU.
"""

import copy
import json

import pytest
import torch

from tutorial_utils import (compaction, data, deploy, distillation, int8, measure, models, privacy, pruning,
                            quantization, recipes, robustness, storage, timing, training, workflow)


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> str:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (none visible); the same test ran on the CPU")
    return request.param


def test_setup_trains_where_dc_device_says(device, monkeypatch):
    monkeypatch.delenv("DC_DEVICE", raising=False)
    assert training.setup(0).type == "cpu"      # a visible GPU alone changes nothing
    monkeypatch.setenv("DC_DEVICE", device)
    assert training.setup(0).type == device


def test_training_and_prediction_match_the_cpu(device, small_splits):
    training.setup(0)
    model = models.mlp([784, 32, 10])
    moved = copy.deepcopy(model).to(device)
    training.fit(model, small_splits, epochs=1, device="cpu", progress=False)
    training.setup(0)
    training.fit(moved, small_splits, epochs=1, device=device, progress=False)
    assert models.device_of(moved).type == device
    cpu_accuracy = training.evaluate(model, small_splits.x_test, small_splits.y_test)
    accuracy = training.evaluate(moved, small_splits.x_test, small_splits.y_test)
    assert abs(cpu_accuracy - accuracy) <= 0.03          # float sums in another order, same recipe
    logits = training.predict(moved, small_splits.x_test)
    assert logits.device.type == "cpu" and logits.shape == (len(small_splits.x_test), 10)


def test_distillation_and_masks(device, small_splits):
    training.setup(0)
    teacher = models.mlp([784, 64, 10]).to(device)
    student = distillation.train_student(small_splits, teacher=teacher, epochs=1, device=device)
    assert models.device_of(student).type == device
    masks = recipes.prune_(student, small_splits, sparsity=0.8, teacher=teacher,
                           config=training.TrainConfig(epochs=1), device=device)
    assert all(m.device.type == device for m in masks.values())
    assert pruning.sparsity(student) == pytest.approx(0.8, abs=0.01)


def test_quantized_layers_compute_what_they_compute_on_the_cpu(device):
    model = quantization.quantize_model(models.mlp([784, 32, 10]), 4)
    x = torch.rand(16, 784)
    torch.testing.assert_close(model.to(device)(x.to(device)).cpu(), model.cpu()(x), rtol=1e-4, atol=1e-4)


def test_latency_is_timed_with_synchronisation(device):
    model = models.mlp([784, 64, 10]).to(device)
    assert timing.latency_ms(model, 256, repeats=5, warmup=2) > 0


def test_runtime_model_takes_tensors_from_the_device(device, tmp_path):
    model = quantization.quantize_model(models.mlp([784, 32, 10]), 4)
    deploy.export(model, tmp_path / "m.onnx", "4bit")
    x = torch.rand(8, 784)
    torch.testing.assert_close(deploy.runtime_model(tmp_path / "m.onnx")(x.to(device)), model(x), rtol=1e-4, atol=1e-4)


def test_qat_keeps_the_masks_and_saves_like_a_cpu_model(device, small_splits, tmp_path):
    training.setup(0)
    student = models.mlp([784, 32, 10]).to(device)
    masks = recipes.prune_(student, small_splits, sparsity=0.8, config=training.TrainConfig(epochs=1), device=device)
    final = recipes.quantize_aware(student, small_splits, quant=4, config=training.TrainConfig(epochs=1), masks=masks,
                                   device=device)
    assert models.device_of(final).type == device
    on_cpu = models.on_cpu(final)
    assert (on_cpu is final) == (device == "cpu") and models.device_of(final).type == device   # the model stays
    x = small_splits.x_test[:64]
    torch.testing.assert_close(final(x.to(device)).cpu(), on_cpu(x), rtol=1e-4, atol=1e-4)
    deploy.export(final, tmp_path / "m.onnx", "4bit")   # weights leave the device as they are written


def test_kmeans_codebooks_and_integer_sums(device):
    torch.manual_seed(0)
    weights = torch.randn(32, 64)
    moved = quantization.quantize_model(models.mlp([64, 32, 10]).to(device), 3, method="kmeans")
    assert models.device_of(moved).type == device
    book_cpu, book = quantization.kmeans_quantize(weights, 3), quantization.kmeans_quantize(weights.to(device), 3)
    torch.testing.assert_close(book.centroids.cpu(), book_cpu.centroids, rtol=1e-5, atol=1e-6)
    x, bias = torch.rand(4, 64), torch.randn(32)
    xq, wq = int8.quantize_input(x), quantization.quantize(weights, 8, per_channel=True)
    xq_moved = int8.quantize_input(x.to(device))
    wq_moved = quantization.quantize(weights.to(device), 8, per_channel=True)
    torch.testing.assert_close(int8.integer_linear(xq_moved, wq_moved, bias.to(device)).cpu(),
                               int8.integer_linear(xq, wq, bias), rtol=1e-6, atol=1e-6)


def test_the_int8_backend_is_a_cpu_copy(device):
    model = models.mlp([784, 32, 10]).to(device)
    backend = int8.to_backend(model, "legacy")
    assert models.device_of(model).type == device
    x = torch.rand(8, 784)
    torch.testing.assert_close(backend(x), model(x.to(device)).cpu(), rtol=0.05, atol=0.05)   # int8 activations


def test_the_ledger_measures_on_a_cpu_copy(device, small_splits):
    training.setup(0)
    model = models.mlp([784, 32, 10])
    training.fit(model, small_splits, epochs=1, device=device, progress=False)
    ledger = measure.Ledger(threads=1, repeats=5)
    row = ledger.measure("trained", model, small_splits, beyond=tuple(measure.BEYOND))
    assert models.device_of(model).type == device
    assert row["accuracy"] == training.evaluate(models.on_cpu(model), small_splits.x_test, small_splits.y_test)
    if device != "cpu":
        with pytest.raises(ValueError, match="baseline is on cuda:0 but candidate on cpu"):
            timing.latency_ratio(model, models.on_cpu(model), 8, rounds=1)


def test_attacks_and_membership_losses(device, small_splits):
    training.setup(0)
    model = models.mlp([784, 32, 10])
    training.fit(model, small_splits, epochs=1, device=device, progress=False)
    x, y = small_splits.x_test[:64], small_splits.y_test[:64]
    on_cpu = models.on_cpu(model)
    clean = robustness.robust_accuracy(on_cpu, x, y, epsilon=0.05)
    assert robustness.robust_accuracy(model, x.to(device), y.to(device), epsilon=0.05) == pytest.approx(clean, abs=0.05)
    torch.testing.assert_close(privacy.per_image_loss(model, x.to(device), y.to(device)),
                               privacy.per_image_loss(on_cpu, x, y), rtol=1e-4, atol=1e-4)
    assert len(robustness.disagreement(model, on_cpu, x, y.to(device))["differ"]) <= 1   # one function, two devices


def test_narrowing_compaction_attacks_and_the_file(device, small_splits, tmp_path):
    training.setup(0)
    student = models.mlp([784, 32, 10])
    training.fit(student, small_splits, epochs=1, device=device, progress=False)
    narrow = recipes.narrow(student, small_splits, amount=0.5, config=training.TrainConfig(epochs=1), device=device)
    assert models.layer_sizes(narrow) == [784, 16, 10] and models.device_of(narrow).type == device
    x, y = small_splits.x_test[:64], small_splits.y_test[:64]
    pruning.apply_masks(narrow, pruning.magnitude_masks(narrow, 0.9))
    small = compaction.compact(narrow)
    torch.testing.assert_close(small(x.to(device)).cpu(), narrow(x.to(device)).cpu(), rtol=1e-4, atol=1e-4)
    final = quantization.quantize_model(narrow, 4)
    storage.save(final, tmp_path / "m.dcmp")
    torch.testing.assert_close(storage.load(tmp_path / "m.dcmp")(x), final(x.to(device)).cpu(), rtol=1e-4, atol=1e-4)
    started = robustness.pgd(final, x.to(device), y.to(device), epsilon=0.05, random_start=True, seed=0)
    assert started.device.type == device and (started - x.to(device)).abs().max() <= 0.05 / data.STD + 1e-5


def test_the_pipeline_trains_where_asked_and_measures_on_the_cpu(device, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DC_DEVICE", device)
    out = tmp_path / "run"
    workflow.run(workflow.PipelineConfig(out=str(out), epochs=2, finetune_epochs=1, qat_epochs=1, teacher="teacher",
                                         threads=1, cache_dir=str(tmp_path / "cache")))
    rows = json.loads((out / "ledger.json").read_text())["rows"]
    assert rows[-2]["bytes"] == (out / "model.dcmp").stat().st_size
    assert f"training on {device} (measuring on the cpu)" in capsys.readouterr().out
