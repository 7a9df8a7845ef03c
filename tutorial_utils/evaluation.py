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

_MEMO_SIZE = 2
_memo: list[tuple[nn.Module, str, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]] = []


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
    """Logits of `model` for every row of x, in eval mode; the model's train/eval mode is restored after."""
    validate.positive_int("batch_size", batch_size)
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or len(x) == 0:
        raise ValueError(f"x must be a non-empty tensor of inputs (one row per image); got {validate.shape_of(x)}")
    was_training = model.training
    model.eval()
    device = models.device_of(model)
    try:
        return torch.cat([model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def predict_memoized(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """predict(model, x), remembered for the last two (model, x): a distillation run asks for its teacher's
    logits on the same training images as the run before it (notebook 05 makes about 30 such runs).

    A remembered result is used only for the same model object with the same structure (repr), every
    parameter and buffer equal (values, dtype, device), no forward hooks, equal inputs (values, dtype,
    device) and the same number of CPU threads; comparing costs a few ms against about 0.1 s for the
    784-1200-1200-10 teacher on 5,000 images. Returns a new tensor (changing it changes no memo).
    Side effect: keeps copies of the model's tensors and of x for the last two calls.
    """
    hooks = nn.modules.module
    if hooks._global_forward_hooks or hooks._global_forward_pre_hooks or any(
            m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        return predict(model, x)   # a hook may change the output, or must see every call
    # The thread count is part of the key: float sums in another order give other low bits.
    structure = f"{torch.get_num_threads()} threads: {model!r}"
    tensors = {**{f"p:{k}": v for k, v in model.named_parameters()}, **{f"b:{k}": v for k, v in model.named_buffers()}}

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return (a.dtype, a.device, a.shape) == (b.dtype, b.device, b.shape) and torch.equal(a, b)

    for i, (known, known_structure, known_tensors, known_x, logits) in enumerate(_memo):
        if (known is model and known_structure == structure and known_tensors.keys() == tensors.keys()
                and all(same(known_tensors[k], v) for k, v in tensors.items()) and same(known_x, x)):
            _memo.append(_memo.pop(i))   # most recently used last
            return logits.clone()
    logits = predict(model, x)
    _memo.append((model, structure, {k: v.detach().clone() for k, v in tensors.items()}, x.detach().clone(), logits))
    del _memo[:-_MEMO_SIZE]
    return logits.clone()


def labelled_logits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
    """predict(model, x), (n, classes), for images whose labels y are checked: a (n,) integer tensor
    (before predicting) whose labels are classes the logits name (after)."""
    validate.labels("y", y, n=len(x))
    logits = predict(model, x, batch_size=batch_size)
    validate.labels("y", y, n=len(x), classes=logits.shape[1])
    return logits


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
    """Per-image correctness, a (n,) boolean tensor: argmax of the logits == y (what paired tests compare)."""
    return labelled_logits(model, x, y, batch_size=batch_size).argmax(dim=1).cpu() == y.cpu()


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2048) -> float:
    """Accuracy in [0, 1]: mean of argmax(logits) == y (checked as in `correct`)."""
    return correct(model, x, y, batch_size=batch_size).float().mean().item()


def confusion_matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, classes: int = 10) -> torch.Tensor:
    """(classes, classes) counts: entry [i, j] is the number of samples of class i predicted as j."""
    validate.positive_int("classes", classes)
    validate.labels("y", y, n=len(x), classes=classes)   # an empty x is refused by predict
    predicted = predict(model, x).argmax(dim=1)
    if predicted.max() >= classes:
        raise ValueError(f"the model predicts class {predicted.max().item()}, beyond classes={classes}")
    return torch.bincount(y.cpu() * classes + predicted, minlength=classes * classes).reshape(classes, classes)
