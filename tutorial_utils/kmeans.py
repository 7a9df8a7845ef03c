"""k-means weight sharing (Deep Compression's "trained quantization", Han et al. 2016).

Instead of a uniform grid, 2^bits shared values (centroids) are fitted to the weights themselves with
Lloyd's algorithm; each weight stores only the index of its centroid:

    q_i = argmin_k |x_i - c_k|,        c_k = mean of the x_i with q_i = k        (repeat)

Example:
    >>> book = kmeans_quantize(model[0].weight, 4)     # 16 centroids, 4-bit indices
    >>> qtensor.dequantize(book).shape == model[0].weight.shape
    True
"""

from __future__ import annotations

import torch

from tutorial_utils import validate
from tutorial_utils.qtensor import Codebook, check_tensor


def kmeans_quantize(x: torch.Tensor, bits: int, *, iterations: int = 30) -> Codebook:
    """Weight sharing (Han et al. 2016): cluster the values of x into 2^bits centroids with k-means.

    Centroids start evenly spaced between min(x) and max(x) (the "linear" initialisation Han et al.
    found best, since it keeps the rare large weights), then Lloyd's algorithm alternates
    assignment q_i = argmin_k |x_i - c_k| and update c_k = mean of the x_i assigned to k.
    Exact zeros (pruned weights) keep a centroid of their own, fixed at 0, and are not clustered.
    bits is at most 8 and 2^bits at most x.numel(): more centroids than values cannot be used, and the
    (values x centroids) distance table would grow past memory.
    """
    validate.bits("bits", bits, high=8)
    check_tensor(x, False, 0)
    if 2**bits > x.numel():
        usable = x.numel().bit_length() - 1  # the largest b with 2^b <= numel
        advice = f"use bits <= {usable}" if usable >= 1 else "k-means needs at least 2 values"
        raise ValueError(f"bits={bits} asks for {2**bits} centroids but x has only {x.numel()} values; {advice}")
    validate.positive_int("iterations", iterations)
    flat = x.detach().float().reshape(-1)
    nonzero = flat != 0
    zero_code = 0 if not nonzero.all() else None
    values = flat[nonzero] if zero_code is not None and nonzero.any() else flat
    k = 2**bits - (1 if zero_code is not None else 0)
    centroids = torch.linspace(values.min().item(), values.max().item(), max(k, 1), device=flat.device)
    for _ in range(iterations if k > 0 else 0):
        q = (values[:, None] - centroids[None, :]).abs().argmin(dim=1)  # (n,) nearest centroid
        sums = torch.zeros_like(centroids).index_add_(0, q, values)
        counts = torch.bincount(q, minlength=len(centroids)).float()
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)  # empty clusters stay put
    if zero_code is not None:
        centroids = torch.cat([centroids.new_zeros(1), centroids[:k]])
    q = (flat[:, None] - centroids[None, :]).abs().argmin(dim=1)
    if zero_code is not None:  # every exact zero on the pinned centroid, every non-zero off it
        others = (flat[:, None] - centroids[None, 1:]).abs().argmin(dim=1) + 1 if k > 0 else q
        q = torch.where(nonzero, others, torch.zeros_like(q))
    return Codebook(q.reshape(x.shape).to(torch.int32), centroids, bits, zero_code)
