import pytest
import torch

from tutorial_utils import models, pruning


def test_apply_masks_zeroes_exactly_the_masked_weights():
    model = models.student()
    mask = torch.ones(64, 784)
    mask[:, :100] = 0
    pruning.apply_masks_(model, {"0.weight": mask})
    assert torch.all(model[0].weight[:, :100] == 0)
    assert torch.all(model[0].weight[:, 100:] != 0)
    assert pruning.sparsity(model) == pytest.approx(64 * 100 / (64 * 784 + 64 * 10))


def test_apply_masks_rejects_unknown_names_and_shapes():
    model = models.student()
    with pytest.raises(ValueError, match="'9.weight', which is not a parameter"):
        pruning.apply_masks_(model, {"9.weight": torch.ones(1)})
    with pytest.raises(ValueError, match=r"shape \(64,\)"):
        pruning.apply_masks_(model, {"0.weight": torch.ones(64)})


def test_sparsity_counts_only_linear_weights():
    model = models.student()
    torch.nn.init.zeros_(model[0].bias)
    assert pruning.sparsity(model) == 0.0
    with pytest.raises(TypeError, match="no nn.Linear"):
        pruning.sparsity(torch.nn.ReLU())
