"""McNemar's paired test: two models on the same test images, compared image by image.

Only the images on which they disagree carry information (McNemar 1947). With b = images only A gets
right, c = only B gets right, and n images:

    diff = (b - c) / n,   p-value = min(1, 2 * P[Binomial(b + c, 1/2) <= min(b, c)])   (exact, two-sided)
    interval: diff +- z * sqrt(b + c - (b - c)^2 / n) / n                              (Wald, paired)

The Wald interval is approximate: when only a handful of images disagree it is too narrow (about 90%
coverage for a nominal 95% with five), and it can then exclude zero while the exact p is above 0.05. The
printed result says so when the two disagree; the exact p is the one to trust.

Example:
    >>> str(paired_test(torch.tensor([True, True, False]), torch.tensor([True, False, False])))
    '+33.33% (95% interval -20.01% to +86.68%; p = 1, 1 vs 0 of 3 images decide)'
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch

from tutorial_utils import validate


def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(1 - (1 - validate.confidence("confidence", confidence)) / 2)


@dataclass(frozen=True)
class PairedTest:
    """Model A against model B on the same images: accuracy difference A - B, its interval, exact p-value."""

    diff: float
    low: float
    high: float
    p_value: float
    only_a: int   # images A gets right and B wrong (b)
    only_b: int   # images B gets right and A wrong (c)
    total: int
    confidence: float = 0.95

    def __str__(self) -> str:
        if self.only_a == self.only_b == 0:     # the Wald interval has no width here; it is not certainty
            return f"+0.00% (the two models agree on all {self.total:,} images: no evidence either way)"
        text = (f"{self.diff:+.2%} ({self.confidence:.0%} interval {self.low:+.2%} to {self.high:+.2%}; "
                f"p = {self.p_value:.3g}, {self.only_a} vs {self.only_b} of {self.total:,} images decide")
        if (self.low > 0 or self.high < 0) != (self.p_value < 1 - self.confidence):   # few images decide
            text += "; the approximate interval and the exact p disagree: trust the p"
        return text + ")"


def _binomial_tail(k: int, n: int) -> float:
    """P[Binomial(n, 1/2) <= k], exactly: integer coefficients, each from the previous, one division."""
    total, coefficient = 0, 1
    for i in range(k + 1):
        total += coefficient
        coefficient = coefficient * (n - i) // (i + 1)
    return total / 2**n


def paired_test(correct_a: torch.Tensor, correct_b: torch.Tensor, confidence: float = 0.95) -> PairedTest:
    """Compare two models on the same test images from their per-image correctness (boolean tensors).

    With b images right only for a, c right only for b, and n images: diff = (b - c) / n, its interval
    diff +- z sqrt(b + c - (b - c)^2 / n) / n, and the exact McNemar p-value 2 P(Binomial(b + c, 1/2) <= min(b, c)).
    """
    for name, value in (("correct_a", correct_a), ("correct_b", correct_b)):
        if not isinstance(value, torch.Tensor) or value.dtype != torch.bool or value.ndim != 1 or len(value) == 0:
            raise ValueError(f"{name} must be a non-empty 1-d boolean tensor (one entry per test image)")
    if correct_a.shape != correct_b.shape:
        raise ValueError(f"correct_a has {len(correct_a)} images but correct_b has {len(correct_b)}; "
                         f"a paired test needs the same images")
    z, n = _z(confidence), len(correct_a)
    b = int((correct_a & ~correct_b).sum())
    c = int((~correct_a & correct_b).sum())
    diff = (b - c) / n
    half = z * math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
    p_value = 1.0 if b + c == 0 else min(1.0, 2 * _binomial_tail(min(b, c), b + c))
    return PairedTest(diff, diff - half, diff + half, p_value, b, c, n, confidence)
