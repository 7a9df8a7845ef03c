"""Calibration: does a model's confidence match how often it is right? (Guo et al. 2017)

Bin the test images by the model's confidence p = max softmax(logits / T); in bin b with n_b images,
accuracy acc_b and mean confidence conf_b,

    ECE = sum_b (n_b / n) * |acc_b - conf_b|          (expected calibration error, equal-width bins)

A reliability diagram plots acc_b against conf_b: on the diagonal, "90% sure" means right 90% of the
time. Temperature scaling divides the logits by one T > 0 chosen on held-out data (never on test): it
changes the confidences, not the predictions (argmax is unchanged). Distillation uses the same T to
soften a teacher's targets (notebook 04).

Example:
    >>> expected_calibration_error(logits, y)            # 0.021 = 2.1 points
    >>> t = fit_temperature(holdout_logits, holdout_y)  # then ece of logits / t
"""

from __future__ import annotations

import math
import statistics
import warnings

import torch

from tutorial_utils import validate


def _check(logits: torch.Tensor, y: torch.Tensor, bins: int) -> None:
    validate.finite("logits", logits, ndim=2)   # (n, classes)
    validate.labels("y", y, n=len(logits), classes=logits.shape[1])
    validate.positive_int("bins", bins)


def reliability(logits: torch.Tensor, y: torch.Tensor, *, bins: int = 15, temperature: float = 1.0) -> list[dict]:
    """Per confidence bin ((b-1)/bins, b/bins]: n, accuracy and mean confidence (empty bins are left out)."""
    _check(logits, y, bins)
    temperature = validate.temperature("temperature", temperature)
    probabilities = torch.softmax(logits.detach().float() / temperature, dim=1)
    confidence, predicted = probabilities.max(dim=1)
    right = (predicted == y).float()
    index = torch.clamp(torch.ceil(confidence * bins).long() - 1, 0, bins - 1)   # confidence 1.0 -> last bin
    rows = []
    for b in range(bins):
        chosen = index == b
        n = int(chosen.sum())
        if n:
            rows.append({"low": b / bins, "high": (b + 1) / bins, "n": n, "accuracy": right[chosen].mean().item(),
                         "confidence": confidence[chosen].mean().item()})
    return rows


def expected_calibration_error(logits: torch.Tensor, y: torch.Tensor, *, bins: int = 15,
                               temperature: float = 1.0) -> float:
    """ECE = sum_b (n_b / n) |acc_b - conf_b| over `bins` equal-width confidence bins of softmax(logits / T)
    (module docstring), as a fraction: 0 is perfectly calibrated."""
    rows = reliability(logits, y, bins=bins, temperature=temperature)
    return sum(r["n"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / len(logits)


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, *, low: float = 0.05, high: float = 20.0,
                    points: int = 400) -> float:
    """The T in [low, high] (a log-spaced grid) that minimises the cross-entropy of logits / T on (logits, y).

    T = argmin over the grid of mean_i -log softmax(logits_i / T)[y_i]. Use held-out logits: choosing T on
    the test set makes the test ECE look better than it is. A minimum at an end of the grid warns (the best
    T may lie outside [low, high]: widen it) rather than passing the end off as the answer.
    """
    _check(logits, y, 1)
    validate.positive_float("low", low)
    validate.positive_float("high", high)
    if not high > low:
        raise ValueError(f"high={high!r} must be larger than low={low!r}")
    validate.positive_int("points", points)
    grid = torch.logspace(torch.log10(torch.tensor(low)), torch.log10(torch.tensor(high)), points)
    losses = torch.stack([torch.nn.functional.cross_entropy(logits.detach().float() / t, y) for t in grid])
    best = int(losses.argmin())
    if best in (0, points - 1) and points > 1:
        warnings.warn(f"fit_temperature: the best T is the end of the grid, {grid[best].item():.4g} "
                      f"({'low' if best == 0 else 'high'}={low if best == 0 else high!r}); the loss may fall "
                      f"further outside [low, high]: widen it", stacklevel=2)
    return grid[best].item()


def brier_change(logits: torch.Tensor, y: torch.Tensor, *, temperature: float,
                 confidence: float = 0.95) -> dict[str, float]:
    """What temperature scaling does to the Brier score on these images, paired image by image.

    Brier score of one image: b_i = sum_c (p_ic - [c = y_i])^2 with p = softmax(logits / T). The change
    d_i = b_i(T) - b_i(1) is a per-image difference, so its mean has a plain interval,
    mean(d) +- z * stdev(d) / sqrt(n) (normal; at least 30 images, but the d_i are very skewed, most images
    barely moving and a few moving a lot, so trust it with hundreds). A binned ECE has no such interval: it is
    biased upwards, most for a model that is nearly calibrated, so its change under scaling is biased too.
    Returns change, low and high (negative: scaling improved the probabilities). Side effects: none.

    Example:
        >>> brier_change(logits[500:], y[500:], temperature=fit_temperature(logits[:500], y[:500]))
        {'change': -0.0021, 'low': -0.0034, 'high': -0.0008}
    """
    _check(logits, y, 1)
    temperature = validate.temperature("temperature", temperature)
    validate.confidence("confidence", confidence)
    if len(y) < 30:
        raise ValueError(f"y has {len(y)} images: a normal interval needs at least 30")
    one_hot = torch.nn.functional.one_hot(y, logits.shape[1]).double()                      # (n, classes)
    scores = [((torch.softmax(logits.detach().double() / t, dim=1) - one_hot) ** 2).sum(dim=1) for t in (1.0, temperature)]
    change = scores[1] - scores[0]                                                           # (n,)
    half = statistics.NormalDist().inv_cdf(0.5 + confidence / 2) * change.std().item() / math.sqrt(len(change))
    mean = change.mean().item()
    return {"change": mean, "low": mean - half, "high": mean + half}
