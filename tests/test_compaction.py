"""compaction: dead inputs and hidden units removed, constants folded, the same logits; quantized codes kept."""

import pytest
import torch
from torch import nn

from tutorial_utils import compaction, models, pruning, quantization


def _pruned_student(sparsity: float = 0.9) -> nn.Sequential:
    model = models.mlp([784, 64, 10])
    pruning.apply_masks_(model, pruning.magnitude_masks(model, sparsity, scope="global"))
    return model


@torch.no_grad()
def test_dead_inputs_and_units_are_removed_and_the_function_is_kept():
    model = models.mlp([20, 6, 5, 3])
    model[0].weight[:, [0, 7, 19]] = 0            # three inputs nobody reads
    model[0].weight[2] = 0                          # unit 2: a constant relu(b) ...
    model[0].bias[2] = 0.7                          # ... that is positive, so it must be folded
    model[2].weight[:, 4] = 0                       # unit 4 of layer 1: never used
    model[2].weight[1] = 0                          # unit 1 of layer 2: constant, and relu(b) = 0
    model[2].bias[1] = -0.5
    small = compaction.compact(model)
    assert models.layer_sizes(small) == [17, 4, 4, 3]
    assert isinstance(small[0], compaction.SelectInputs) and small[0].indices.tolist() == [
        i for i in range(20) if i not in (0, 7, 19)]
    x = torch.randn(32, 20)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-5)
    assert compaction.dead_units(model) == {"inputs": 3, "hidden": 3}


@torch.no_grad()
def test_a_constant_unit_is_folded_as_the_next_layer_reads_it_on_its_activation_grid():
    model = models.mlp([20, 8, 3])
    model[0].weight[:4] = 0                                   # four constant units, relu(b) = b ...
    model[0].bias[:4] = torch.tensor([0.37, 0.81, 0.55, 1.3])  # ... off any coarse grid
    x = torch.randn(256, 20, generator=torch.Generator().manual_seed(0))
    quantized = quantization.quantize_model(model, 8, act_bits=3, calibration=x)
    small = compaction.compact(quantized)
    assert models.layer_sizes(small) == [20, 4, 3]
    torch.testing.assert_close(small(x), quantized(x), rtol=0, atol=1e-5)
    held = torch.relu(quantized[0].bias[:4])                  # folding the unrounded outputs is visibly wrong
    assert not torch.allclose(quantized[2].round_input(held), held, atol=1e-3)


@torch.no_grad()
def test_a_dense_model_comes_back_unchanged_and_inputs_false_keeps_every_column():
    model = models.mlp([12, 5, 2])
    assert models.layer_sizes(compaction.compact(model)) == [12, 5, 2]
    model[0].weight[:, 3] = 0
    kept = compaction.compact(model, inputs=False)
    assert not isinstance(kept[0], compaction.SelectInputs) and models.layer_sizes(kept) == [12, 5, 2]


@torch.no_grad()
def test_the_input_model_is_not_changed_and_compaction_is_idempotent():
    model = _pruned_student()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    once = compaction.compact(model)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    twice = compaction.compact(once)
    assert models.layer_sizes(twice) == models.layer_sizes(once)
    x = torch.rand(8, 784)
    torch.testing.assert_close(twice(x), model(x), rtol=0, atol=1e-5)


@torch.no_grad()
def test_quantized_layers_keep_their_codes_and_scales():
    model = _pruned_student(0.95)
    quantized = quantization.quantize_model(model, 4)
    small = compaction.compact(quantized)
    first = small[1]
    assert isinstance(first, quantization.QuantizedLinear) and first.bits == 4
    kept = small[0].indices
    rows = quantized[0].weight.ne(0).any(dim=1) & quantized[2].weight.ne(0).any(dim=0)   # neither constant nor unused
    assert torch.equal(first.codes, quantized[0].codes[rows][:, kept])
    assert torch.equal(first.scale, quantized[0].scale[rows])
    assert torch.equal(small[3].codes, quantized[2].codes[:, rows])
    x = torch.rand(16, 784)
    torch.testing.assert_close(small(x), quantized(x), rtol=0, atol=1e-5)


def test_bad_models_get_a_clear_error():
    with pytest.raises(TypeError, match="nn.Sequential"):
        compaction.compact(nn.Linear(3, 2))
    with pytest.raises(TypeError, match=r"model\[1\] is Tanh"):
        compaction.compact(nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1)))
    with pytest.raises(TypeError, match="no ReLU between"):
        compaction.compact(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1)))
    with pytest.raises(ValueError, match="x has 5 features"):
        compaction.SelectInputs(torch.tensor([0, 1]), 4)(torch.zeros(2, 5))
