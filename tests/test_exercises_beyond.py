"""Notebook 07's checks pass the notebook's solution and fail plausible wrong answers with a precise message."""

import pytest
import torch
import torch.nn.functional as F

from tutorial_utils import data, exercises_beyond, robustness


def pgd_right(model, x, y, epsilon, steps, step_size):
    radius = epsilon / data.STD
    adversarial = x.clone()
    for _ in range(steps):
        adversarial.requires_grad_(True)
        loss = F.cross_entropy(model(adversarial), y)
        gradient, = torch.autograd.grad(loss, adversarial)
        adversarial = adversarial.detach() + step_size / data.STD * gradient.sign()
        adversarial = torch.clamp(torch.min(torch.max(adversarial, x - radius), x + radius), robustness.LOW, robustness.HIGH)
    return adversarial.detach()


def pgd_no_projection(model, x, y, epsilon, steps, step_size):
    adversarial = x.clone()
    for _ in range(steps):
        adversarial.requires_grad_(True)
        gradient, = torch.autograd.grad(F.cross_entropy(model(adversarial), y), adversarial)
        adversarial = torch.clamp(adversarial.detach() + step_size / data.STD * gradient.sign(), robustness.LOW, robustness.HIGH)
    return adversarial


def pgd_pixel_units(model, x, y, epsilon, steps, step_size):
    adversarial = x.clone()
    for _ in range(steps):  # forgets that x is normalised: epsilon and steps in the wrong units
        adversarial.requires_grad_(True)
        gradient, = torch.autograd.grad(F.cross_entropy(model(adversarial), y), adversarial)
        adversarial = adversarial.detach() + step_size * gradient.sign()
        adversarial = torch.clamp(torch.min(torch.max(adversarial, x - epsilon), x + epsilon), robustness.LOW, robustness.HIGH)
    return adversarial


def _ece(logits, y, bins, index_of):
    confidence, predicted = torch.softmax(logits, 1).max(1)
    index = index_of(confidence, bins)
    total = 0.0
    for b in range(bins):
        chosen = index == b
        if chosen.any():
            total += chosen.sum().item() * abs((predicted[chosen] == y[chosen]).float().mean().item()
                                               - confidence[chosen].mean().item())
    return total / len(y)


def ece_right(logits, y, bins):
    return _ece(logits, y, bins, lambda c, b: torch.clamp(torch.ceil(c * b).long() - 1, 0, b - 1))


def ece_floor_bins(logits, y, bins):
    # [(b-1)/B, b/B): a confidence on a bin's upper edge lands one bin up
    return _ece(logits, y, bins, lambda c, b: torch.clamp((c * b).long(), 0, b - 1))


def ece_unweighted(logits, y, bins):
    confidence, predicted = torch.softmax(logits, 1).max(1)
    index = torch.clamp(torch.ceil(confidence * bins).long() - 1, 0, bins - 1)
    gaps = [abs((predicted[index == b] == y[index == b]).float().mean().item() - confidence[index == b].mean().item())
            for b in range(bins) if (index == b).any()]
    return sum(gaps) / len(gaps)  # every bin counts the same, whatever its size


def auc_right(members, nonmembers):
    greater = (nonmembers[None, :] > members[:, None]).double().sum()
    equal = (nonmembers[None, :] == members[:, None]).double().sum()
    return ((greater + equal / 2) / (len(members) * len(nonmembers))).item()


def auc_ties_ignored(members, nonmembers):
    return ((nonmembers[None, :] > members[:, None]).double().mean()).item()


def auc_reversed(members, nonmembers):
    return 1 - auc_right(members, nonmembers)


CASES = [
    (exercises_beyond.check_pgd, pgd_right, [pgd_no_projection, pgd_pixel_units]),
    (exercises_beyond.check_ece, ece_right, [ece_floor_bins, ece_unweighted]),
    (exercises_beyond.check_auc, auc_right, [auc_ties_ignored, auc_reversed]),
]


@pytest.mark.parametrize("check, right, wrongs", CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_the_solution_and_fails_wrong_answers(check, right, wrongs, exercise_check):
    exercise_check(check, right, wrongs)


def test_the_bin_edge_case_tells_the_bin_rules_apart():
    """Guards: the case at exactly 0.5 is not vacuous: floor binning fails on it first (before confidence 1.0)."""
    with pytest.raises(exercises_beyond.ExerciseError, match="a bin edge"):
        exercises_beyond.check_ece(ece_floor_bins)


def test_check_auc_accepts_a_float32_answer():
    """Summing pairs in float32 is off by about 1e-8 (0.4779999852 for 0.478): a right answer, accepted."""
    def auc_float32(members, nonmembers):
        pairs = [(n > m).float() + (n == m).float() / 2 for m in members for n in nonmembers]
        return (torch.stack(pairs).sum() / (len(members) * len(nonmembers))).item()
    exercises_beyond.check_auc(auc_float32)
