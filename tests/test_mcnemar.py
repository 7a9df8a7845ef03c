"""mcnemar: the exact McNemar p-value against brute force, the Wald interval against the per-image
differences, and the printed verdict when the two disagree."""

import math

import pytest
import torch

from tutorial_utils import mcnemar, stats


def _pair(b: int, c: int, n: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Correctness of A and B on n images: b right only for A, c only for B, 90% right for both."""
    both = 9 * n // 10
    neither = n - both - b - c
    a = torch.tensor([True] * both + [True] * b + [False] * c + [False] * neither)
    other = torch.tensor([True] * both + [False] * b + [True] * c + [False] * neither)
    return a, other


def brute_force_mcnemar(b: int, c: int) -> float:
    """Two-sided exact p-value by enumerating every split of the b + c discordant images."""
    n = b + c
    probability = [math.comb(n, k) / 2**n for k in range(n + 1)]
    observed = probability[min(b, c)]
    return min(1.0, sum(q for q in probability if q <= observed + 1e-15))


@pytest.mark.parametrize("b, c", [(0, 0), (3, 3), (10, 2), (2, 10), (25, 11), (0, 7), (40, 60)])
def test_paired_test_against_brute_force(b, c):
    result = mcnemar.paired_test(*_pair(b, c))
    assert (result.only_a, result.only_b, result.total) == (b, c, 1000)
    assert result.diff == pytest.approx((b - c) / 1000)
    assert result.p_value == pytest.approx(1.0 if b + c == 0 else brute_force_mcnemar(b, c), rel=1e-9)


def test_paired_test_refuses_unpaired_input():
    with pytest.raises(ValueError, match="a paired test needs the same images"):
        mcnemar.paired_test(torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="correct_a must be a non-empty 1-d boolean tensor"):
        mcnemar.paired_test(torch.ones(3), torch.ones(3, dtype=torch.bool))


def test_paired_test_text_when_the_models_agree_everywhere():
    same = torch.tensor([True, False, True])
    assert str(mcnemar.paired_test(same, same)) == "+0.00% (the two models agree on all 3 images: no evidence either way)"


def test_paired_interval_is_the_wald_interval_of_the_per_image_differences():
    """Guards: the interval's half-width is z times the standard error of the mean of d_i = a_i - b_i in
    {-1, 0, 1}, computed here from the differences themselves (population std / sqrt(n)); an interval half
    as wide, or one that forgot the (b - c)^2 / n term, differs."""
    b, c = 30, 10
    a, other = _pair(b, c)
    d = a.double() - other.double()
    half = 1.959963984540054 * d.std(unbiased=False).item() / math.sqrt(len(d))
    result = mcnemar.paired_test(a, other)
    assert (result.low, result.high) == pytest.approx((d.mean().item() - half, d.mean().item() + half), abs=1e-12)




@pytest.mark.parametrize("b, c, disagree", [(5, 0, True), (9, 2, True), (12, 4, True), (20, 5, False),
                                            (14, 10, False), (1, 0, False)])
def test_the_text_says_when_the_wald_interval_and_the_exact_p_disagree(b, c, disagree):
    """With few discordant images the Wald interval can exclude zero while the exact p is above 0.05
    (5 vs 0: p = 2 / 2^5 = 0.0625); the printed result then says to trust the p."""
    result = mcnemar.paired_test(*_pair(b, c))
    wald_excludes = result.low > 0 or result.high < 0
    assert (wald_excludes != (result.p_value < 0.05)) == disagree
    assert ("disagree: trust the p" in str(result)) == disagree
    if (b, c) == (5, 0):
        assert result.p_value == 0.0625


def test_stats_keeps_the_public_names():
    assert stats.paired_test is mcnemar.paired_test and stats.PairedTest is mcnemar.PairedTest


def test_docstring_example_holds():
    import doctest
    assert doctest.testmod(mcnemar).failed == 0
