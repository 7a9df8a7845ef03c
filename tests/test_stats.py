"""Intervals and paired tests, checked against hand computations and brute-force references."""

import math
import random

import pytest
import torch

from tutorial_utils import stats


def test_wilson_interval_matches_a_hand_computation():
    # 945 of 1000, z = 1.959964: center (0.945 + z^2/2000) / (1 + z^2/1000), half-width by the formula
    z = 1.959963984540054
    p, n = 0.945, 1000
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = stats.wilson_interval(945, 1000)
    assert low == pytest.approx(center - half, abs=1e-12) and high == pytest.approx(center + half, abs=1e-12)
    # independent of that formula: Wilson's ends are the two roots pi of (p - pi)^2 = z^2 pi (1 - pi) / n,
    # the proportions a score test would just accept (a Wald interval's ends miss it by a fifth or more here)
    for correct, total in ((945, 1000), (3, 10), (999, 1000), (50, 60)):
        for end in stats.wilson_interval(correct, total):
            p_hat = correct / total
            assert (p_hat - end) ** 2 == pytest.approx(z * z * end * (1 - end) / total, rel=1e-9, abs=1e-15)
    # closed form at p = 0: the upper end is z^2 / (n + z^2)
    assert stats.wilson_interval(0, 10)[1] == pytest.approx(z * z / (10 + z * z), abs=1e-12)


def test_wilson_interval_covers_about_95_percent_of_simulated_experiments():
    """Coverage by simulation: the true accuracy lands inside in close to 95% of 2,000 draws."""
    rng, p, n, inside = random.Random(0), 0.94, 1000, 0
    for _ in range(2000):
        correct = sum(rng.random() < p for _ in range(n))
        low, high = stats.wilson_interval(correct, n)
        inside += low <= p <= high
    assert 0.93 <= inside / 2000 <= 0.97


def test_wilson_interval_edges_and_bad_input():
    assert stats.wilson_interval(0, 10)[0] == 0.0 and stats.wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError, match="correct=11 must be an integer in 0..10"):
        stats.wilson_interval(11, 10)
    with pytest.raises(ValueError, match="total=0 must be a positive integer"):
        stats.wilson_interval(0, 0)
    with pytest.raises(ValueError, match="confidence=1.5"):
        stats.wilson_interval(1, 2, confidence=1.5)


def test_mean_std():
    assert stats.mean_std([0.94, 0.95, 0.96]) == pytest.approx((0.95, 0.01))
    assert stats.mean_std([0.9]) == (0.9, 0.0)
    with pytest.raises(ValueError, match="values is empty"):
        stats.mean_std([])


def test_over_seeds_and_paired_over_seeds_text():
    assert stats.over_seeds([0.94, 0.95, 0.96]) == "95.00% ± 1.00% (n = 3: 94.00% to 96.00%)"
    # d = 1.0, 1.5, 2.0 points: mean 1.5, std 0.5, half-width 4.303 * 0.5 / sqrt(3) = 1.242
    text = stats.paired_over_seeds([0.95, 0.96, 0.97], [0.94, 0.945, 0.95])
    assert text == "+1.50 ± 0.50 points over 3 seeds (higher on 3 of them; 95% t interval +0.26 to +2.74: excludes zero)"
    # d = 0.5, 1.0, 1.5: the mean is 3.5 standard errors from zero, yet t with 2 degrees of freedom needs 4.3
    assert stats.paired_over_seeds([0.945, 0.95, 0.955], [0.94, 0.94, 0.94]).endswith(
        "95% t interval -0.24 to +2.24: includes zero)")
    assert stats.paired_over_seeds([0.95], [0.94]).endswith("(higher on 1 of them; one seed gives no interval)")
    # +1 image of 1,000 on every seed: floats differ by 1e-16, but there is no spread and no interval
    assert stats.paired_over_seeds([0.945, 0.952, 0.949], [0.944, 0.951, 0.948]) == (
        "+0.10 ± 0.00 points over 3 seeds (higher on 3 of them; the same on every seed: no t interval, nothing established)")
    with pytest.raises(ValueError, match=r"values_a - values_b is \+0.01 on every one of the 2 seeds: no spread"):
        stats.paired_interval([0.95, 0.95], [0.94, 0.94])
    # identical lists (ONNX Runtime against PyTorch on every seed, say) are no difference, not an error
    assert stats.paired_interval([0.94, 0.95, 0.93], [0.94, 0.95, 0.93]) == (0.0, 0.0, 0.0)
    assert stats.paired_difference([0.95, 0.95], [0.94, 0.94]) == (pytest.approx(0.01), 0.0)
    assert stats.paired_over_seeds([0.94, 0.95], [0.94, 0.95]).endswith("95% t interval +0.00 to +0.00: includes zero)")
    with pytest.raises(ValueError, match="pair them by seed"):
        stats.paired_over_seeds([0.9], [0.9, 0.8])


def test_correct_is_per_image_and_matches_evaluate(small_splits):
    from tutorial_utils import evaluation, models

    model = models.student()
    hits = evaluation.correct(model, small_splits.x_test, small_splits.y_test)
    assert hits.dtype == torch.bool and hits.shape == (200,)
    assert hits.float().mean().item() == pytest.approx(evaluation.evaluate(model, small_splits.x_test, small_splits.y_test))


def test_paired_difference_against_a_hand_computation():
    mean, se = stats.paired_difference([0.95, 0.93, 0.94], [0.94, 0.93, 0.92])
    differences = [0.01, 0.0, 0.02]                       # mean 0.01, sample std 0.01
    assert mean == pytest.approx(sum(differences) / 3) and se == pytest.approx(0.01 / 3 ** 0.5)
    with pytest.raises(ValueError, match="pair them by seed"):
        stats.paired_difference([0.9, 0.9], [0.9])
    with pytest.raises(ValueError, match="at least 2"):
        stats.paired_difference([0.9], [0.9])


def test_choose_over_seeds_adopts_only_established_gains():
    base = [0.90, 0.93, 0.91]
    steady = [b + d for b, d in zip(base, (0.002, 0.003, 0.002))]
    noisy = [b + d for b, d in zip(base, (0.03, -0.02, 0.02))]
    assert stats.choose_over_seeds(base, {"noisy": noisy, "steady": steady}) == "steady"
    assert stats.choose_over_seeds(base, {"noisy": noisy}) is None
    # the same gain on every seed has no spread, no t interval, and establishes nothing
    assert stats.choose_over_seeds(base, {"same +0.4 everywhere": [b + 0.004 for b in base]}) is None
    a = [b + d for b, d in zip(base, (0.004, 0.005, 0.003))]
    assert stats.choose_over_seeds(base, {"a": a, "b": [b + d for b, d in zip(base, (0.002, 0.003, 0.001))]}) == "a"
    with pytest.raises(ValueError, match="candidate 'short' has 2 seeds but the baseline 3"):
        stats.choose_over_seeds(base, {"short": base[:2]})
    # Beyond two standard errors (mean 0.010, se 0.0029) but not beyond t's 4.303: not adopted.
    lucky = [b + d for b, d in zip(base, (0.005, 0.010, 0.015))]
    assert stats.paired_difference(lucky, base)[0] > 2 * stats.paired_difference(lucky, base)[1]
    assert stats.choose_over_seeds(base, {"lucky": lucky}) is None


def test_paired_interval_covers_the_true_difference_95_percent_of_the_time_with_three_seeds():
    """Coverage by simulation: three normal differences, 4,000 experiments. Two standard errors would cover
    only about 82% here (P(|T_2| <= 2) = 2 / sqrt(6)); t's 4.30 covers 95%."""
    generator = torch.Generator().manual_seed(0)
    inside = inside_2se = 0
    for _ in range(4000):
        d = (0.01 + 0.02 * torch.randn(3, generator=generator, dtype=torch.float64)).tolist()
        mean, low, high = stats.paired_interval(d, [0.0, 0.0, 0.0])
        se = stats.paired_difference(d, [0.0, 0.0, 0.0])[1]
        inside += low <= 0.01 <= high
        inside_2se += abs(mean - 0.01) <= 2 * se
    assert 0.935 <= inside / 4000 <= 0.965
    assert 0.79 <= inside_2se / 4000 <= 0.85


def test_holm_rejects_in_order_and_stops_at_the_first_that_fails():
    """Guards: by hand: thresholds alpha / m, alpha / (m - 1), ...; one p above its threshold stops every larger one,
    even one that would pass alone (0.03 < 0.05 / 1), unlike Bonferroni's or uncorrected testing."""
    assert stats.holm([0.001, 0.04, 0.03]) == [True, False, False]
    assert stats.holm([0.01, 0.02, 0.04]) == [True, True, True]          # 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05
    assert stats.holm([0.02, 0.001]) == [True, True]                      # order given is kept
    assert stats.holm([0.3]) == [False] and stats.holm([0.05]) == [True]
    for bad, match in (([], "empty"), ([1.2], "p_values"), ([0.1], "alpha")):
        with pytest.raises(ValueError, match=match):
            stats.holm(bad, alpha=0.05 if match != "alpha" else 1.0)


def test_docstring_examples_hold():
    import doctest
    result = doctest.testmod(stats, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0
