"""Checks for notebook 07's exercises (beyond accuracy): each runs the learner's function on hidden cases,
edge cases included, and names the first case that differs from the package's reference."""

from __future__ import annotations

import math
from typing import Callable

import torch

from tutorial_utils import calibration, models, privacy, robustness
from tutorial_utils.exercises import ExerciseError  # noqa: F401  (one error type for every exercise)
from tutorial_utils.exercises import _fail, _passed, own_random_stream, own_work


@own_random_stream
def check_pgd(my_pgd: Callable) -> None:
    """my_pgd(model, x, y, epsilon, steps, step_size) -> images, as robustness.pgd(..., random_start=False,
    stop_when_fooled=False): the textbook loop."""
    my_pgd = own_work("check_pgd", my_pgd, "robustness.pgd")
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    model = models.mlp([12, 8, 3])
    x = (torch.rand(20, 12, generator=generator) - 0.1307) / 0.3081
    y = torch.randint(0, 3, (20,), generator=generator)
    cases = [(0.05, 10, 0.0125, "epsilon 0.05, 10 steps of 0.0125"), (0.05, 5, 0.05, "steps as large as the ball "
             "(projection decides)"), (0.0, 3, 0.01, "epsilon 0 (nothing may change)"),
             (1.0, 4, 0.5, "epsilon 1 (the pixel range decides)")]
    for epsilon, steps, step_size, name in cases:
        expected = robustness.pgd(model, x, y, epsilon=epsilon, steps=steps, step_size=step_size, random_start=False,
                                  stop_when_fooled=False) \
            if epsilon > 0 else x.clone()
        got = my_pgd(model, x, y, epsilon, steps, step_size)
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-5):
            worst = (got - expected).abs().max().item() if isinstance(got, torch.Tensor) and got.shape == expected.shape else None
            _fail("check_pgd", name, "images inside the epsilon ball around x and inside [LOW, HIGH]",
                  f"largest difference {worst}" if worst is not None else repr(getattr(got, "shape", got)),
                  "each step: x_t + step_size / STD * sign(gradient); then project onto [x - eps/STD, x + eps/STD], "
                  "then clamp to robustness.LOW..HIGH")
    _passed("check_pgd", len(cases))


def check_ece(my_ece: Callable) -> None:
    """my_ece(logits, y, bins) -> expected calibration error, as calibration.expected_calibration_error."""
    my_ece = own_work("check_ece", my_ece, "calibration.expected_calibration_error")
    generator = torch.Generator().manual_seed(8)
    cases = [(torch.randn(200, 10, generator=generator) * 3, torch.randint(0, 10, (200,), generator=generator), 15,
              "200 random images, 15 bins"),
             (torch.tensor([[4.0, 0.0], [0.0, 4.0]]), torch.tensor([0, 1]), 1, "one bin, both right"),
             # 0.5 exactly (right) shares the bin (0.4, 0.5] with 0.45 (wrong): ECE 0.025; floor binning splits them
             (torch.tensor([[0.0, 0.0, -30.0, -30.0], [math.log(0.9 / 0.55), 0.0, 0.0, -30.0]]), torch.tensor([0, 1]), 10,
              "confidence exactly 0.5 (a bin edge) and 0.45: the same bin (0.4, 0.5]"),
             (torch.tensor([[40.0, 0.0]]), torch.tensor([1]), 10, "confidence 1.0 and wrong: the last bin"),
             (torch.tensor([[0.0, 0.0], [0.2, 0.0]]), torch.tensor([0, 1]), 10,
              "0.5 and 0.55: bins are ((b-1)/B, b/B], so they fall in different bins")]
    for logits, y, bins, name in cases:
        expected, got = calibration.expected_calibration_error(logits, y, bins=bins), my_ece(logits, y, bins)
        if abs(float(got) - expected) > 1e-6:
            _fail("check_ece", name, f"{expected:.6f}", f"{got}",
                  "bin by confidence = max softmax, bins ((b-1)/B, b/B]; sum over bins of n_b / n * |acc_b - conf_b|")
    _passed("check_ece", len(cases))


def check_auc(my_auc: Callable) -> None:
    """my_auc(member_losses, nonmember_losses) -> ROC AUC of the loss-threshold attack, as privacy.membership_auc."""
    my_auc = own_work("check_auc", my_auc, "privacy.membership_auc")
    generator = torch.Generator().manual_seed(9)
    cases = [(torch.rand(50, generator=generator), torch.rand(40, generator=generator) + 0.1, "random losses"),
             (torch.tensor([1.0, 2.0, 2.0]), torch.tensor([2.0, 3.0]), "ties count one half"),
             (torch.tensor([0.5]), torch.tensor([0.5, 0.5]), "every loss equal: 0.5"),
             (torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0]), "members lose more: 0.0")]
    for members, nonmembers, name in cases:
        expected, got = privacy.membership_auc(members, nonmembers), my_auc(members, nonmembers)
        # 1e-6: a float32 division is off by about 1.5e-8; one pair of the 2,000 moves the AUC by 5e-4, a tie 2.5e-4
        if abs(float(got) - expected) > 1e-6:
            _fail("check_auc", name, f"{expected:.9f}", f"{float(got):.9f}",
                  "P(non-member loss > member loss) + P(equal) / 2, over all (member, non-member) pairs")
    _passed("check_auc", len(cases))
