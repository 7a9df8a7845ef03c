import copy

import pytest
import torch
import torch.nn.functional as F

from tutorial_utils import distillation, models, training


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g) * 3, torch.randint(0, 10, (6,), generator=g)


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (20.0, 1.0), (2.5, 0.0)])
def test_kd_loss_matches_the_formula_from_torch_functions(logits, temperature, alpha):
    s, t, y = logits
    soft = F.kl_div(F.log_softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1), reduction="batchmean")
    expected = alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(s, y)
    actual = distillation.kd_loss(s, t, y, temperature=temperature, alpha=alpha)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)  # T^2 = 400 magnifies float32 rounding


def test_kd_loss_by_hand_is_a_per_sample_kl_mean(logits):
    s, t, y = logits
    p, q = F.softmax(t / 2, dim=1), F.softmax(s / 2, dim=1)
    kl = (p * (p.log() - q.log())).sum(dim=1).mean()
    torch.testing.assert_close(distillation.kd_loss(s, t, y, temperature=2.0, alpha=1.0), 4 * kl)


def test_kd_loss_is_zero_when_the_student_copies_the_teacher(logits):
    _, t, y = logits
    assert distillation.kd_loss(t.clone(), t, y, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_no_gradient_reaches_the_teacher(logits):
    s, t, y = logits
    s, t = s.clone().requires_grad_(True), t.clone().requires_grad_(True)
    distillation.kd_loss(s, t, y, temperature=3.0, alpha=0.7).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_t_squared_keeps_the_soft_gradient_scale(logits):
    # without T^2 the soft term's gradient shrinks roughly as 1/T^2 for large T; with it, it stays put
    s, t, y = logits
    norms = []
    for temperature in (5.0, 20.0):
        student = s.clone().requires_grad_(True)
        distillation.kd_loss(student, t, y, temperature=temperature, alpha=1.0).backward()
        norms.append(student.grad.norm().item())
    assert 0.5 < norms[1] / norms[0] < 2.0


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0}, "temperature=0"), ({"temperature": -1.0}, "temperature=-1.0"),
    ({"temperature": float("inf")}, "temperature=inf"), ({"alpha": 1.5}, "alpha=1.5"), ({"alpha": -0.1}, "alpha=-0.1"),
])
def test_bad_arguments(logits, kwargs, message):
    s, t, y = logits
    with pytest.raises(ValueError, match=message):
        distillation.kd_loss(s, t, y, **kwargs)


def test_shape_mismatches(logits):
    s, t, y = logits
    with pytest.raises(ValueError, match=r"student_logits \(6, 10\) and teacher_logits \(6, 9\)"):
        distillation.kd_loss(s, t[:, :9], y)
    with pytest.raises(ValueError, match="targets must be"):
        distillation.kd_loss(s, t, y[:3])


def test_distill_trains_the_student_and_leaves_the_teacher_alone(small_splits):
    teacher = models.teacher()
    training.fit(teacher, small_splits, epochs=2, progress=False)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = models.student()
    history = distillation.distill(student, teacher, small_splits, epochs=2, progress=False)
    assert history[-1]["test_accuracy"] > 0.7
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_distill_with_cached_logits_equals_computing_them_per_batch(small_splits):
    teacher = models.teacher()
    training.fit(teacher, small_splits, epochs=1, progress=False)
    students = []
    for augment in (None, lambda x, g: x):  # an identity augmentation forces per-batch teacher logits
        training.setup(1)
        student = models.student()
        distillation.distill(student, teacher, small_splits, epochs=1, augment=augment, progress=False)
        students.append(student)
    # Teacher logits computed in one large batch or per small batch can differ in the last bit (BLAS
    # blocking), so the two students agree closely rather than exactly.
    for a, b in zip(students[0].parameters(), students[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_distill_rejects_a_teacher_with_other_classes(small_splits):
    with pytest.raises(ValueError, match="teacher predicts 5 classes but the student 10"):
        distillation.distill(models.student(), models.mlp([784, 5]), small_splits, epochs=1)


def test_match_class_prior_reaches_the_prior_without_labels(small_splits):
    model = models.student()
    keep = small_splits.y_train != 3
    no_threes = type(small_splits)(small_splits.x_train[keep], small_splits.y_train[keep],
                                   small_splits.x_test, small_splits.y_test)
    training.fit(model, no_threes, epochs=2, progress=False)
    x = small_splits.x_test
    assert (training.predict(model, x).argmax(1) == 3).float().mean() < 0.02
    added = distillation.match_class_prior_(model, x, 3, prior=0.1)
    share = (training.predict(model, x).argmax(1) == 3).float().mean().item()
    assert added > 0 and 0.08 <= share <= 0.14
    with pytest.raises(ValueError, match="class_index=10"):
        distillation.match_class_prior_(model, x, 10)
    with pytest.raises(ValueError, match="prior=1.5"):
        distillation.match_class_prior_(model, x, 3, prior=1.5)


def test_big_teacher_recipe_names_a_preset():
    assert models.layer_sizes(models.preset(distillation.BIG_TEACHER_RECIPE["preset"])) == [784, 1200, 1200, 10]


def test_logit_matching_is_the_high_temperature_limit_of_the_soft_term():
    generator = torch.Generator().manual_seed(4)
    # float64: at T = 1000 the KL of two nearly equal distributions cancels away float32's digits
    s, t = torch.randn(16, 10, generator=generator).double(), torch.randn(16, 10, generator=generator).double() * 2
    y = torch.zeros(16, dtype=torch.long)
    limit = distillation.logit_matching_loss(s, t)
    gaps = [abs(distillation.kd_loss(s, t, y, temperature=T, alpha=1.0).item() - limit.item()) for T in (10, 100, 1000)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3 * limit.item()
    # softmax ignores a constant added to every logit, and so does the limit
    torch.testing.assert_close(distillation.logit_matching_loss(s + 5.0, t - 3.0), limit)
    with pytest.raises(ValueError, match="must both be"):
        distillation.logit_matching_loss(s, t[:, :9])


def test_match_class_prior_refuses_an_unreachable_prior_and_leaves_the_bias():
    """Guards: a prior that 50 added to the bias cannot reach was returned as 50 with the bias changed; it is
    now a ValueError and the model is as it was (no half-done change)."""
    torch.manual_seed(0)
    model = models.mlp([4, 3, 2])
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.copy_(torch.tensor([0.0, -100.0]))   # class 1 never wins, whatever its bias gets
    before = model[2].bias.clone()
    with pytest.raises(ValueError, match=r"prior=0.5 is out of reach"):
        distillation.match_class_prior_(model, torch.randn(20, 4), 1, prior=0.5)
    assert torch.equal(model[2].bias, before)


@pytest.mark.parametrize("cached", [True, False])
def test_the_teacher_runs_in_eval_mode_and_the_callers_teacher_keeps_its_own(small_splits, cached):
    """Guards: a teacher with dropout, handed over in train mode, must give its eval-mode logits (no dropout
    noise in the targets) on both paths, and the caller's teacher stays as it was (mode and object)."""
    torch.manual_seed(0)
    teacher = models.mlp([784, 32, 10], dropout=0.5).train()
    loss_fn = distillation.distillation_loss(teacher, small_splits if cached else None, kd=distillation.KDConfig())
    assert teacher.training and all(m.training for m in teacher.modules())
    index = torch.arange(16)
    batch = training.Batch(small_splits.x_train[index], small_splits.y_train[index], index)
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected_targets = copy.deepcopy(teacher).eval()(batch.x)                 # an eval-mode reference
    expected = distillation.kd_loss(logits, expected_targets, batch.y, temperature=distillation.KDConfig().temperature,
                                    alpha=distillation.KDConfig().alpha)
    for _ in range(2):                                                           # no dropout draw: the same twice
        torch.testing.assert_close(loss_fn(logits, batch), expected, rtol=1e-5, atol=1e-6)
    assert teacher.training
