import copy

import pytest
import torch
from torch.nn.utils import prune as torch_prune

from tutorial_utils import models, pruning, training


@pytest.fixture
def model():
    torch.manual_seed(0)
    return models.mlp([20, 12, 8, 4])


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.9])
def test_layer_masks_equal_torch_l1_unstructured(model, amount):
    masks = pruning.magnitude_masks(model, amount)
    reference = copy.deepcopy(model)
    for name in ("0", "2", "4"):
        torch_prune.l1_unstructured(dict(reference.named_modules())[name], "weight", amount=amount)
        assert torch.equal(masks[f"{name}.weight"], dict(reference.named_modules())[name].weight_mask)


@pytest.mark.parametrize("amount", [0.25, 0.8])
def test_global_masks_equal_torch_global_unstructured(model, amount):
    masks = pruning.magnitude_masks(model, amount, scope="global")
    reference = copy.deepcopy(model)
    torch_prune.global_unstructured([(reference[i], "weight") for i in (0, 2, 4)],
                                    pruning_method=torch_prune.L1Unstructured, amount=amount)
    for i in (0, 2, 4):
        assert torch.equal(masks[f"{i}.weight"], reference[i].weight_mask)
    total = sum(m.numel() for m in masks.values())
    assert sum(int((m == 0).sum()) for m in masks.values()) == round(amount * total)


def test_masks_do_not_change_the_model(model):
    before = copy.deepcopy(model.state_dict())
    pruning.magnitude_masks(model, 0.5)
    pruning.random_masks(model, 0.5)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_random_masks_have_exact_counts_and_follow_the_generator(model):
    a = pruning.random_masks(model, 0.5, generator=torch.Generator().manual_seed(1))
    b = pruning.random_masks(model, 0.5, generator=torch.Generator().manual_seed(1))
    c = pruning.random_masks(model, 0.5, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)
    assert int((a["0.weight"] == 0).sum()) == round(0.5 * 240)


def test_apply_masks_and_sparsity(model):
    pruning.apply_masks_(model, pruning.magnitude_masks(model, 0.75))
    report = pruning.layer_sparsity(model)
    assert report == {"0.weight": 0.75, "2.weight": 0.75, "4.weight": 0.75}
    assert pruning.sparsity(model) == pytest.approx(0.75)
    assert torch.count_nonzero(model[0].bias) == 12  # biases are never pruned


def test_round_trip_through_torch_prune(model):
    masks = pruning.magnitude_masks(model, 0.6)
    expected = [(model[i].weight * masks[f"{i}.weight"]).detach() for i in (0, 2, 4)]
    pruning.to_torch_prune_(model, masks)
    assert torch_prune.is_pruned(model) and hasattr(model[0], "weight_orig")
    back = pruning.from_torch_prune_(model)
    assert not torch_prune.is_pruned(model)
    assert all(torch.equal(back[k], masks[k]) for k in masks)
    for i, w in zip((0, 2, 4), expected):
        assert torch.equal(model[i].weight.detach(), w)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5", None, True])
def test_bad_sparsity(model, bad):
    with pytest.raises(ValueError, match="sparsity="):
        pruning.magnitude_masks(model, bad)
    with pytest.raises(ValueError, match="sparsity="):
        pruning.random_masks(model, bad)


def test_bad_scope_and_masks(model):
    with pytest.raises(ValueError, match="scope='net'"):
        pruning.magnitude_masks(model, 0.5, scope="net")
    with pytest.raises(ValueError, match="'9.weight', which is not a parameter"):
        pruning.apply_masks_(model, {"9.weight": torch.ones(1)})
    with pytest.raises(ValueError, match=r"shape \(12,\)"):
        pruning.apply_masks_(model, {"0.weight": torch.ones(12)})
    with pytest.raises(TypeError, match="masks must be a dict"):
        pruning.apply_masks_(model, [torch.ones(12, 20)])
    with pytest.raises(TypeError, match="no nn.Linear"):
        pruning.sparsity(torch.nn.ReLU())


def test_agp_schedule():
    assert pruning.agp_sparsity(0, 10, 0.9) == 0.0
    assert pruning.agp_sparsity(10, 10, 0.9) == pytest.approx(0.9)
    assert pruning.agp_sparsity(5, 10, 0.9, initial=0.1) == pytest.approx(0.9 - 0.8 * 0.5**3)
    values = [pruning.agp_sparsity(t, 10, 0.9) for t in range(11)]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(s > 0 for s in steps) and steps == sorted(steps, reverse=True)  # fast first, slow last
    for kwargs, message in (({"step": 11}, "step=11"), ({"total_steps": 0}, "total_steps=0"),
                            ({"final": 1.0}, "final=1.0")):
        with pytest.raises(ValueError, match=message):
            pruning.agp_sparsity(**{"step": 1, "total_steps": 10, "final": 0.9, **kwargs})


def test_prune_agp_reaches_final_sparsity_and_keeps_pruned_weights(small_splits):
    model = models.teacher()
    training.fit(model, small_splits, epochs=2, progress=False)
    masks = pruning.prune_agp_(model, small_splits, final=0.8, steps=3, epochs_per_step=1)
    assert pruning.sparsity(model) == pytest.approx(0.8, abs=1e-3)
    assert all(torch.all(dict(model.named_parameters())[k][m == 0] == 0) for k, m in masks.items())


def test_sensitivity_scan_shape_and_monotone_ends(small_splits):
    model = models.teacher()
    training.fit(model, small_splits, epochs=2, progress=False)
    scan = pruning.sensitivity_scan(model, small_splits, [0.0, 0.99])
    dense = training.evaluate(model, small_splits.x_test, small_splits.y_test)
    assert set(scan) == {"0.weight", "2.weight"}
    assert all(row[0] == dense for row in scan.values())
    assert scan["2.weight"][1] < dense
    assert pruning.sparsity(model) == 0.0  # the model itself is untouched


def test_prune_neurons_removes_the_useless_units_first(model):
    with torch.no_grad():
        model[0].weight[:3] = 0   # units 0-2 of the first hidden layer are dead: ReLU(0 + 0) = 0
        model[0].bias[:3] = 0
        model[2].weight[:, 5] = 0  # unit 5 reaches nothing
    smaller = pruning.prune_neurons(model, 4 / 12)  # 4 of 12 units in layer 0, round(8 / 3) = 3 of 8 in layer 2
    assert models.layer_sizes(smaller) == [20, 8, 5, 4]
    kept = [3, 4, 6, 7, 8, 9, 10, 11]
    assert torch.equal(smaller[0].weight, model[0].weight[kept])
    assert torch.equal(smaller[0].bias, model[0].bias[kept])
    scores = pruning.neuron_scores(model)
    assert [len(s) for s in scores] == [12, 8] and all(scores[0][[0, 1, 2, 5]] == 0)


def test_prune_neurons_is_exact_for_dead_units_end_to_end():
    torch.manual_seed(1)
    model = models.mlp([20, 10, 4])
    with torch.no_grad():
        model[0].weight[[1, 4, 7]] = 0
        model[0].bias[[1, 4, 7]] = 0
    smaller = pruning.prune_neurons(model, 0.3)
    assert models.layer_sizes(smaller) == [20, 7, 4]
    x = torch.randn(32, 20)
    torch.testing.assert_close(smaller(x), model(x))
    assert models.layer_sizes(model) == [20, 10, 4]  # the input model is unchanged


def test_prune_neurons_bad_input(model):
    with pytest.raises(ValueError, match="amount=1.0"):
        pruning.prune_neurons(model, 1.0)
    with pytest.raises(TypeError, match="nn.Sequential"):
        pruning.prune_neurons(torch.nn.Linear(3, 3), 0.5)
    # round(0.9 * 3) = 3 of 3 units: an error naming the layer, not a silent "keep one"
    with pytest.raises(ValueError, match=r"amount=0.9 would remove all 3 units of hidden layer 0"):
        pruning.prune_neurons(models.mlp([4, 3, 2]), 0.9)
    assert models.layer_sizes(pruning.prune_neurons(models.mlp([4, 3, 2]), 0.8)) == [4, 1, 2]


def test_apply_masks_returns_a_pruned_copy(model):
    masks = pruning.magnitude_masks(model, 0.5)
    pruned = pruning.apply_masks(model, masks)
    assert pruning.sparsity(pruned) == pytest.approx(0.5) and pruning.sparsity(model) == 0.0


def test_a_mask_that_empties_a_layer_is_refused_unless_asked_for():
    """round(0.99 * 48) = 48: the formula removes every weight of a 12 -> 4 layer, which would make the
    network's output the same for every input; refused by default, kept with allow_empty=True."""
    model = models.mlp([30, 12, 4])
    with pytest.raises(ValueError, match=r"removes every weight of 2.weight; choose a lower sparsity"):
        pruning.magnitude_masks(model, 0.99)
    masks = pruning.magnitude_masks(model, 0.99, allow_empty=True)
    assert not masks["2.weight"].any() and int(masks["0.weight"].sum()) == 360 - round(0.99 * 360)
    with pytest.raises(TypeError, match="allow_empty='yes' must be True or False"):
        pruning.random_masks(model, 0.5, allow_empty="yes")
