"""Student's t: quantiles against a printed table and closed forms, coverage against its own definition."""

import math

import pytest
import torch

from tutorial_utils import student_t

# Two-sided 95% and 99% quantiles of Student's t, from a printed table (NIST/SEMATECH e-Handbook of
# Statistical Methods, section 1.3.6.7.2, upper critical values at 0.025 and 0.005).
T_TABLE = {(1, 0.95): 12.706, (2, 0.95): 4.303, (3, 0.95): 3.182, (4, 0.95): 2.776, (5, 0.95): 2.571,
           (9, 0.95): 2.262, (10, 0.95): 2.228, (30, 0.95): 2.042, (2, 0.99): 9.925, (4, 0.99): 4.604,
           (9, 0.99): 3.250}


@pytest.mark.parametrize("dof, confidence", sorted(T_TABLE))
def test_quantile_matches_the_printed_table(dof, confidence):
    assert student_t.quantile(confidence, dof) == pytest.approx(T_TABLE[dof, confidence], abs=6e-4)


def test_quantile_closed_forms_and_the_normal_limit():
    # dof 1 is Cauchy: P(|T| <= t) = 2 atan(t) / pi; dof 2: P(|T| <= t) = t / sqrt(2 + t^2)
    assert student_t.quantile(0.9, 1) == pytest.approx(math.tan(0.45 * math.pi), rel=1e-9)
    assert student_t.quantile(0.9, 2) == pytest.approx(0.9 * math.sqrt(2 / (1 - 0.81)), rel=1e-9)
    assert student_t.quantile(0.95, 2000) == pytest.approx(1.959963984540054, abs=2e-3)
    with pytest.raises(ValueError, match="dof=0 must be a positive integer"):
        student_t.quantile(0.95, 0)
    with pytest.raises(ValueError, match="confidence=95"):
        student_t.quantile(95, 2)


def test_coverage_is_the_probability_that_simulated_t_values_fall_inside():
    """Brute force: t = mean / (stdev / sqrt(n)) of n = 3 and n = 6 standard normals, 20,000 draws each."""
    generator = torch.Generator().manual_seed(0)
    for n in (3, 6):
        z = torch.randn(20_000, n, generator=generator, dtype=torch.float64)
        t = (z.mean(dim=1) / (z.std(dim=1) / math.sqrt(n))).abs()
        for bound in (1.0, 2.0, 4.0):
            share = (t <= bound).double().mean().item()
            assert student_t.coverage(bound, n - 1) == pytest.approx(share, abs=0.01), (n, bound)


def test_coverage_refuses_bad_input():
    with pytest.raises(ValueError, match="t=-1"):
        student_t.coverage(-1.0, 2)
    with pytest.raises(ValueError, match="dof=0 must be a positive integer"):
        student_t.coverage(1.0, 0)


def test_docstring_examples_hold():
    import doctest
    assert doctest.testmod(student_t, optionflags=doctest.ELLIPSIS).failed == 0
