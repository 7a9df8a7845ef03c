"""Mask primitives: which weights a model has, and holding pruned weights at zero.

A mask is a 0/1 tensor of a weight's shape; applying it sets w <- w * m. Masks are a dict
{parameter name: mask} keyed like `model.named_parameters()` ("0.weight", "2.weight", ...).
This module sits below the training loop (which holds masks during fine-tuning); how masks are
*chosen* (magnitude, random, schedules) is `pruning`'s business.

Example:
    >>> apply_masks_(model, {"0.weight": torch.zeros(128, 784)})   # the first layer is now all zeros
"""

from __future__ import annotations

import torch
from torch import nn


def linear_weights(model: nn.Module, *, quantized: bool = False) -> dict[str, torch.Tensor]:
    """{"<module>.weight": weight} for every nn.Linear, in order.

    With quantized=True, also every layer with `in_features` and a `weight` (quantized Linear layers).
    Raises TypeError if there is none.
    """
    def wanted(m: nn.Module) -> bool:
        return isinstance(m, nn.Linear) or (quantized and hasattr(m, "in_features") and hasattr(m, "weight"))

    weights = {f"{name}.weight": m.weight for name, m in model.named_modules() if wanted(m)}
    if not weights:
        others = sorted({type(m).__name__ for m in model.modules() if hasattr(m, "in_features") and hasattr(m, "weight")})
        hint = f"; its {', '.join(others)} layers count with quantized=True" if others and not quantized else ""
        raise TypeError(f"model of type {type(model).__name__} has no nn.Linear layers{hint}")
    return weights


def check_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    """The model's {name: parameter} if every mask names one of them and has its shape; else a clear error."""
    params = dict(model.named_parameters())
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict {{parameter name: 0/1 tensor}}, got {type(masks).__name__}")
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"masks has key {name!r}, which is not a parameter of the model; "
                             f"valid keys: {sorted(params)}")
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(params[name].shape):
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"masks[{name!r}] has shape {shape}, but the parameter has shape "
                             f"{tuple(params[name].shape)}")
        if not ((mask == 0) | (mask == 1)).all():   # 0.5 would scale weights, NaN would poison them
            odd = mask[(mask != 0) & (mask != 1)].flatten()[0].item()
            raise ValueError(f"masks[{name!r}] must hold only 0 and 1 (keep or prune); it holds {odd!r}")
    return params


@torch.no_grad()
def from_zeros(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks that hold a pruned model's zeros: m = (w != 0) as 0/1 floats, for every nn.Linear weight.

    For a model pruned and fine-tuned with its masks held (its masked weights exactly 0, the others not),
    these are the masks it was pruned with. The model is not changed.

    Example:
        >>> masks = from_zeros(pruned)            # {"0.weight": 0/1 tensor, "2.weight": ...}
        >>> training.fit(pruned, splits, masks=masks)   # its zeros stay zeros
    """
    return {name: (w != 0).to(w.dtype) for name, w in linear_weights(model).items()}


def held_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """(parameter, its mask on the parameter's device and dtype) pairs, checked once by check_masks: what a
    training loop multiplies after every step (multiply_) without checking the masks again."""
    params = check_masks(model, masks)
    return [(params[name], mask.to(params[name].device, params[name].dtype)) for name, mask in masks.items()]


@torch.no_grad()
def multiply_(held: list[tuple[nn.Parameter, torch.Tensor]]) -> None:
    """w <- w * m for each (parameter, mask) of held_masks, in place; unchecked (held_masks checked them)."""
    for parameter, mask in held:
        parameter.mul_(mask)


def apply_masks_(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Zero the masked weights in place: w <- w * m for every (name, m) in masks. Returns the model.

    Side effect: changes the model's parameters (not their gradients or optimiser state).
    """
    multiply_(held_masks(model, masks))
    return model
