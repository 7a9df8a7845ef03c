"""Adversarial robustness and what compression forgets: FGSM, PGD, disagreement between two models.

Attacks work in pixel units: epsilon is the largest change of one pixel on the 0..1 scale (8/255 is a
common budget), and adversarial images stay valid images (every pixel in 0..1). The data are normalised,
x = (pixel - MEAN) / STD, so in the model's input units the ball has radius epsilon / STD and the pixel
range is [(0 - MEAN) / STD, (1 - MEAN) / STD].

    FGSM (Goodfellow et al. 2015):  x' = clip(x + eps * sign(grad_x loss(model(x), y)))
    PGD  (Madry et al. 2018):       x_{t+1} = clip(project_eps(x_t + step * sign(grad_x loss)))

Both need the gradient of the loss with respect to the input. A model whose forward pass rounds its
input (activation quantization) has gradient zero almost everywhere: the attack then does nothing and
the model *looks* robust ("gradient masking"). Attack a differentiable surrogate that computes the same
function instead (for an int8 backend: `quantization.dequantize_model` of its weights), and say so.

Example:
    >>> x_adv = pgd(model, splits.x_test, splits.y_test, epsilon=0.1)
    >>> robust_accuracy(model, splits.x_test, splits.y_test, epsilon=0.1)
"""

from __future__ import annotations

import torch
from torch import nn

from tutorial_utils import data, evaluation, models, stats, validate
from tutorial_utils.calibration import expected_calibration_error  # noqa: F401  (public here too)

LOW, HIGH = (0.0 - data.MEAN) / data.STD, (1.0 - data.MEAN) / data.STD   # the pixel range, normalised


def _check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> float:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty (n, features) tensor; got {getattr(x, 'shape', type(x).__name__)}")
    validate.labels("y", y, n=len(x))
    device = models.device_of(model)
    if x.device != device:
        raise ValueError(f"x is on {x.device} but the model on {device}; move one of them")
    # in [0, 1], pixel units: 1 already lets every pixel reach either end, so more is a unit slip (8 for 8/255)
    return validate.probability("epsilon", epsilon)


def _gradient_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sign of d cross_entropy(model(x), y) / dx, and the logits model(x) it came from (detached); the
    model's parameters get no gradient."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (gradient,) = torch.autograd.grad(nn.functional.cross_entropy(logits, y), x)
    return gradient.sign(), logits.detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float) -> torch.Tensor:
    """One signed-gradient step of size epsilon (pixel units), clipped to the pixel range. Returns new images."""
    epsilon = _check(model, x, y, epsilon) / data.STD
    was_training = model.training
    model.eval()
    try:
        return torch.clamp(x + epsilon * _gradient_sign(model, x, y)[0], LOW, HIGH).detach()
    finally:
        model.train(was_training)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float, steps: int = 10,
        step_size: float | None = None, random_start: bool = True, seed: int = 0,
        stop_when_fooled: bool = True, judge: nn.Module | None = None) -> torch.Tensor:
    """Projected gradient descent in the L-infinity ball of radius epsilon (pixel units) around x.

    step_size defaults to 2.5 * epsilon / steps (a common rule: the steps span 2.5 radii, enough to reach the
    ball's edge from any start and move along it); random_start draws the start uniformly in
    the ball from a private generator (`seed`), so the global random stream is untouched. Every iterate is
    projected back onto the ball and clipped to the pixel range. With stop_when_fooled (the default) an
    image keeps the first iterate the model misclassifies: a later step can lead it back to its class, and
    the attack has succeeded if any iterate fooled the model. False gives the textbook loop's last
    iterate. `judge` is the model whose mistakes count (default: `model`): attacking a target through a
    surrogate's gradients, an image stops when the target is fooled, not the surrogate. Returns new images.
    """
    radius = _check(model, x, y, epsilon) / data.STD
    validate.positive_int("steps", steps)
    step = 2.5 * radius / steps if step_size is None else validate.positive_float("step_size", step_size) / data.STD
    judge = model if judge is None else judge
    was_training, judge_was_training = model.training, judge.training
    model.eval()
    judge.eval()
    try:
        adversarial = x.detach().clone()
        if random_start and radius > 0:
            generator = torch.Generator(device=x.device).manual_seed(seed)
            noise = torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1   # (n, features) in -1..1
            adversarial = torch.clamp(x + radius * noise, LOW, HIGH)
        for _ in range(steps):
            sign, logits = _gradient_sign(model, adversarial, y)
            stepped = torch.clamp(torch.min(torch.max(adversarial + step * sign, x - radius), x + radius), LOW, HIGH)
            if stop_when_fooled:                          # an image the current iterate fools stays there
                if judge is not model:
                    with torch.no_grad():
                        logits = judge(adversarial)
                stepped = torch.where((logits.argmax(dim=1) != y).unsqueeze(1), adversarial, stepped)
            adversarial = stepped
        return adversarial.detach()
    finally:
        model.train(was_training)
        judge.train(judge_was_training)


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float, attack: str = "pgd",
                    surrogate: nn.Module | None = None, steps: int = 10, restarts: int = 1) -> float:
    """Accuracy of `model` on images attacked within epsilon (pixel units).

    The attack's gradients come from `surrogate` if given (a differentiable model computing the same
    function), else from the model itself. attack: "fgsm" or "pgd". An image counts as right only if the
    model gets it right clean and after the attack (x is in its own ball). With PGD, `restarts` runs the
    attack from that many random starts (seeds 0, 1, ...) and the image must survive every one, so more
    restarts can only lower the figure; more steps change the path (the default step is
    2.5 * epsilon / steps), so a longer attack is usually, not always, stronger. Every attack's figure is an
    upper bound on robustness.
    """
    attack = validate.choice("attack", attack, ("fgsm", "pgd"))
    validate.positive_int("restarts", restarts)
    if attack == "fgsm" and restarts != 1:
        raise ValueError(f"restarts must be 1 for attack 'fgsm' (it has no random start); got {restarts}")
    source = surrogate if surrogate is not None else model
    survived = evaluation.correct(model, x, y)                                          # (n,) right when clean
    if attack == "fgsm":
        return (survived & evaluation.correct(model, fgsm(source, x, y, epsilon=epsilon), y)).float().mean().item()
    for seed in range(restarts):
        adversarial = pgd(source, x, y, epsilon=epsilon, steps=steps, seed=seed, judge=model)   # model's mistakes count
        survived &= evaluation.correct(model, adversarial, y)
    return survived.float().mean().item()


def disagreement(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                 classes: int = 10) -> dict:
    """Where two models differ (Hooker et al. 2019: compression-identified exemplars).

    Returns the indices of the images on which their predictions differ, the paired test of their
    correctness (stats.paired_test, A - B), and per class: n, the accuracy of each and its Wilson interval.
    """
    validate.positive_int("classes", classes)
    validate.labels("y", y, n=len(x), classes=classes)   # a label >= classes would drop out of the per-class view
    predictions_a, predictions_b = evaluation.predict(model_a, x).argmax(1), evaluation.predict(model_b, x).argmax(1)
    y = y.cpu()   # predict's logits come back on the CPU
    right_a, right_b = predictions_a == y, predictions_b == y
    per_class = []
    for label in range(classes):
        chosen = y == label
        n = int(chosen.sum())
        row = {"class": label, "n": n}
        for name, right in (("a", right_a), ("b", right_b)):
            hits = int(right[chosen].sum())
            row[f"accuracy_{name}"] = hits / n if n else float("nan")
            row[f"interval_{name}"] = stats.wilson_interval(hits, n) if n else (float("nan"), float("nan"))
        per_class.append(row)
    return {"differ": (predictions_a != predictions_b).nonzero().flatten(), "paired": stats.paired_test(right_a, right_b),
            "per_class": per_class}
