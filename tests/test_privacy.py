"""privacy: the rank-formula AUC against a brute-force pair count (ties included), the advantage by brute force."""

import itertools
import math

import pytest
import torch

from tutorial_utils import models, privacy


def _pairs_auc(members, nonmembers) -> float:
    """P(nonmember loss > member loss) + P(equal) / 2, over every pair: the definition."""
    wins = sum(1.0 if o > i else 0.5 if o == i else 0.0 for i, o in itertools.product(members.tolist(), nonmembers.tolist()))
    return wins / (len(members) * len(nonmembers))


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_the_pair_count_with_ties(seed):
    generator = torch.Generator().manual_seed(seed)
    members = torch.randint(0, 6, (23,), generator=generator).float()       # many ties
    nonmembers = torch.randint(1, 8, (17,), generator=generator).float()
    assert privacy.membership_auc(members, nonmembers) == pytest.approx(_pairs_auc(members, nonmembers))


def test_auc_extremes_and_the_advantage_by_brute_force():
    low, high = torch.tensor([0.1, 0.2]), torch.tensor([0.5, 0.7, 0.9])
    assert privacy.membership_auc(low, high) == 1.0 and privacy.membership_auc(high, low) == 0.0
    assert privacy.membership_auc(low, low.clone()) == 0.5
    generator = torch.Generator().manual_seed(9)
    members, nonmembers = torch.rand(30, generator=generator), torch.rand(40, generator=generator) + 0.2
    best = max(((members <= t).float().mean() - (nonmembers <= t).float().mean()).item()
               for t in torch.cat([members, nonmembers]).tolist())
    assert privacy.advantage(members, nonmembers) == pytest.approx(best)
    assert privacy.advantage(low, high) == 1.0


def test_standard_error_shrinks_with_more_images():
    assert privacy.auc_standard_error(0.5, 4000, 1000) == pytest.approx(0.0102, abs=0.0005)
    assert privacy.auc_standard_error(0.5, 100, 100) > privacy.auc_standard_error(0.5, 1000, 1000)


def test_per_image_loss_is_cross_entropy_per_row():
    model = models.mlp([6, 3])
    x, y = torch.rand(5, 6), torch.tensor([0, 1, 2, 0, 1])
    expected = torch.nn.functional.cross_entropy(model(x), y, reduction="none").detach()
    torch.testing.assert_close(privacy.per_image_loss(model, x, y), expected)
    with pytest.raises(ValueError, match=r"y holds 4 labels for 5 images"):
        privacy.per_image_loss(model, x, y[:4])
    with pytest.raises(ValueError, match=r"y must hold labels in 0..2 \(3 classes\); got 0 to 5"):
        privacy.per_image_loss(model, x, torch.tensor([0, 1, 5, 0, 1]))
    with pytest.raises(ValueError, match="members holds 1 NaN or infinite values"):   # a NaN sorts anywhere
        privacy.membership_auc(torch.tensor([float("nan"), 0.1, 0.2]), torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="nonmembers holds 1 NaN"):
        privacy.advantage(torch.tensor([0.1]), torch.tensor([0.5, float("inf")]))
    with pytest.raises(ValueError, match="members must be a non-empty 1-d tensor"):
        privacy.membership_auc(torch.zeros(0), torch.ones(3))


@pytest.mark.parametrize("seed", range(5))
def test_the_advantage_counts_ties_at_the_threshold_as_members_guesses(seed):
    """Losses on a coarse grid (many ties, across both sets): the brute-force count of losses <= t."""
    generator = torch.Generator().manual_seed(seed)
    members = torch.randint(0, 12, (57,), generator=generator).float() / 4
    nonmembers = torch.randint(2, 14, (31,), generator=generator).float() / 4
    best = max(sum(v <= t for v in members.tolist()) / 57 - sum(v <= t for v in nonmembers.tolist()) / 31
               for t in torch.cat([members, nonmembers]).tolist())
    assert privacy.advantage(members, nonmembers) == pytest.approx(max(best, 0.0))


def test_standard_error_by_hand_where_the_two_counts_matter():
    """Guards: at AUC 0.5 the formula is symmetric in its counts; at 0.8 with 30 members (the positives: the
    attack calls a low loss a member) and 50 non-members, by hand: Q1 = 0.8 / 1.2, Q2 = 1.28 / 1.8,
    SE^2 = (0.16 + 29 (Q1 - 0.64) + 49 (Q2 - 0.64)) / 1500 = 0.0029452, SE = 0.05427 (swapped: 0.04850)."""
    assert privacy.auc_standard_error(0.8, 30, 50) == pytest.approx(0.05427, abs=5e-5)
    assert privacy.auc_standard_error(0.8, 50, 30) == pytest.approx(0.04850, abs=5e-5)


@pytest.mark.parametrize("seed", range(3))
def test_permutation_test_is_the_loop_over_shuffles_it_vectorises(seed):
    """The draws are exactly membership_auc and advantage of shuffled labellings (same generator), ties
    across both sets included; p counts the draws at least as large as the observed value, plus one."""
    generator = torch.Generator().manual_seed(seed)
    members = torch.randint(0, 10, (37,), generator=generator).float() / 3             # many ties
    nonmembers = torch.randint(1, 12, (21,), generator=generator).float() / 3
    result = privacy.permutation_test(members, nonmembers, draws=60, seed=seed)
    pooled, shuffles = torch.cat([members, nonmembers]), torch.Generator().manual_seed(seed)
    aucs, advantages = [], []
    for _ in range(60):
        order = torch.randperm(58, generator=shuffles)
        aucs.append(privacy.membership_auc(pooled[order[:37]], pooled[order[37:]]))
        advantages.append(privacy.advantage(pooled[order[:37]], pooled[order[37:]]))
    for name, chance, function in (("auc", aucs, privacy.membership_auc), ("advantage", advantages, privacy.advantage)):
        observed = function(members, nonmembers)
        chance = torch.tensor(chance, dtype=torch.float64)
        assert result[name]["observed"] == pytest.approx(observed)
        assert result[name]["p_value"] == pytest.approx((1 + sum(c >= observed - 1e-12 for c in chance.tolist())) / 61)
        assert result[name]["chance_mean"] == pytest.approx(chance.mean().item())
        assert result[name]["chance_95"] == pytest.approx(chance.quantile(0.95).item())


def test_permutation_test_tells_a_leak_from_none():
    generator = torch.Generator().manual_seed(4)
    same = privacy.permutation_test(torch.rand(400, generator=generator), torch.rand(100, generator=generator), draws=200)
    leak = privacy.permutation_test(torch.rand(400, generator=generator) * 0.7, torch.rand(100, generator=generator),
                                    draws=200)
    assert leak["auc"]["p_value"] == leak["advantage"]["p_value"] == 1 / 201      # beyond every shuffle
    assert same["auc"]["p_value"] > 0.05 and same["advantage"]["p_value"] > 0.05
    assert 0.45 < same["auc"]["chance_mean"] < 0.55 and 0 < same["advantage"]["chance_mean"] < same["advantage"]["chance_95"]
    with pytest.raises(ValueError, match="draws"):
        privacy.permutation_test(torch.rand(4), torch.rand(3), draws=0)


def test_the_advantage_and_its_p_value_are_exact_where_floats_would_tie_wrongly():
    """Guards: with 4,000 members and 1,000 non-members, TPR - FPR from counts (a + 4, b + 1) equals that from
    (a, b); in float32 the two differ by rounding, and a p-value that compares them miscounts. Here the
    gaps are counted in integers, m * a - k * b, independently of the package."""
    generator = torch.Generator().manual_seed(11)
    members = torch.randint(0, 300, (4000,), generator=generator).float() / 100           # a coarse grid: many ties
    nonmembers = torch.randint(5, 305, (1000,), generator=generator).float() / 100
    pooled = torch.cat([members, nonmembers])
    thresholds = pooled.unique()

    def best_gap(member_losses, nonmember_losses) -> int:
        a = (member_losses.unsqueeze(0) <= thresholds.unsqueeze(1)).sum(1)
        b = (nonmember_losses.unsqueeze(0) <= thresholds.unsqueeze(1)).sum(1)
        return max(int((1000 * a - 4000 * b).max()), 0)

    observed = best_gap(members, nonmembers)
    assert privacy.advantage(members, nonmembers) == observed / 4_000_000
    shuffles, as_large = torch.Generator().manual_seed(2), 0
    for _ in range(30):
        order = torch.randperm(5000, generator=shuffles)
        as_large += best_gap(pooled[order[:4000]], pooled[order[4000:]]) >= observed
    assert privacy.permutation_test(members, nonmembers, draws=30, seed=2)["advantage"]["p_value"] == (1 + as_large) / 31


def _delong_by_hand(a_in, a_out, b_in, b_out):
    """DeLong et al. (1988) from the definition: placements by pair counts, the 2 x 2 covariance matrices, the
    variance of the difference as the formula writes it."""
    def placements(members, nonmembers):
        psi = lambda o, i: 1.0 if o > i else 0.5 if o == i else 0.0
        v10 = [sum(psi(o, i) for o in nonmembers.tolist()) / len(nonmembers) for i in members.tolist()]
        v01 = [sum(psi(o, i) for i in members.tolist()) / len(members) for o in nonmembers.tolist()]
        return torch.tensor(v10, dtype=torch.float64), torch.tensor(v01, dtype=torch.float64)
    (v10_a, v01_a), (v10_b, v01_b) = placements(a_in, a_out), placements(b_in, b_out)
    s10, s01 = torch.cov(torch.stack([v10_a, v10_b])), torch.cov(torch.stack([v01_a, v01_b]))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(a_in) + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / len(a_out)
    return v10_a.mean().item(), v10_b.mean().item(), variance.item()


@pytest.mark.parametrize("seed", range(4))
def test_paired_auc_test_is_delongs_formula_by_pair_counts(seed):
    generator = torch.Generator().manual_seed(seed)
    a_in, a_out = torch.randint(0, 6, (19,), generator=generator).float(), torch.randint(1, 8, (13,), generator=generator).float()
    b_in = a_in + torch.randint(-2, 3, (19,), generator=generator).float()      # the same images, another model: ties too
    b_out = a_out + torch.randint(-2, 3, (13,), generator=generator).float()
    auc_a, auc_b, variance = _delong_by_hand(a_in, a_out, b_in, b_out)
    result = privacy.paired_auc_test(a_in, a_out, b_in, b_out)
    assert result["auc_a"] == pytest.approx(auc_a) == pytest.approx(privacy.membership_auc(a_in, a_out))
    assert result["auc_b"] == pytest.approx(auc_b) and result["diff"] == pytest.approx(auc_a - auc_b)
    half = 1.959964 * variance ** 0.5
    assert (result["low"], result["high"]) == pytest.approx((auc_a - auc_b - half, auc_a - auc_b + half))
    z = abs(auc_a - auc_b) / variance ** 0.5
    assert result["p_value"] == pytest.approx(math.erfc(z / math.sqrt(2)))     # two-sided normal tail


def test_paired_auc_test_agrees_with_a_paired_bootstrap_and_is_silent_on_one_model_twice():
    """The reference a statistician would reach for: resample members and non-members (the same images for both
    models), recompute both AUCs; the spread of the difference matches DeLong's standard error."""
    generator = torch.Generator().manual_seed(0)
    a_in, a_out = torch.randn(400, generator=generator), torch.randn(300, generator=generator) + 0.3
    b_in, b_out = a_in + 0.7 * torch.randn(400, generator=generator), a_out + 0.7 * torch.randn(300, generator=generator)
    result = privacy.paired_auc_test(a_in, a_out, b_in, b_out)
    draws = []
    for _ in range(400):
        i, o = torch.randint(0, 400, (400,), generator=generator), torch.randint(0, 300, (300,), generator=generator)
        draws.append(privacy.membership_auc(a_in[i], a_out[o]) - privacy.membership_auc(b_in[i], b_out[o]))
    delong_se = (result["high"] - result["low"]) / (2 * 1.959964)
    assert torch.tensor(draws).std().item() == pytest.approx(delong_se, rel=0.15)
    unpaired = (privacy.auc_standard_error(result["auc_a"], 400, 300) ** 2
                + privacy.auc_standard_error(result["auc_b"], 400, 300) ** 2) ** 0.5
    assert delong_se < unpaired                                   # pairing removes the noise the two share
    same = privacy.paired_auc_test(a_in, a_out, a_in.clone(), a_out.clone())
    assert same["diff"] == same["low"] == same["high"] == 0 and same["p_value"] == 1.0
    # placements that do not vary: A separates perfectly, B not at all; six images are no certainty
    degenerate = privacy.paired_auc_test(torch.tensor([.1, .2, .3]), torch.tensor([.5, .6, .7]),
                                         torch.full((3,), .4), torch.full((3,), .4))
    assert degenerate["diff"] == 0.5 and all(math.isnan(degenerate[k]) for k in ("low", "high", "p_value"))


def test_auc_standard_error_at_one_half_is_the_exact_null_variance():
    # at A = 1/2 (no information) Hanley and McNeil's SE^2 equals the Mann-Whitney statistic's exact variance
    # under the null, (m + n + 1) / (12 m n): an identity independent of the formula's Q1 and Q2
    for members, nonmembers in ((5, 7), (40, 25), (300, 300)):
        assert privacy.auc_standard_error(0.5, members, nonmembers) ** 2 == pytest.approx(
            (members + nonmembers + 1) / (12 * members * nonmembers), rel=1e-12)


@pytest.mark.parametrize("change, message", [
    (lambda t: {**t, "members_b": t["members_b"][:-1]}, r"same images: members 5 and 4, non-members 4 and 4"),
    (lambda t: {**t, "nonmembers_a": torch.tensor([0.1])}, r"nonmembers_a must be a 1-d tensor of at least 2"),
    (lambda t: {**t, "members_a": t["members_a"].reshape(5, 1)}, r"members_a must be a 1-d tensor"),
    (lambda t: {**t, "nonmembers_b": torch.tensor([0.1, float("nan"), 0.2, 0.3])}, r"nonmembers_b"),
    (lambda t: {**t, "confidence": 1.0}, r"confidence=1.0 .*\(0, 1\)"),
])
def test_paired_auc_test_refuses_what_it_cannot_pair(change, message):
    tensors = {"members_a": torch.rand(5), "nonmembers_a": torch.rand(4), "members_b": torch.rand(5),
               "nonmembers_b": torch.rand(4)}
    arguments = change(tensors)
    confidence = arguments.pop("confidence", 0.95)
    with pytest.raises(ValueError, match=message):
        privacy.paired_auc_test(**arguments, confidence=confidence)
