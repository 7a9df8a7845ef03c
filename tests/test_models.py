import pytest
import torch
from torch import nn

from tutorial_utils import measure, models


@pytest.mark.parametrize("build, sizes, parameters", [
    (models.teacher, [784, 128, 10], 101_770),
    (models.student, [784, 64, 10], 50_890),
    (models.lenet_300_100, [784, 300, 100, 10], 266_610),
    (models.big_teacher, [784, 1200, 1200, 10], 2_395_210),
])
def test_presets(build, sizes, parameters):
    model = build()
    assert models.layer_sizes(model) == sizes
    assert measure.count_parameters(model) == parameters
    assert model(torch.zeros(3, 784)).shape == (3, 10)


def test_mlp_structure_matches_hand_built_sequential():
    torch.manual_seed(0)
    ours = models.mlp([784, 32, 16, 10])
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
    x = torch.randn(5, 784)
    torch.testing.assert_close(ours(x), reference(x))
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in reference.named_parameters()]


def test_dropout_only_between_hidden_layers():
    model = models.big_teacher()
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]


@pytest.mark.parametrize("sizes", [[784], [], [784, 0, 10], [784, -3], [784, 2.5, 10], [784, True, 10]])
def test_bad_sizes(sizes):
    with pytest.raises(ValueError, match="sizes="):
        models.mlp(sizes)


def test_bad_dropout_and_preset():
    with pytest.raises(ValueError, match="dropout=1.0"):
        models.mlp([784, 10], dropout=1.0)
    with pytest.raises(ValueError, match="name='resnet'"):
        models.preset("resnet")
    with pytest.raises(TypeError, match="no nn.Linear"):
        models.layer_sizes(nn.ReLU())


def test_the_default_device_is_the_cpu_unless_dc_device_asks_for_cuda(monkeypatch):
    """A visible GPU alone does not move the tutorial off the CPU path its numbers were measured on."""
    monkeypatch.setattr(models.torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("DC_DEVICE", raising=False)
    assert models.default_device() == torch.device("cpu")
    monkeypatch.setenv("DC_DEVICE", "cuda")
    assert models.default_device() == torch.device("cuda")
    monkeypatch.setenv("DC_DEVICE", "gpu")
    with pytest.raises(ValueError, match=r"DC_DEVICE='gpu' must be one of \('cpu', 'cuda'\)"):
        models.default_device()
    monkeypatch.setenv("DC_DEVICE", "cuda")
    monkeypatch.setattr(models.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="DC_DEVICE='cuda': PyTorch sees no CUDA GPU"):
        models.default_device()


def test_on_cpu_returns_a_cpu_model_itself_and_copies_any_other(monkeypatch):
    model = models.mlp([4, 3, 2])
    assert models.on_cpu(model) is model
    monkeypatch.setattr(models, "device_of", lambda m: torch.device("cuda"))   # as a GPU model reports itself
    copied = models.on_cpu(model)
    assert copied is not model and all(torch.equal(a, b) for a, b in zip(copied.parameters(), model.parameters()))
    assert all(p.device.type == "cpu" for p in copied.parameters())
