"""Centroid fine-tuning: Deep Compression's trained quantization (Han et al. 2016, section 3.1).

After k-means weight sharing (kmeans.kmeans_quantize), each weight w_i = c[q_i] is one of a few shared
values. Fine-tuning keeps the assignments q fixed and trains the shared values: the gradient of a
centroid is the sum of the gradients of the weights that share it,

    dL/dc_k = sum over i with q_i = k of dL/dw_i

which is exactly what autograd computes for the lookup w = c[q] (the backward pass of indexing is a
scatter-add). A pruned weight's centroid (zero_code) stays at 0.

Example:
    >>> trainable = prepare(quantization.quantize_model(model, 2, method="kmeans"))
    >>> training.fit(trainable, splits, epochs=2, lr=1e-4)
    >>> finetuned = to_quantized(trainable)            # QuantizedLinear layers with the trained codebooks
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from tutorial_utils.qtensor import Codebook
from tutorial_utils.quantization import QuantizedLinear


class CentroidLinear(nn.Module):
    """A Linear layer whose weight is centroids[codes]: the codebook and the bias are trained, the codes not."""

    def __init__(self, layer: QuantizedLinear) -> None:
        super().__init__()
        if not isinstance(layer, QuantizedLinear) or layer.kind != "kmeans":
            raise TypeError("CentroidLinear needs a QuantizedLinear with k-means codes "
                            "(quantization.quantize_model(..., method='kmeans'))")
        if layer.act_bits is not None:   # training and converting back would drop the input's rounding
            raise ValueError(f"CentroidLinear trains weights only; this layer rounds its input to act_bits="
                             f"{layer.act_bits}: quantize without act_bits to fine-tune the centroids")
        self.bits, self.zero_code = layer.bits, layer.zero_code
        self.register_buffer("codes", layer.codes.to(torch.int64).clone())
        self.centroids = nn.Parameter(layer.centroids.detach().float().clone())
        self.bias = nn.Parameter(layer.bias.detach().float().clone())
        trainable = torch.ones_like(self.centroids)
        if self.zero_code is not None:
            trainable[self.zero_code] = 0.0       # the pruned weights' shared value stays exactly 0
        self.register_buffer("trainable", trainable)
        self.out_features, self.in_features = self.codes.shape   # codes are fixed, so the shape is too

    @property
    def weight(self) -> torch.Tensor:
        return (self.centroids * self.trainable)[self.codes]       # (out, in): a lookup, scatter-add backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


def prepare(model: nn.Sequential) -> nn.Sequential:
    """A copy of a k-means-quantized MLP with every QuantizedLinear made a CentroidLinear (trainable codebook)."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
    return nn.Sequential(*[CentroidLinear(m) if isinstance(m, QuantizedLinear) else copy.deepcopy(m) for m in model])


@torch.no_grad()
def to_quantized(model: nn.Sequential) -> nn.Sequential:
    """The fine-tuned model back as QuantizedLinear layers holding the trained codebooks (for storage.save)."""
    def convert(layer: nn.Module) -> nn.Module:
        if not isinstance(layer, CentroidLinear):
            return copy.deepcopy(layer)
        book = Codebook(layer.codes.to(torch.int32), (layer.centroids * layer.trainable).detach().clone(),
                        layer.bits, layer.zero_code)
        return QuantizedLinear(book, layer.bias.detach())
    return nn.Sequential(*[convert(m) for m in model])
