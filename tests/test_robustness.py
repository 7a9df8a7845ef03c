"""robustness: FGSM against a hand-computed gradient, PGD inside the ball and the pixel range, masking, errors."""

import pytest
import torch
from torch import nn

from tutorial_utils import data, models, quantization, robustness, training


def _linear() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 3))


def _images(n: int = 8, features: int = 6) -> torch.Tensor:
    pixels = torch.rand(n, features, generator=torch.Generator().manual_seed(1))
    return (pixels - data.MEAN) / data.STD


def test_fgsm_follows_the_sign_of_the_hand_computed_gradient():
    model, x = _linear(), _images()
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    weight = model[0].weight.detach()
    # d CE / dx for logits = W x + b: W^T (softmax - onehot); the mean over the batch only scales it.
    gradient = (torch.softmax(model(x), dim=1) - nn.functional.one_hot(y, 3).float()).detach() @ weight
    expected = torch.clamp(x + 0.05 / data.STD * gradient.sign(), robustness.LOW, robustness.HIGH)
    torch.testing.assert_close(robustness.fgsm(model, x, y, epsilon=0.05), expected)


def test_pgd_with_one_full_step_and_no_random_start_is_fgsm():
    model, x, y = _linear(), _images(), torch.zeros(8, dtype=torch.long)
    one_step = robustness.pgd(model, x, y, epsilon=0.1, steps=1, step_size=0.1, random_start=False,
                              stop_when_fooled=False)
    torch.testing.assert_close(one_step, robustness.fgsm(model, x, y, epsilon=0.1))


@pytest.mark.parametrize("epsilon", [0.0, 0.03, 0.3])
def test_attacks_stay_in_the_epsilon_ball_and_the_pixel_range(epsilon):
    model = models.mlp([6, 16, 3])
    x, y = _images(32), torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(2))
    for adversarial in (robustness.fgsm(model, x, y, epsilon=epsilon), robustness.pgd(model, x, y, epsilon=epsilon)):
        assert (adversarial - x).abs().max() <= epsilon / data.STD + 1e-6
        assert adversarial.min() >= robustness.LOW - 1e-6 and adversarial.max() <= robustness.HIGH + 1e-6
    assert torch.equal(robustness.fgsm(model, x, y, epsilon=0.0), x)


def test_pgd_is_at_least_as_strong_as_fgsm_and_leaves_the_global_stream_alone(small_splits):
    training.setup(0)
    model = models.mlp([784, 32, 10])
    training.fit(model, small_splits, epochs=2, progress=False)
    x, y = small_splits.x_test, small_splits.y_test
    state = torch.get_rng_state()
    strong = robustness.robust_accuracy(model, x, y, epsilon=0.1, attack="pgd")
    assert torch.equal(torch.get_rng_state(), state)
    weak = robustness.robust_accuracy(model, x, y, epsilon=0.1, attack="fgsm")
    clean = training.evaluate(model, x, y)
    assert strong <= weak + 0.01 and weak < clean


def test_rounding_the_input_masks_the_gradient_and_a_surrogate_unmasks_it(small_splits):
    training.setup(0)
    model = models.mlp([784, 32, 10])
    training.fit(model, small_splits, epochs=2, progress=False)
    rounded = quantization.quantize_model(model, 8, act_bits=4, calibration=small_splits.x_train[:256])
    x, y = small_splits.x_test, small_splits.y_test
    assert torch.equal(robustness.fgsm(rounded, x, y, epsilon=0.1), torch.clamp(x, robustness.LOW, robustness.HIGH))
    masked = robustness.robust_accuracy(rounded, x, y, epsilon=0.1, attack="fgsm")
    unmasked = robustness.robust_accuracy(rounded, x, y, epsilon=0.1, attack="fgsm", surrogate=model)
    assert unmasked < masked - 0.1


def test_disagreement_counts_match_a_paired_test():
    a, b = models.mlp([6, 3]), models.mlp([6, 3])
    x, y = _images(40), torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(3))
    report = robustness.disagreement(a, b, x, y, classes=3)
    pa, pb = a(x).argmax(1), b(x).argmax(1)
    assert report["differ"].tolist() == (pa != pb).nonzero().flatten().tolist()
    assert report["paired"].only_a == int(((pa == y) & (pb != y)).sum())
    assert sum(row["n"] for row in report["per_class"]) == 40
    row = report["per_class"][1]
    assert row["accuracy_a"] == pytest.approx(((pa == y) & (y == 1)).sum().item() / (y == 1).sum().item())


def test_bad_inputs_name_the_argument():
    model, x, y = _linear(), _images(), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="epsilon"):
        robustness.fgsm(model, x, y, epsilon=-0.1)
    with pytest.raises(ValueError, match="steps"):
        robustness.pgd(model, x, y, epsilon=0.1, steps=0)
    with pytest.raises(ValueError, match=r"y holds 7 labels for 8 images"):
        robustness.pgd(model, x, torch.zeros(7, dtype=torch.long), epsilon=0.1)
    with pytest.raises(ValueError, match=r"epsilon=8 must be a number in \[0, 1\]"):   # 8 meant as 8/255
        robustness.fgsm(model, x, y, epsilon=8)
    assert robustness.robust_accuracy(model, x, y, epsilon=1.0) >= 0     # the largest budget there is
    with pytest.raises(ValueError, match="x is on meta but the model on cpu"):
        robustness.fgsm(model, x.to("meta"), y.to("meta"), epsilon=0.1)
    with pytest.raises(ValueError, match="attack"):
        robustness.robust_accuracy(model, x, y, epsilon=0.1, attack="cw")
    with pytest.raises(ValueError, match="restarts"):
        robustness.robust_accuracy(model, x, y, epsilon=0.1, restarts=0)
    with pytest.raises(ValueError, match="restarts must be 1 for attack 'fgsm'"):
        robustness.robust_accuracy(model, x, y, epsilon=0.1, attack="fgsm", restarts=3)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_is_the_textbook_loop(random_start):
    """Guards: PGD is `steps` signed-gradient steps of 2.5 * epsilon / steps (Madry et al.), each projected onto
    the ball and the pixel range, from x or from a uniform start drawn by a private generator of `seed`.
    Written here with torch.autograd directly; one FGSM step, a wrong default step or a missing projection
    all differ from it."""
    torch.manual_seed(0)
    model = models.mlp([6, 16, 3])
    x, y = _images(16), torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(2))
    epsilon, steps = 0.2, 5
    radius = epsilon / data.STD
    adversarial = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(7)) * 2 - 1
        adversarial = torch.clamp(x + radius * noise, robustness.LOW, robustness.HIGH)
    for _ in range(steps):
        adversarial.requires_grad_(True)
        (gradient,) = torch.autograd.grad(nn.functional.cross_entropy(model(adversarial), y), adversarial)
        adversarial = adversarial.detach() + 2.5 * radius / steps * gradient.sign()
        adversarial = torch.clamp(torch.min(torch.max(adversarial, x - radius), x + radius),
                                  robustness.LOW, robustness.HIGH)
    got = robustness.pgd(model, x, y, epsilon=epsilon, steps=steps, random_start=random_start, seed=7,
                         stop_when_fooled=False)
    torch.testing.assert_close(got, adversarial)
    assert not torch.allclose(got, robustness.fgsm(model, x, y, epsilon=epsilon))


def test_pgd_keeps_each_image_at_the_first_iterate_that_fools_the_model():
    """Guards: the textbook loop's iterates, written out; an image misclassified at iterate t (the start
    counts) is returned as iterate t, one never misclassified as the last. A large step makes images flip
    back and forth, so the last iterate alone would count some fooled images as right."""
    torch.manual_seed(1)
    model = models.mlp([6, 16, 3])
    x = _images(64)
    y = model(x).argmax(1)                                      # every image starts right
    epsilon, steps, step_size = 0.3, 6, 0.25
    radius, iterates = epsilon / data.STD, []
    adversarial = torch.clamp(x + radius * (torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) * 2 - 1),
                              robustness.LOW, robustness.HIGH)
    for _ in range(steps):
        iterates.append(adversarial)
        adversarial = robustness.pgd(model, adversarial, y, epsilon=step_size, steps=1, step_size=step_size,
                                     random_start=False, stop_when_fooled=False)
        adversarial = torch.clamp(torch.min(torch.max(adversarial, x - radius), x + radius), robustness.LOW, robustness.HIGH)
    iterates.append(adversarial)
    wrong = torch.stack([model(i).argmax(1) != y for i in iterates])                   # (steps + 1, n)
    first = torch.where(wrong.any(0), wrong.float().argmax(0), torch.full((64,), steps))
    expected = torch.stack(iterates)[first, torch.arange(64)]
    got = robustness.pgd(model, x, y, epsilon=epsilon, steps=steps, step_size=step_size, seed=3)
    torch.testing.assert_close(got, expected)
    last = iterates[-1]
    assert (model(got).argmax(1) != y).sum() > (model(last).argmax(1) != y).sum()       # the last iterate forgets some


def test_restarts_count_an_image_right_only_if_it_survives_every_start(small_splits):
    training.setup(0)
    model = models.mlp([784, 32, 10])
    training.fit(model, small_splits, epochs=2, progress=False)
    x, y = small_splits.x_test, small_splits.y_test
    survived = training.correct(model, x, y)                    # an image wrong when clean is not robust
    for seed in range(3):
        survived &= training.correct(model, robustness.pgd(model, x, y, epsilon=0.05, steps=5, seed=seed), y)
    three = robustness.robust_accuracy(model, x, y, epsilon=0.05, steps=5, restarts=3)
    assert three == pytest.approx(survived.float().mean().item())
    assert three <= robustness.robust_accuracy(model, x, y, epsilon=0.05, steps=5)


class _Opposite(nn.Module):
    """The model's negated logits: its loss rises where the model's falls."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.model(x)


def test_an_image_wrong_when_clean_never_counts_as_robust(small_splits):
    """Guards: a surrogate whose loss rises where the model's falls (negated logits) 'attacks' towards the
    right class and fixes some wrong images; they must still count as wrong (x is in its own ball)."""
    training.setup(0)
    model = models.mlp([784, 16, 10])
    training.fit(model, small_splits, epochs=1, progress=False)
    helper = _Opposite(model)
    x, y = small_splits.x_test, small_splits.y_test
    clean = training.correct(model, x, y)
    for attack in ("fgsm", "pgd"):
        fixed = robustness.fgsm(helper, x, y, epsilon=0.1) if attack == "fgsm" else \
            robustness.pgd(helper, x, y, epsilon=0.1, stop_when_fooled=False)
        assert (training.correct(model, fixed, y) & ~clean).any(), attack               # the 'attack' fixed some
        robust = robustness.robust_accuracy(model, x, y, epsilon=0.1, attack=attack, surrogate=helper)
        assert robust <= clean.float().mean().item(), attack


@torch.no_grad()
def test_through_a_surrogate_an_image_stops_when_the_target_is_fooled_not_the_surrogate():
    """Guards: robust_accuracy attacks a model through a surrogate's gradients; had PGD frozen every image the
    surrogate already got wrong, those images would never be attacked and the model would look robust."""
    torch.manual_seed(0)
    target = models.mlp([20, 32, 3])
    x = _images(400, 20)
    y = target(x).argmax(1)                                      # the target is right on every image
    surrogate = models.mlp([20, 32, 3])
    surrogate.load_state_dict(target.state_dict())
    surrogate[-1].bias[0] += 0.3                                 # wrong on some images the target gets right
    wrong_for_surrogate = surrogate(x).argmax(1) != y
    assert wrong_for_surrogate.sum() > 20
    frozen = robustness.pgd(surrogate, x, y, epsilon=0.3, random_start=False)
    judged = robustness.pgd(surrogate, x, y, epsilon=0.3, random_start=False, judge=target)
    assert torch.equal(frozen[wrong_for_surrogate], x[wrong_for_surrogate])          # judged by the surrogate
    moved = (judged[wrong_for_surrogate] != x[wrong_for_surrogate]).any(dim=1)
    assert moved.all()                                                               # judged by the target
    attacked = robustness.pgd(surrogate, x, y, epsilon=0.3, seed=0, judge=target)
    assert robustness.robust_accuracy(target, x, y, epsilon=0.3, surrogate=surrogate) == (
        (target(attacked).argmax(1) == y).float().mean().item())
    assert (target(judged).argmax(1) == y).float().mean() < (target(frozen).argmax(1) == y).float().mean()
