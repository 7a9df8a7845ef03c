"""masks: which weights a model has, and applying 0/1 masks in place, checked against torch.nn.utils.prune."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from tutorial_utils import masks, models, quantization


@pytest.fixture
def model():
    torch.manual_seed(0)
    return models.mlp([6, 4, 3])


def _random_masks(model, p=0.5, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return {name: (torch.rand(w.shape, generator=generator) > p).float()
            for name, w in masks.linear_weights(model).items()}


def test_linear_weights_names_and_order(model):
    """Guards: keys follow named_parameters ("0.weight", "2.weight"), in layer order, and are the live parameters."""
    weights = masks.linear_weights(model)
    assert list(weights) == ["0.weight", "2.weight"]
    assert weights["0.weight"] is model[0].weight and weights["2.weight"] is model[2].weight
    params = dict(model.named_parameters())
    assert all(weights[name] is params[name] for name in weights)


def test_linear_weights_of_a_deeper_model_skips_relu_and_dropout():
    """Guards: numbering follows nn.Sequential even with Dropout layers in between."""
    model = models.mlp([8, 6, 5, 2], dropout=0.2)  # Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear
    assert list(masks.linear_weights(model)) == ["0.weight", "3.weight", "6.weight"]


@pytest.mark.parametrize("module", [nn.Sequential(nn.ReLU()), nn.Conv2d(1, 2, 3), nn.Sequential()])
def test_linear_weights_without_linear_is_a_typeerror(module):
    """Guards: a model without nn.Linear is a clear TypeError naming its type, not an empty dict."""
    with pytest.raises(TypeError, match=f"model of type {type(module).__name__} has no nn.Linear layers"):
        masks.linear_weights(module)


def test_linear_weights_of_a_quantized_model_only_when_asked(model):
    """Guards: QuantizedLinear layers count only with quantized=True (their weight is a derived buffer)."""
    quantized = quantization.quantize_model(model, 4)
    with pytest.raises(TypeError, match="QuantizedLinear"):
        masks.linear_weights(quantized)
    weights = masks.linear_weights(quantized, quantized=True)
    assert list(weights) == ["0.weight", "2.weight"]
    assert weights["0.weight"].shape == (4, 6) and weights["2.weight"].shape == (3, 4)


def test_apply_masks_zeroes_exactly_the_masked_entries_in_place(model):
    """Guards: w <- w * m on the same Parameter objects; unmasked weights and biases are untouched."""
    before = copy.deepcopy(model.state_dict())
    weight_object, storage = model[0].weight, model[0].weight.data_ptr()
    m = _random_masks(model)
    assert masks.apply_masks_(model, m) is model
    assert model[0].weight is weight_object and model[0].weight.data_ptr() == storage
    for name, mask in m.items():
        after = model.state_dict()[name]
        assert torch.equal(after[mask == 0], torch.zeros(int((mask == 0).sum())))
        assert torch.equal(after[mask == 1], before[name][mask == 1])
    for name in ("0.bias", "2.bias"):
        assert torch.equal(model.state_dict()[name], before[name])


def test_apply_masks_with_only_some_layers_and_bool_masks(model):
    """Guards: masks for a subset of layers leave the others alone; bool masks work like 0/1 floats."""
    before = model[2].weight.detach().clone()
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, 0] = True
    masks.apply_masks_(model, {"0.weight": mask})
    assert int(torch.count_nonzero(model[0].weight)) == 1
    assert torch.equal(model[2].weight, before)


def test_apply_masks_matches_torch_custom_from_mask(model):
    """Guards: the effective weight (and so the output) is what torch.nn.utils.prune.custom_from_mask gives."""
    m = _random_masks(model, p=0.3, seed=7)
    reference = copy.deepcopy(model)
    for name in ("0", "2"):
        torch_prune.custom_from_mask(dict(reference.named_modules())[name], "weight", m[f"{name}.weight"])
    masks.apply_masks_(model, m)
    for i in (0, 2):
        assert torch.equal(model[i].weight, reference[i].weight)
    x = torch.randn(5, 6)
    assert torch.equal(model(x), reference(x))


def test_apply_masks_leaves_gradients_alone(model):
    """Guards: applying masks changes parameters only, not their .grad (the optimiser's business)."""
    model(torch.randn(2, 6)).sum().backward()
    grad = model[0].weight.grad.clone()
    masks.apply_masks_(model, {"0.weight": torch.zeros(4, 6)})
    assert torch.equal(model[0].weight.grad, grad)


@pytest.mark.parametrize("bad, error, message", [
    ({"1.weight": torch.ones(4, 6)}, ValueError, (r"masks has key '1.weight', which is not a parameter of the model; "
                                                  r"valid keys: \['0.bias', '0.weight', '2.bias', '2.weight'\]")),
    ({"0.weight": torch.ones(6, 4)}, ValueError, (r"masks\['0.weight'\] has shape \(6, 4\), but the parameter has "
                                                  r"shape \(4, 6\)")),
    ({"2.weight": torch.ones(3, 4, 1)}, ValueError, r"masks\['2.weight'\] has shape \(3, 4, 1\)"),
    ({"0.weight": np.ones((4, 6))}, ValueError, r"masks\['0.weight'\] has shape ndarray"),
    ({"0.weight": [[1.0] * 6] * 4}, ValueError, r"masks\['0.weight'\] has shape list"),
    ([torch.ones(4, 6)], TypeError, r"masks must be a dict \{parameter name: 0/1 tensor\}, got list"),
    (None, TypeError, r"masks must be a dict .* got NoneType"),
])
def test_bad_masks_are_clear_errors(model, bad, error, message):
    """Guards: unknown keys, wrong shapes, non-dicts and non-tensors are refused with what was expected."""
    with pytest.raises(error, match=message):
        masks.apply_masks_(model, bad)


def test_a_bad_mask_changes_nothing(model):
    """Guards: masks are all checked before any is applied, so a bad second mask leaves the first layer intact."""
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError):
        masks.apply_masks_(model, {"0.weight": torch.zeros(4, 6), "2.weight": torch.zeros(2, 2)})
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])


def test_check_masks_returns_the_named_parameters(model):
    """Guards: check_masks hands back {name: parameter} of the model for valid masks."""
    params = masks.check_masks(model, {"0.weight": torch.ones(4, 6)})
    assert set(params) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert params["2.weight"] is model[2].weight


def test_from_zeros_reads_back_the_masks_torch_pruned_with(model):
    """A model pruned by torch.nn.utils.prune (then made permanent) gives back torch's own masks, as floats."""
    reference = copy.deepcopy(model)
    torch_prune.global_unstructured([(reference[0], "weight"), (reference[2], "weight")],
                                    pruning_method=torch_prune.L1Unstructured, amount=0.6)
    expected = {"0.weight": reference[0].weight_mask.clone(), "2.weight": reference[2].weight_mask.clone()}
    for layer in (reference[0], reference[2]):
        torch_prune.remove(layer, "weight")
    found = masks.from_zeros(reference)
    assert list(found) == list(expected)
    for name in expected:
        assert found[name].dtype == torch.float32 and torch.equal(found[name], expected[name])
    with torch.no_grad():
        reference[0].weight[0, 0] = -0.0               # a negative zero is a zero too
    assert masks.from_zeros(reference)["0.weight"][0, 0] == 0


def test_held_masks_are_checked_once_and_multiply_like_apply_masks():
    """fit checks its masks once (held_masks) and multiplies them after every step (multiply_)."""
    model = models.mlp([6, 4, 3])
    chosen = {"0.weight": (torch.rand(4, 6) > 0.5).float(), "2.weight": torch.ones(3, 4)}
    expected = masks.apply_masks_(copy.deepcopy(model), chosen)
    held = masks.held_masks(model, chosen)
    masks.multiply_(held)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), expected.parameters()))
    with pytest.raises(ValueError, match=r"masks\['0.weight'\] must hold only 0 and 1"):
        masks.held_masks(model, {"0.weight": torch.full((4, 6), 2.0)})
