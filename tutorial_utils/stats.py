"""Statistics for accuracies measured on a finite test set: intervals and paired comparisons.

On n = 1,000 test images an accuracy p has a standard error of sqrt(p (1 - p) / n): about 0.75 points
near 94%, so one image (0.1 points) or even half a point says little on its own.

Wilson's interval for a proportion (Wilson 1927), z the normal quantile of the confidence:

    center = (p + z^2 / 2n) / (1 + z^2 / n),   half = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

Two models on the same images are compared image by image (module mcnemar: stats.paired_test, the exact
McNemar p-value and the difference's interval).

Over a few seeds, paired by seed, the differences d_1..d_n get Student's t interval (student_t):

    mean(d) +- t_q * stdev(d) / sqrt(n),   t_q the two-sided quantile of t with n - 1 degrees of freedom

It covers the mean difference over training seeds on these test images (every seed is scored on the
same ones), not the test set's own sampling noise, which paired_test measures. When the differences are
the same on every seed (common on 1,000 images, where accuracies move in steps of 0.1 points) stdev(d)
is 0 and there is no interval: such seeds establish nothing.

With 3 seeds t_q is 4.30, not 2: "beyond two standard errors" would pass a difference that luck alone
makes about one time in five (18%).

Example:
    >>> wilson_interval(945, 1000)
    (0.92909..., 0.95750...)
"""

from __future__ import annotations

import math
import statistics
from tutorial_utils import student_t, validate
from tutorial_utils.mcnemar import PairedTest, paired_test  # noqa: F401  (public here: stats.paired_test)


def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(1 - (1 - validate.confidence("confidence", confidence)) / 2)


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) of the Wilson score interval for correct / total, as fractions in [0, 1]."""
    total = validate.positive_int("total", total)
    correct = validate.integer("correct", correct, low=0, high=total)
    z, p = _z(confidence), correct / total
    center = (p + z**2 / (2 * total)) / (1 + z**2 / total)
    half = z / (1 + z**2 / total) * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2))
    low = 0.0 if correct == 0 else center - half    # exact at the edges, where rounding would leave 1e-17
    high = 1.0 if correct == total else center + half
    return low, high


def mean_std(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) of per-seed results; the std is 0.0 for a single value."""
    if not values:
        raise ValueError("values is empty: give at least one result")
    _finite("values", values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _finite(name: str, values: list[float]) -> None:
    """A NaN (a failed run, a NaN accuracy in a ledger) would crash statistics.stdev or hide in a mean."""
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{name} holds {bad[0]!r}: every result must be a finite number")


def _pairs(values_a: list[float], values_b: list[float]) -> None:
    """Two lists of per-seed results that pair up: the same length, every value finite."""
    if len(values_a) != len(values_b):
        raise ValueError(f"values_a has {len(values_a)} seeds but values_b has {len(values_b)}; pair them by seed")
    _finite("values_a", values_a)
    _finite("values_b", values_b)


def over_seeds(values: list[float]) -> str:
    """Accuracies of one method over seeds as text: 'mean ± std (n = 3: min to max)'."""
    mean, std = mean_std(values)
    return f"{mean:.2%} ± {std:.2%} (n = {len(values)}: {min(values):.2%} to {max(values):.2%})"


def paired_over_seeds(values_a: list[float], values_b: list[float]) -> str:
    """A - B paired by seed (same initialisation and data order) as text, in points: mean ± std of the
    differences, on how many seeds A was higher, and the 95% t interval of the mean difference
    (paired_interval); a difference whose interval includes zero is not established by these seeds."""
    _pairs(values_a, values_b)
    differences = [100 * (a - b) for a, b in zip(values_a, values_b)]
    mean, std = mean_std(differences)
    higher = sum(d > 0 for d in differences)
    text = f"{mean:+.2f} ± {std:.2f} points over {len(differences)} seeds (higher on {higher} of them"
    if len(differences) < 2:
        return text + "; one seed gives no interval)"
    if _no_spread(differences) and mean != 0:
        return text + "; the same on every seed: no t interval, nothing established)"
    _, low, high = paired_interval(values_a, values_b)
    verdict = "includes zero" if low <= 0 <= high else "excludes zero"
    return text + f"; 95% t interval {100 * low:+.2f} to {100 * high:+.2f}: {verdict})"


def _no_spread(differences: list[float]) -> bool:
    """True when the per-seed differences are equal up to float rounding (a standard error of 0)."""
    return max(differences) - min(differences) <= 1e-9 * max(1.0, max(abs(d) for d in differences))


def paired_difference(values_a: list[float], values_b: list[float]) -> tuple[float, float]:
    """(mean, standard error) of the per-seed differences A - B:

        d_i = a_i - b_i,   mean = (1/n) sum d_i,   se = stdev(d) / sqrt(n)

    Pairing by seed cancels the seed's luck that A and B share. Needs at least two seeds of each, paired.
    The same difference on every seed gives se = 0 (exactly, not float noise): a description, not evidence.
    """
    _pairs(values_a, values_b)
    if len(values_a) < 2:
        raise ValueError(f"{len(values_a)} seed(s): a standard error needs at least 2")
    differences = [a - b for a, b in zip(values_a, values_b)]
    if _no_spread(differences):
        return statistics.fmean(differences), 0.0
    return statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(len(differences))


def paired_interval(values_a: list[float], values_b: list[float], confidence: float = 0.95
                    ) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean per-seed difference A - B,
    mean +- student_t.quantile(confidence, n - 1) * se, with (mean, se) from paired_difference.
    Identical lists give (0, 0, 0), which includes zero; the same nonzero difference on every seed has no
    interval at all (se = 0 is no evidence of certainty) and is a ValueError.

    Example:
        >>> [round(v, 4) for v in paired_interval([0.95, 0.96, 0.97], [0.94, 0.945, 0.95])]
        [0.015, 0.0026, 0.0274]
    """
    mean, se = paired_difference(values_a, values_b)
    if se == 0 and mean != 0:
        raise ValueError(f"values_a - values_b is {mean:+.6g} on every one of the {len(values_a)} seeds: no spread, "
                         "so no standard error and no t interval; these seeds establish nothing")
    half = student_t.quantile(confidence, len(values_a) - 1) * se
    return mean, mean - half, mean + half


def choose_over_seeds(baseline: list[float], candidates: dict[str, list[float]]) -> str | None:
    """The candidate to adopt over a baseline, from per-seed (held-out) accuracies paired by seed: among the
    candidates whose 95% t interval of the gain lies above zero (paired_interval: mean - t_q se > 0), the one
    with the largest mean gain (ties: the first listed); None when no candidate is established. A candidate
    whose gain is the same on every seed has no interval and is not established.

    Each candidate is tested at 95% on its own: with many candidates one may pass by luck, and the largest
    passing mean overstates its gain (the winner's curse); use holm() on their p-values, or confirm the
    choice on new seeds, when the list is long.
    """
    gains = {}
    for name, values in candidates.items():
        if len(values) != len(baseline):
            raise ValueError(f"candidate {name!r} has {len(values)} seeds but the baseline {len(baseline)}; pair them by seed")
        if len(values) >= 2 and _no_spread([v - b for v, b in zip(values, baseline)]):
            continue                                       # no interval: not established
        gains[name] = paired_interval(values, baseline)
    established = [(mean, name) for name, (mean, low, _) in gains.items() if low > 0]
    return max(established, key=lambda pair: pair[0], default=(None, None))[1]


def holm(p_values: list[float], *, alpha: float = 0.05) -> list[bool]:
    """Which of several hypotheses to reject, keeping the chance of any false rejection at most alpha
    (Holm 1979): sort the m p-values, reject the i-th smallest (i = 1..m) while p_(i) <= alpha / (m - i + 1),
    stop at the first that is not. Testing many models and seeds at 5% each would find some by chance.
    Returns one bool per p-value, in the order given.

    Example:
        >>> holm([0.001, 0.04, 0.03])      # thresholds 0.05/3, 0.05/2, 0.05/1: only the first
        [True, False, False]
    """
    if not p_values:
        raise ValueError("p_values is empty: give at least one")
    for p in p_values:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p_values must lie in [0, 1]; got {p!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    m, rejected = len(p_values), [False] * len(p_values)
    for i, index in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        if p_values[index] > alpha / (m - i):
            break
        rejected[index] = True
    return rejected
