"""Evaluation: logits in eval mode, accuracy, and the confusion matrix, without touching the weights.

    accuracy = (1/n) * sum_i [argmax_k logits_ik == y_i]

Example:
    >>> evaluate(model, splits.x_test, splits.y_test)      # a fraction in [0, 1]
    0.945
"""

from __future__ import annotations

import torch
from torch import nn

from tutorial_utils import models, validate


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
    """Logits of `model` for every row of x, in eval mode; the model's train/eval mode is restored after."""
    validate.positive_int("batch_size", batch_size)
    was_training = model.training
    model.eval()
    device = models.device_of(model)
    try:
        return torch.cat([model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
    """Per-image correctness, a (n,) boolean tensor: argmax of the logits == y (what paired tests compare)."""
    return predict(model, x, batch_size=batch_size).argmax(dim=1).cpu() == y.cpu()


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2048) -> float:
    """Accuracy in [0, 1]: mean of argmax(logits) == y."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty with the same length; got {len(x)} and {len(y)}")
    return (predict(model, x, batch_size=batch_size).argmax(dim=1) == y.cpu()).float().mean().item()


def confusion_matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, classes: int = 10) -> torch.Tensor:
    """(classes, classes) counts: entry [i, j] is the number of samples of class i predicted as j."""
    predicted = predict(model, x).argmax(dim=1)
    return torch.bincount(y.cpu() * classes + predicted, minlength=classes * classes).reshape(classes, classes)
