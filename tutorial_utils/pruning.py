"""Pruning: masks that zero weights, schedules that raise sparsity gradually, and neurons removed for real.

A mask is a 0/1 tensor of a weight's shape; pruning applies w <- w * m. Masks are kept as a dict
{parameter name: mask}, keyed like `model.named_parameters()` ("0.weight", "2.weight", ...). Only the
weights of nn.Linear layers are pruned; biases are few and stay dense.

Unstructured masks keep the tensor shapes, so a masked model has the same bytes and the same latency
as the dense one; `prune_neurons` removes whole hidden units and gives a model that is really smaller.

Example:
    >>> masks = magnitude_masks(model, 0.9)           # 90 % of each layer's smallest |w|
    >>> apply_masks_(model, masks)
    >>> round(sparsity(model), 2)
    0.9
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from tutorial_utils import data, masks as masking, training, validate
from tutorial_utils.masks import apply_masks_  # noqa: F401  (public here too: pruning.apply_masks_)

SCOPES = ("layer", "global")


def _smallest_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of scores' shape with 0 at the k smallest entries (ties broken as torch.topk breaks them)."""
    mask = torch.ones_like(scores)
    if k > 0:
        mask.view(-1)[torch.topk(scores.reshape(-1), k=k, largest=False).indices] = 0
    return mask


def _masks_from_scores(scores: dict[str, torch.Tensor], sparsity: float, scope: str,
                       allow_empty: bool) -> dict[str, torch.Tensor]:
    """Zero the round(sparsity * n) lowest scores, per tensor (scope="layer") or over all of them ("global");
    a mask that removes a whole tensor is a ValueError unless allow_empty."""
    validate.fraction("sparsity", sparsity)
    validate.choice("scope", scope, SCOPES)
    validate.flag("allow_empty", allow_empty)
    if scope == "layer":
        masks = {name: _smallest_k_mask(s, round(sparsity * s.numel())) for name, s in scores.items()}
    else:
        flat = torch.cat([s.flatten() for s in scores.values()])
        pieces = _smallest_k_mask(flat, round(sparsity * flat.numel())).split([s.numel() for s in scores.values()])
        masks = {name: piece.view_as(s) for (name, s), piece in zip(scores.items(), pieces)}
    emptied = [name for name, mask in masks.items() if not mask.any()]
    if emptied and not allow_empty:   # a layer without weights cuts the network: every input gives the same output
        raise ValueError(f"sparsity={sparsity!r} (scope={scope!r}) removes every weight of {', '.join(emptied)}; "
                         f"choose a lower sparsity")
    return masks


@torch.no_grad()
def magnitude_masks(model: nn.Module, sparsity: float, *, scope: str = "layer",
                    allow_empty: bool = False) -> dict[str, torch.Tensor]:
    """Masks that zero the weights of smallest |w|: round(sparsity * n) of them.

    scope="layer": each Linear weight loses the same fraction (torch's `l1_unstructured`).
    scope="global": one threshold over all Linear weights together (torch's `global_unstructured`),
    so layers with many small weights lose more. Masks that remove every weight of a layer (the network
    would give one output for every input) are a ValueError unless allow_empty=True, which keeps the
    formula's answer (to study its edge). Returns a new dict; the model is not changed.
    """
    scores = {name: w.abs() for name, w in masking.linear_weights(model).items()}
    return _masks_from_scores(scores, sparsity, scope, allow_empty)


def random_masks(model: nn.Module, sparsity: float, *, scope: str = "layer",
                 generator: torch.Generator | None = None, allow_empty: bool = False) -> dict[str, torch.Tensor]:
    """Masks that zero round(sparsity * n) weights chosen uniformly at random, per layer or globally
    (allow_empty as in magnitude_masks).

    This is the baseline (and the article's method): it ignores which weights matter.
    """
    scores = {name: torch.rand(w.shape, generator=generator) for name, w in masking.linear_weights(model).items()}
    return _masks_from_scores(scores, sparsity, scope, allow_empty)


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """A pruned copy of `model` (w * m for every masked weight); the model itself is not changed."""
    return apply_masks_(copy.deepcopy(model), masks)


def sparsity(model: nn.Module) -> float:
    """Fraction of zero entries over the weights of all Linear layers, quantized ones included (biases not counted)."""
    weights = masking.linear_weights(model, quantized=True).values()
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    """{weight name: fraction of zeros} for every nn.Linear weight."""
    return {name: (w == 0).float().mean().item() for name, w in masking.linear_weights(model, quantized=True).items()}


def to_torch_prune_(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Hand masks to torch.nn.utils.prune: each masked Linear gets weight_orig and a weight_mask buffer.

    Side effect: re-parametrises the model in place (weight becomes weight_orig * weight_mask).
    """
    masking.check_masks(model, masks)
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module_name, parameter = name.rsplit(".", 1)
        if parameter != "weight":   # from_torch_prune_ takes back weight masks only
            raise ValueError(f"masks has key {name!r}: to_torch_prune_ hands over weight masks only")
        torch_prune.custom_from_mask(modules[module_name], "weight", mask)
    return model


def from_torch_prune_(model: nn.Module) -> dict[str, torch.Tensor]:
    """Take the masks back from torch.nn.utils.prune and make pruning permanent with prune.remove.

    Side effect: each pruned module's weight becomes a plain Parameter holding weight_orig * weight_mask.
    """
    masks = {}
    for name, module in model.named_modules():
        if torch_prune.is_pruned(module) and hasattr(module, "weight_mask"):
            masks[f"{name}.weight"] = module.weight_mask.detach().clone()
            torch_prune.remove(module, "weight")
    return masks


def agp_sparsity(step: int, total_steps: int, final: float, initial: float = 0.0) -> float:
    """Automated gradual pruning (Zhu & Gupta, 2017): s_t = s_f + (s_i - s_f) * (1 - t / n)^3.

    Sparsity rises fast at first, while many redundant weights remain, and slowly at the end.
    step runs from 0 (initial) to total_steps (final).
    """
    validate.fraction("final", final)
    validate.fraction("initial", initial)
    validate.positive_int("total_steps", total_steps)
    validate.integer("step", step, low=0, high=total_steps)
    return final + (initial - final) * (1 - step / total_steps) ** 3


def _hidden_linears(model: nn.Sequential) -> list[int]:
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
    return [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]


@torch.no_grad()
def neuron_scores(model: nn.Sequential) -> list[torch.Tensor]:
    """Importance of each hidden unit j: (||W_in[j, :]||_1 + |b_j|) * ||W_out[:, j]||_1.

    A unit whose incoming weights and bias are zero outputs ReLU(0) = 0, and one whose outgoing
    weights are zero reaches nothing: both score 0, and removing them leaves the outputs unchanged.
    The product bounds how much a unit can change the next layer's input.
    """
    linears = [model[i] for i in _hidden_linears(model)]
    return [(a.weight.abs().sum(dim=1) + a.bias.abs()) * b.weight.abs().sum(dim=0)
            for a, b in zip(linears[:-1], linears[1:])]


@torch.no_grad()
def prune_neurons(model: nn.Sequential, amount: float) -> nn.Sequential:
    """A new, physically smaller MLP without the round(amount * width) lowest-scoring units of each hidden layer.

    Rows of a unit's incoming Linear and columns of its outgoing Linear are removed, so parameters,
    bytes and MACs really drop. An amount that would remove every unit of a layer is a ValueError (naming
    the layer and its width), never a silent "keep one". The input model is unchanged.
    """
    validate.fraction("amount", amount)
    indices = _hidden_linears(model)
    all_scores = neuron_scores(model)
    for position, scores in enumerate(all_scores):
        if round(amount * len(scores)) >= len(scores):
            raise ValueError(f"amount={amount!r} would remove all {len(scores)} units of hidden layer {position} "
                             f"(round(amount * width) = width); use an amount below "
                             f"{(len(scores) - 0.5) / len(scores):.3g} for this model")
    smaller = copy.deepcopy(model)
    for position, scores in enumerate(all_scores):
        keep_count = len(scores) - round(amount * len(scores))
        keep = scores.topk(keep_count).indices.sort().values  # keep the original order of units
        a, b = smaller[indices[position]], smaller[indices[position + 1]]
        # skip_init: the weights are copied in below, so no random draw disturbs the caller's stream
        new_a = nn.utils.skip_init(nn.Linear, a.in_features, keep_count, device=a.weight.device)
        new_b = nn.utils.skip_init(nn.Linear, keep_count, b.out_features, device=b.weight.device)
        new_a.weight.copy_(a.weight[keep])
        new_a.bias.copy_(a.bias[keep])
        new_b.weight.copy_(b.weight[:, keep])
        new_b.bias.copy_(b.bias)
        smaller[indices[position]], smaller[indices[position + 1]] = new_a, new_b
    return smaller


def sensitivity_scan(model: nn.Module, splits: data.Splits, sparsities: list[float]) -> dict[str, list[float]]:
    """Accuracy on splits' test images when one Linear layer alone is magnitude-pruned to each sparsity
    (Han et al., 2015); to choose rates, scan a model trained on splits.holdout() with that split.

    Returns {weight name: [accuracy at each sparsity]}; layers whose accuracy falls late can be
    pruned harder. The model is not changed (each point prunes a copy; no other layer is masked).
    """
    for i, s in enumerate(sparsities):
        validate.fraction(f"sparsities[{i}]", s)
    result = {}
    for name, weight in masking.linear_weights(model).items():
        result[name] = []
        for s in sparsities:
            pruned = apply_masks(model, _masks_from_scores({name: weight.detach().abs()}, s, "layer", False))
            result[name].append(training.evaluate(pruned, splits.x_test, splits.y_test))
    return result


def prune_agp_(model: nn.Module, splits: data.Splits, *, final: float, steps: int = 5, epochs_per_step: int = 1,
               scope: str = "layer", lr: float = 5e-4, batch_size: int = 32,
               loss_fn: training.LossFn | None = None, progress: bool = False) -> dict[str, torch.Tensor]:
    """Iterative pruning: at step t = 1..steps prune to agp_sparsity(t, steps, final) by magnitude, then
    fine-tune for epochs_per_step epochs with the masks held (training.fit). Returns the final masks.

    Weights pruned at one step are zero, hence among the smallest at the next, so they stay pruned.
    Side effect: trains and prunes the model in place.
    """
    validate.fraction("final", final)
    validate.positive_int("steps", steps)
    masks: dict[str, torch.Tensor] = {}
    for step in range(1, steps + 1):
        masks = magnitude_masks(model, agp_sparsity(step, steps, final), scope=scope)
        training.fit(model, splits, epochs=epochs_per_step, lr=lr, batch_size=batch_size, masks=masks,
                     loss_fn=loss_fn, progress=False)
        if progress:
            print(f"step {step}/{steps}: sparsity {sparsity(model):.1%}, "
                  f"test accuracy {training.evaluate(model, splits.x_test, splits.y_test):.2%}", flush=True)
    return masks
