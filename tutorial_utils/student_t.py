"""Student's t distribution (Student 1908), for intervals over a few seeds: its two-sided coverage and quantile.

The mean of n paired differences, divided by its estimated standard error, follows t with n - 1 degrees of
freedom. With few seeds the estimate of the spread is itself noisy, so t's tails are heavier than the
normal curve's: the 95% two-sided quantile is 12.71 for 2 seeds, 4.30 for 3, 2.78 for 5, and tends to
1.96. `stats.paired_interval` uses it.

Example:
    >>> round(quantile(0.95, 2), 3)      # three seeds: the interval is mean +- 4.303 standard errors
    4.303
"""

from __future__ import annotations

import math

from tutorial_utils import validate


def coverage(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's t with an integer number of degrees of freedom `dof`, in closed form
    (Abramowitz and Stegun 26.7.3-4): with theta = atan(t / sqrt(dof)) and c = cos(theta),

        dof odd:  (2 / pi) (theta + sin(theta) (c + 2/3 c^3 + 2*4/(3*5) c^5 + ... up to c^(dof - 2)))
        dof even: sin(theta) (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... up to c^(dof - 2))

    Example:
        >>> round(coverage(1.0, 1), 4)       # Cauchy: 2 atan(1) / pi
        0.5
    """
    dof = validate.positive_int("dof", dof)
    t = validate.nonnegative_float("t", t)
    theta = math.atan(t / math.sqrt(dof))
    c2, term = math.cos(theta) ** 2, 1.0
    if dof % 2 == 0:
        total = 1.0
        for k in range(2, dof, 2):          # term_k = term_(k-2) * (k - 1) / k * c^2
            term *= (k - 1) / k * c2
            total += term
        return math.sin(theta) * total
    if dof == 1:
        return 2 * theta / math.pi
    term = math.cos(theta)
    total = term
    for k in range(3, dof, 2):              # term_k = term_(k-2) * (k - 1) / k * c^2
        term *= (k - 1) / k * c2
        total += term
    return 2 / math.pi * (theta + math.sin(theta) * total)


def quantile(confidence: float, dof: int) -> float:
    """The two-sided quantile t_q of Student's t with `dof` degrees of freedom: coverage(t_q, dof) = confidence,
    found by bisection (the coverage rises with t).

    Example:
        >>> round(quantile(0.95, 4), 3)      # five seeds
        2.776
    """
    confidence = validate.confidence("confidence", confidence)
    dof = validate.positive_int("dof", dof)
    low, high = 0.0, 1.0
    while coverage(high, dof) < confidence:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if coverage(middle, dof) < confidence else (low, middle)
    return (low + high) / 2
