"""footprint: parameters, non-zeros, bytes of real files and MACs, against hand counts and torch's own files."""

import os

import pytest
import torch

from tutorial_utils import footprint, int8, measure, models, pruning


def test_parameters_and_nonzeros():
    model = models.teacher()
    assert footprint.count_parameters(model) == sum(p.numel() for p in model.parameters()) == 101_770
    assert footprint.count_nonzeros(model) == 101_770
    mask = torch.zeros(128, 784)
    mask[:, :392] = 1
    pruning.apply_masks_(model, {"0.weight": mask})
    assert footprint.count_nonzeros(model) == 101_770 - 128 * 392
    assert footprint.count_parameters(model) == 101_770  # masked weights are still stored


def test_storage_bytes_is_the_size_of_a_real_file(tmp_path):
    model = models.teacher()
    path = tmp_path / "teacher.pt"
    written = footprint.storage_bytes(model, path)
    assert written == os.path.getsize(path)
    assert written == footprint.storage_bytes(model)
    assert 4 * 101_770 < written < 4 * 101_770 + 5_000
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["0.weight"], model[0].weight)


@pytest.mark.parametrize("build, expected", [
    (models.teacher, 784 * 128 + 128 * 10),
    (models.lenet_300_100, 784 * 300 + 300 * 100 + 100 * 10),
    (models.big_teacher, 784 * 1200 + 1200 * 1200 + 1200 * 10),
])
def test_macs_match_hand_count(build, expected):
    assert footprint.macs(build()) == expected


def test_quantized_layers_count_their_weights():
    from tutorial_utils import quantization

    model = quantization.quantize_model(models.teacher(), 2)
    assert footprint.count_parameters(model) == 101_770
    assert footprint.count_nonzeros(model) < 101_770  # a 2-bit grid sends many weights to 0


def test_csr_file_holds_the_index_storage_its_column_indices_view(tmp_path):
    """footprint.csr_bytes's docstring: torch.save of to_sparse_csr() writes about 20 bytes per non-zero (the
    column indices view a (2, nnz) int64 storage), where the CSR format needs 12."""
    torch.manual_seed(0)
    model = models.mlp([784, 128, 10])
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.mul_((torch.rand_like(layer.weight) > 0.9).float())
    nonzeros = sum(int((layer.weight != 0).sum()) for layer in (model[0], model[2]))
    per_nonzero = footprint.csr_bytes(model, tmp_path / "csr.pt") / nonzeros
    assert 19 < per_nonzero < 22, per_nonzero


def test_measure_publishes_the_same_functions():
    """Guards: the design's public names (measure.macs, measure.storage_bytes, ...) stay the footprint functions."""
    for name in ("count_parameters", "count_nonzeros", "storage_bytes", "csr_bytes", "macs"):
        assert getattr(measure, name) is getattr(footprint, name), name


@pytest.mark.parametrize("backend", ["legacy", "torchao"])
def test_int8_backends_are_refused_by_name_not_counted_as_zero(backend):
    """Guards: the legacy backend's weights hide in packed parameters (parameters, non-zeros and MACs all
    came out 0) and torchao's Int8Tensor cannot count its zeros (a crash inside torchao)."""
    fast = int8.to_backend(models.teacher(), backend)
    for count, what in ((footprint.macs, "macs"), (footprint.count_parameters, "parameters"),
                        (footprint.count_nonzeros, "nonzeros")):
        with pytest.raises(TypeError, match=rf"{what} cannot count an int8 backend's layer \(model.0 is a"):
            count(fast)
