"""Pruning: masks that zero weights, and the bookkeeping of what is zero.

A mask is a 0/1 tensor of a weight's shape; pruning applies w <- w * m. Masks are kept as a dict
{parameter name: mask}, keyed like `model.named_parameters()` ("0.weight", "2.weight", ...).
"""

from __future__ import annotations

import torch
from torch import nn


def _check_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"masks has key {name!r}, which is not a parameter of the model; "
                             f"valid keys: {sorted(params)}")
        if tuple(mask.shape) != tuple(params[name].shape):
            raise ValueError(f"masks[{name!r}] has shape {tuple(mask.shape)}, but the parameter has shape "
                             f"{tuple(params[name].shape)}")
    return params


@torch.no_grad()
def apply_masks_(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Zero the masked weights in place: w <- w * m for every (name, m) in masks. Returns the model.

    Side effect: changes the model's parameters (not their gradients or optimiser state).
    """
    params = _check_masks(model, masks)
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of zero entries over the weights of all nn.Linear layers (biases are not counted)."""
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    if not weights:
        raise TypeError(f"model of type {type(model).__name__} has no nn.Linear layers")
    zeros = sum((w == 0).sum().item() for w in weights)
    return zeros / sum(w.numel() for w in weights)
