"""Compaction: turn the structure that pruning leaves behind into a smaller dense network, same function.

After magnitude pruning, some input pixels have no weight left (MNIST's borders are never ink) and
some hidden units are cut off. Such pieces cost a dense kernel full price, so they are removed:

    input pixel i, column W1[:, i] all zero      -> never read: dropped by a SelectInputs layer (x[:, keep])
    hidden unit j, outgoing column W2[:, j] = 0  -> never used: row j of W1 and b1_j dropped
    hidden unit j, incoming row W1[j, :] = 0     -> outputs the constant h_j = relu(b1_j): folded into the
                                                    next bias, b2 <- b2 + W2[:, j] * h_j, then dropped
                                                    (h_j rounded to the next layer's activation grid, if any)

The rules repeat until nothing changes (dropping one layer's unit can empty a column of the next).
The compact model computes the same logits up to float rounding; its Linear layers are smaller, so
parameters and MACs really drop. Latency drops only if the kernels profit: dropped hidden units shrink a
dense matrix, but dropped inputs need a gather of scattered columns first, which notebook 06 measured
several times slower than the full first layer (compact(model, inputs=False) keeps every input).
Quantized layers keep their integer codes and scales.

Example:
    >>> small = compact(final)                      # (batch, 784) in, the same logits out
    >>> models.layer_sizes(small)                   # e.g. [602, 58, 10]
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from tutorial_utils import models
from tutorial_utils.qtensor import Codebook, QTensor
from tutorial_utils.quantization import QuantizedLinear

LINEARS = (nn.Linear, QuantizedLinear)


class SelectInputs(nn.Module):
    """x[:, indices]: keeps the input features a compact network still reads (buffer `indices`, int64)."""

    def __init__(self, indices: torch.Tensor, in_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.register_buffer("indices", indices.to(torch.int64).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x has {x.shape[-1]} features; this model reads {self.in_features}")
        return x.index_select(-1, self.indices)   # (batch, in_features) -> (batch, len(indices))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, kept={len(self.indices)}"


def _check_mlp(model: nn.Module) -> list[int]:
    """Positions of the Linear layers; raise unless model is Sequential Linear -> ReLU (-> Dropout) ... -> Linear."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
    for position, layer in enumerate(model):
        if not isinstance(layer, (*LINEARS, nn.ReLU, nn.Dropout, SelectInputs)):
            raise TypeError(f"model[{position}] is {type(layer).__name__}; compaction handles Linear, "
                            f"quantization.QuantizedLinear, ReLU and Dropout layers only")
    linears = [i for i, layer in enumerate(model) if isinstance(layer, LINEARS)]
    if not linears:
        raise TypeError("model has no Linear layer")
    for a, b in zip(linears, linears[1:]):
        if not any(isinstance(model[i], nn.ReLU) for i in range(a + 1, b)):
            raise TypeError(f"model[{a}] and model[{b}] have no ReLU between them; folding needs relu(b) >= 0")
    return linears


@torch.no_grad()
def _subset(layer: nn.Module, rows: torch.Tensor, columns: torch.Tensor) -> nn.Module:
    """The same kind of layer holding only weight[rows][:, columns] and bias[rows]."""
    if isinstance(layer, nn.Linear):
        new = nn.utils.skip_init(nn.Linear, len(columns), len(rows), device=layer.weight.device)
        new.weight.copy_(layer.weight[rows][:, columns])
        new.bias.copy_(layer.bias[rows])
        return new
    codes = layer.codes[rows][:, columns]
    if layer.kind == "kmeans":
        weight = Codebook(codes, layer.centroids, layer.bits, layer.zero_code)
    else:
        per_row = layer.scale.ndim > 0 and layer.scale.numel() > 1
        scale = layer.scale[rows] if per_row else layer.scale
        zero_point = layer.zero_point[rows] if per_row else layer.zero_point
        weight = QTensor(codes, scale, zero_point, layer.bits, layer.symmetric, layer.axis)
    return QuantizedLinear(weight, layer.bias[rows], act=layer.act,
                           scale_dtype=getattr(layer, "scale_dtype", None))


@torch.no_grad()
def dead_units(model: nn.Sequential) -> dict[str, int]:
    """How many input features and hidden units `compact` would remove: {'inputs': n, 'hidden': m}."""
    small = compact(model)
    before, after = models.layer_sizes(model), models.layer_sizes(small)
    return {"inputs": before[0] - after[0], "hidden": sum(before[1:-1]) - sum(after[1:-1])}


@torch.no_grad()
def compact(model: nn.Sequential, *, inputs: bool = True) -> nn.Sequential:
    """A smaller dense copy of a pruned MLP that computes the same logits (rules in the module docstring).

    Hidden units that are never used or output a constant are removed, constants folded into the next
    bias. With inputs=True the first layer becomes SelectInputs (the kept input features) unless every
    input is used; inputs=False keeps every input column (a gather of scattered columns can cost a
    runtime more than the multiply-adds it saves). The input model is not changed.
    """
    linears = _check_mlp(model)
    layers = [copy.deepcopy(layer) for layer in model]
    selected = None
    if isinstance(layers[0], SelectInputs):
        selected, layers = layers[0], layers[1:]
        linears = [i - 1 for i in linears]
    in_features = layers[linears[0]].in_features
    keep_inputs = torch.arange(in_features, device=layers[linears[0]].weight.device)
    changed = True
    while changed:
        changed = False
        first = layers[linears[0]]
        used = first.weight.ne(0).any(dim=0)                             # (in,): read by some unit
        if inputs and not used.all() and used.any():
            keep_inputs = keep_inputs[used]
            layers[linears[0]] = _subset(first, torch.arange(first.out_features), used.nonzero().flatten())
            changed = True
        for a, b in zip(linears, linears[1:]):
            incoming, outgoing = layers[a], layers[b]
            unused = outgoing.weight.eq(0).all(dim=0)                    # (hidden,): column of zeros
            constant = incoming.weight.eq(0).all(dim=1) & ~unused        # (hidden,): row of zeros
            keep = ~(unused | constant)
            if keep.all() or not keep.any():                             # keep at least one unit
                continue
            held = torch.relu(incoming.bias[constant])                   # (constant units,): what they output
            if isinstance(outgoing, QuantizedLinear):                    # as the next layer reads it (act_bits)
                held = outgoing.round_input(held)
            outgoing.bias += outgoing.weight[:, constant] @ held
            if isinstance(outgoing, QuantizedLinear):
                outgoing._refresh_weight()
            rows = keep.nonzero().flatten()
            layers[a] = _subset(incoming, rows, torch.arange(incoming.in_features))
            layers[b] = _subset(outgoing, torch.arange(outgoing.out_features), rows)
            changed = True
    if selected is not None:
        keep_inputs = selected.indices[keep_inputs]
        in_features = selected.in_features
    prefix = [SelectInputs(keep_inputs, in_features)] if len(keep_inputs) < in_features else []
    return nn.Sequential(*prefix, *layers)
