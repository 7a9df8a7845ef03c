"""Membership inference: does a model reveal which images it was trained on? (Yeom et al. 2018)

The loss-threshold attack guesses "member" when the model's loss on an image is low: a model fits its
training images better than images it never saw. Its strength over all thresholds is the ROC AUC,

    AUC = P(loss of a random non-member > loss of a random member)   (ties count 1/2)
        = (R_nonmembers - m (m + 1) / 2) / (m * k)                    (Mann-Whitney U, from ranks)

with R the sum of the non-members' ranks among all losses (average ranks for ties), m non-members and
k members. 0.5 is guessing. The advantage max_t (TPR - FPR) is the best single threshold's edge
(Yeom et al.'s membership advantage): the one-sided Kolmogorov-Smirnov distance between the two sets'
losses, set by the bulk of the losses, not by a few outliers. For a model that leaks nothing the AUC
averages 0.5 but the advantage stays above 0 (its threshold is chosen on the very images it is scored
on); `permutation_test` gives both their chance distribution by shuffling which images are members.
With 4,000 members and 1,000 non-members one AUC's standard error
(Hanley and McNeil 1982, below) is about 0.01: an AUC of 0.52 is two standard errors from guessing, and a
difference of 0.01 between two models is within the noise, unless the pairing of images says otherwise:
`paired_auc_test` compares two models scored on the same images (DeLong's test), whose AUCs share much of
their noise. A leak is a claim that needs its interval.

Example:
    >>> losses_in, losses_out = per_image_loss(model, x_train, y_train), per_image_loss(model, x_test, y_test)
    >>> membership_auc(losses_in, losses_out)
"""

from __future__ import annotations

import math
import statistics

import torch
from torch import nn

from tutorial_utils import evaluation, validate


def per_image_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each image, (n,), in eval mode."""
    logits = evaluation.labelled_logits(model, x, y)    # on the CPU, wherever the model is
    return nn.functional.cross_entropy(logits, y.cpu(), reduction="none")


def _check(members: torch.Tensor, nonmembers: torch.Tensor, *, at_least: int = 1, suffix: str = "") -> None:
    """Both are 1-d tensors of at least `at_least` finite losses (their names in errors end with `suffix`)."""
    for name, values in ((f"members{suffix}", members), (f"nonmembers{suffix}", nonmembers)):
        if not isinstance(values, torch.Tensor) or values.ndim != 1 or len(values) < at_least:
            size = "a non-empty 1-d tensor" if at_least == 1 else f"a 1-d tensor of at least {at_least}"
            raise ValueError(f"{name} must be {size} of per-image losses")
        validate.finite(name, values)   # a NaN loss would sort anywhere and move the AUC silently


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of values, ties given their average rank."""
    order = values.argsort()
    _, counts = torch.unique_consecutive(values[order], return_counts=True)
    last = counts.cumsum(0)                                    # the rank of each run of equal values' last member
    average = (last - counts + 1 + last).double() / 2          # (first + last) / 2
    ranks = torch.empty(len(values), dtype=torch.float64)
    ranks[order] = average.repeat_interleave(counts)
    return ranks


def membership_auc(members: torch.Tensor, nonmembers: torch.Tensor) -> float:
    """ROC AUC of the loss-threshold attack: P(a non-member's loss > a member's loss), ties 1/2, computed from
    ranks (module docstring). 0.5 = no information, 1 = every member found."""
    _check(members, nonmembers)
    k, m = len(members), len(nonmembers)
    ranks = _ranks(torch.cat([members, nonmembers]).double())
    return ((ranks[k:].sum().item() - m * (m + 1) / 2) / (m * k))


def auc_standard_error(value: float, members: int, nonmembers: int) -> float:
    """Hanley and McNeil's (1982) standard error of an AUC A from m = `members` positives, n = `nonmembers` negatives:

    SE^2 = (A(1 - A) + (m - 1)(Q1 - A^2) + (n - 1)(Q2 - A^2)) / (m n), Q1 = A / (2 - A), Q2 = 2 A^2 / (1 + A).

    It assumes exponential score distributions; at A = 0 or 1 it is 0, which is no certainty (a few
    images can separate perfectly by chance).
    """
    validate.probability("value", value)
    validate.positive_int("members", members)
    validate.positive_int("nonmembers", nonmembers)
    q1, q2 = value / (2 - value), 2 * value ** 2 / (1 + value)
    variance = (value * (1 - value) + (members - 1) * (q1 - value ** 2) + (nonmembers - 1) * (q2 - value ** 2)) \
        / (members * nonmembers)
    return math.sqrt(max(variance, 0.0))   # rounding can leave -1e-17 at A = 0 or 1, where SE is 0


def _placements(members: torch.Tensor, nonmembers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DeLong's structural components of the AUC, from ranks: each member's share of non-members with a higher
    loss (ties 1/2), (k,), and each non-member's share of members with a lower loss, (m,); both average to the AUC."""
    k, m = len(members), len(nonmembers)
    pooled = _ranks(torch.cat([members, nonmembers]).double())
    below_member = pooled[:k] - _ranks(members.double())          # non-members below each member (ties 1/2)
    below_nonmember = pooled[k:] - _ranks(nonmembers.double())    # members below each non-member (ties 1/2)
    return 1 - below_member / m, below_nonmember / k


def paired_auc_test(members_a: torch.Tensor, nonmembers_a: torch.Tensor, members_b: torch.Tensor,
                    nonmembers_b: torch.Tensor, *, confidence: float = 0.95) -> dict[str, float]:
    """Two models' attack AUCs on the same images, compared: AUC_a - AUC_b, its interval and p (DeLong et al. 1988).

    members_a[i] and members_b[i] are the two models' losses on the same training image (non-members alike), so
    the two AUCs are correlated and must be compared as a pair. With V10_r(i) each member's placement among
    model r's non-members and V01_r(j) each non-member's (_placements; their means are AUC_r), S10 and S01
    their 2 x 2 covariance matrices over the k members and the m non-members:

        Var(AUC_a - AUC_b) = (S10_aa + S10_bb - 2 S10_ab) / k + (S01_aa + S01_bb - 2 S01_ab) / m

    and z = (AUC_a - AUC_b) / sqrt(Var), two-sided p from the normal distribution (exact when the difference
    and its variance are both 0: p = 1). When the variance is 0 but the difference is not (placements that do
    not vary, as with a handful of perfectly separated images), the normal approximation says nothing: p, low
    and high are NaN; use a permutation test. Returns {"auc_a", "auc_b", "diff", "low", "high", "p_value"}.

    Example:
        >>> paired_auc_test(final_in, final_out, distilled_in, distilled_out)["p_value"]
    """
    _check(members_a, nonmembers_a, at_least=2, suffix="_a")   # a variance needs two placements
    _check(members_b, nonmembers_b, at_least=2, suffix="_b")
    if len(members_a) != len(members_b) or len(nonmembers_a) != len(nonmembers_b):
        raise ValueError(f"the two models must be scored on the same images: members {len(members_a)} and "
                         f"{len(members_b)}, non-members {len(nonmembers_a)} and {len(nonmembers_b)}")
    validate.confidence("confidence", confidence)
    v10_a, v01_a = _placements(members_a, nonmembers_a)
    v10_b, v01_b = _placements(members_b, nonmembers_b)
    auc_a, auc_b = v01_a.mean().item(), v01_b.mean().item()
    # the variance of a difference of placements is S_aa + S_bb - 2 S_ab of the pair
    variance = (v10_a - v10_b).var().item() / len(members_a) + (v01_a - v01_b).var().item() / len(nonmembers_a)
    diff, spread = auc_a - auc_b, math.sqrt(max(variance, 0.0))
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    if spread == 0:   # no variance: a zero-width interval and p = 0 would be certainty from nothing
        if diff != 0:
            return {"auc_a": auc_a, "auc_b": auc_b, "diff": diff, "low": math.nan, "high": math.nan, "p_value": math.nan}
        p_value = 1.0
    else:
        p_value = math.erfc(abs(diff) / spread / math.sqrt(2))   # 2 (1 - Phi(|z|)), without cancellation
    return {"auc_a": auc_a, "auc_b": auc_b, "diff": diff, "low": diff - z * spread, "high": diff + z * spread,
            "p_value": p_value}


def _best_gaps(pooled: torch.Tensor, is_member: torch.Tensor, k: int, m: int) -> torch.Tensor:
    """max over thresholds of m * (members <= t) - k * (non-members <= t), per labelling: TPR - FPR times k m,
    in exact integers (float TPR - FPR tells equal gaps apart by rounding). pooled: (k + m,) losses;
    is_member: (labellings, k + m) of 0/1 in pooled's order. A threshold sits at each distinct loss."""
    order = pooled.argsort()
    sorted_losses = pooled[order]
    last = torch.cat([(sorted_losses[1:] != sorted_losses[:-1]).nonzero().flatten(), torch.tensor([k + m - 1])])
    members_at_or_below = is_member[:, order].long().cumsum(dim=1)[:, last]              # (labellings, thresholds)
    others_at_or_below = (last + 1).unsqueeze(0) - members_at_or_below
    return (m * members_at_or_below - k * others_at_or_below).max(dim=1).values.clamp_min(0)


def advantage(members: torch.Tensor, nonmembers: torch.Tensor) -> float:
    """max over thresholds t of TPR - FPR, guessing "member" when loss <= t (Yeom et al.'s advantage), exact:
    the counts are compared as integers, then divided once."""
    _check(members, nonmembers)
    k, m = len(members), len(nonmembers)
    is_member = torch.cat([torch.ones(k, dtype=torch.int32), torch.zeros(m, dtype=torch.int32)]).unsqueeze(0)
    return _best_gaps(torch.cat([members, nonmembers]).double(), is_member, k, m).item() / (k * m)


def permutation_test(members: torch.Tensor, nonmembers: torch.Tensor, *, draws: int = 1000,
                     seed: int = 0) -> dict[str, dict[str, float]]:
    """Is the attack's edge more than chance? The same pooled losses, members drawn at random `draws` times.

    Draw d takes order_d = torch.randperm(k + m) from a private generator (`seed`): the first k of the pooled
    losses (members first, then non-members) are its members. A model that leaks nothing gives statistics
    like these; p = (1 + #{d: statistic_d >= observed}) / (1 + draws) (one-sided; it counts the observed
    labelling as one of the draws, so p is never 0), compared exactly (rank sums, integer counts). The null
    is that members' and non-members' losses come from one distribution: a small p says they differ, which
    is what the attack needs, not that the AUC exceeds 0.5 by a given amount. With 1,000 draws a p near 0.05
    is itself uncertain by about 0.007. Vectorised: ranks are computed once (the AUC of a draw is a sum of
    the chosen ranks) and the advantage of every draw is read from cumulative counts in the sorted losses.
    Returns, for "auc" and "advantage": observed, p_value, chance_mean, chance_95 (the 95th
    percentile of the draws). Side effects: none (the global random stream is untouched).

    Example:
        >>> permutation_test(losses_in, losses_out)["advantage"]["p_value"]   # 0.04: beyond chance at 5%
    """
    _check(members, nonmembers)
    validate.positive_int("draws", draws)
    validate.integer("seed", seed, low=0, high=2**64 - 1)   # torch.Generator's range
    k, m = len(members), len(nonmembers)
    pooled = torch.cat([members, nonmembers]).double()                                  # (k + m,)
    generator = torch.Generator().manual_seed(seed)
    orders = torch.stack([torch.randperm(k + m, generator=generator) for _ in range(draws)])   # (draws, k + m)
    ranks = _ranks(pooled)
    # Rank sums of up to 2^24 losses are multiples of 1/2 below 2^53: exact in float64, as the integer gaps.
    rank_sums = ranks[orders[:, k:]].sum(dim=1)                                          # (draws,)
    chance_auc = (rank_sums - m * (m + 1) / 2) / (m * k)
    is_member = torch.zeros(draws + 1, k + m, dtype=torch.int32)
    is_member[0, :k] = 1                                                                 # the real split
    is_member[1:].scatter_(1, orders[:, :k], 1)                                          # (draws, k + m), pooled order
    gaps = _best_gaps(pooled, is_member, k, m)                                           # exact integers
    chance_advantage = gaps[1:].double() / (k * m)
    as_large = {"auc": (rank_sums >= ranks[k:].sum()).sum().item(), "advantage": (gaps[1:] >= gaps[0]).sum().item()}
    observed_auc = (ranks[k:].sum().item() - m * (m + 1) / 2) / (m * k)                # membership_auc, from these ranks
    result = {}
    for name, observed, chance in (("auc", observed_auc, chance_auc),
                                   ("advantage", gaps[0].item() / (k * m), chance_advantage)):
        result[name] = {"observed": observed, "p_value": (1 + as_large[name]) / (1 + draws),
                        "chance_mean": chance.mean().item(), "chance_95": chance.quantile(0.95).item()}
    return result
