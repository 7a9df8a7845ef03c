import pytest
import torch
import torch.nn.functional as F

from tutorial_utils import data, distillation, hints, models, training


@pytest.fixture
def tiny_splits(splits: data.Splits) -> data.Splits:
    return data.Splits(splits.x_train[:256], splits.y_train[:256], splits.x_test[:64], splits.y_test[:64], name="tiny")


def test_hidden_is_the_sequential_slice_up_to_that_relu():
    model = models.mlp([784, 20, 12, 10], dropout=0.3).eval()
    x = torch.randn(5, 784)
    torch.testing.assert_close(hints.hidden(model, x, layer=0), torch.relu(model[0](x)))
    torch.testing.assert_close(hints.hidden(model, x, layer=-1), torch.relu(model[3](torch.relu(model[0](x)))))
    assert hints.hidden(model, x, layer=1).shape == (5, 12)


def test_hint_loss_is_torch_mse_and_sends_no_gradient_to_the_teacher():
    g = torch.Generator().manual_seed(0)
    regressed = torch.randn(4, 7, generator=g, requires_grad=True)
    teacher_hidden = torch.randn(4, 7, generator=g, requires_grad=True)
    loss = hints.hint_loss(regressed, teacher_hidden)
    torch.testing.assert_close(loss, F.mse_loss(regressed, teacher_hidden))
    loss.backward()
    assert regressed.grad is not None and teacher_hidden.grad is None


def test_the_wrapper_returns_the_students_logits_and_shares_its_weights():
    student = models.mlp([784, 16, 10])
    wrapper = hints.HintStudent(student, 30)
    x = torch.randn(3, 784)
    torch.testing.assert_close(wrapper(x), student(x))
    assert wrapper.regressed.shape == (3, 30)
    assert wrapper.head[0] is student[0]
    torch.testing.assert_close(wrapper.regressed, wrapper.regressor(torch.relu(student[0](x))))


def test_wrapping_does_not_move_the_global_random_stream():
    student = models.mlp([784, 16, 10])
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    hints.HintStudent(student, 30)
    torch.testing.assert_close(torch.rand(3), expected)


def test_beta_zero_is_exactly_logit_distillation(tiny_splits):
    teacher = models.mlp([784, 40, 10])
    training.fit(teacher, tiny_splits, epochs=1, progress=False)
    plain = distillation.train_student(tiny_splits, teacher=teacher, seed=5, sizes=(784, 16, 10), epochs=2)
    hinted = hints.train_student(tiny_splits, teacher=teacher, seed=5, sizes=(784, 16, 10), beta=0.0, epochs=2)
    for a, b in zip(plain.state_dict().values(), hinted.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_hints_train_the_hidden_layer_toward_the_teachers_features(tiny_splits):
    teacher = models.mlp([784, 40, 10])
    training.fit(teacher, tiny_splits, epochs=2, progress=False)
    target = hints.hidden(teacher, tiny_splits.x_train)
    errors = {}
    for beta in (0.0, 10.0):
        training.setup(1)
        student = models.mlp([784, 16, 10])
        before = [p.detach().clone() for p in teacher.parameters()]
        wrapper = hints.HintStudent(student, 40)
        loss_fn = hints.hint_distillation_loss(wrapper, teacher, tiny_splits, beta=beta)
        training.fit(wrapper, tiny_splits, epochs=4, loss_fn=loss_fn, progress=False)
        with torch.no_grad():
            wrapper(tiny_splits.x_train)
            errors[beta] = F.mse_loss(wrapper.regressed, target).item()
        assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))   # the teacher is untouched
    assert errors[10.0] < 0.5 * errors[0.0]   # without hints the regressor is never trained


def test_distill_with_hints_trains_the_student_in_place(tiny_splits):
    teacher = models.mlp([784, 40, 10])
    student = models.mlp([784, 16, 10])
    before = student[0].weight.detach().clone()
    history = hints.distill_with_hints(student, teacher, tiny_splits, beta=1.0, epochs=1, progress=False)
    assert len(history) == 1 and not torch.equal(before, student[0].weight)
    assert not student.training


@pytest.mark.parametrize("call, error, message", [
    (lambda: hints.hidden(torch.nn.Linear(784, 10), torch.zeros(1, 784)), TypeError, "nn.Sequential"),
    (lambda: hints.hidden(models.mlp([784, 10]), torch.zeros(1, 784)), ValueError, "no hidden layer"),
    (lambda: hints.hidden(models.mlp([784, 8, 10]), torch.zeros(1, 784), layer=1), ValueError, "layer=1"),
    (lambda: hints.HintStudent(models.mlp([784, 8, 10]), 0), ValueError, "teacher_width=0"),
    (lambda: hints.hint_loss(torch.zeros(2, 3), torch.zeros(2, 4)), ValueError, "regressed"),
])
def test_bad_arguments_are_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_negative_beta_and_a_mismatched_teacher_layer_are_refused(tiny_splits):
    teacher = models.mlp([784, 40, 30, 10])
    wrapper = hints.HintStudent(models.mlp([784, 16, 10]), 40)
    with pytest.raises(ValueError, match="beta=-1.0"):
        hints.hint_distillation_loss(wrapper, teacher, tiny_splits, beta=-1.0)
    with pytest.raises(ValueError, match="30 units"):
        hints.hint_distillation_loss(wrapper, teacher, tiny_splits, teacher_layer=-1)
    hints.hint_distillation_loss(wrapper, teacher, tiny_splits, teacher_layer=0)   # 40 units: fine
    with pytest.raises(ValueError, match=r"teacher_layer=2 must be an integer in -2..1"):   # its own name, not 'layer'
        hints.hint_distillation_loss(wrapper, teacher, tiny_splits, teacher_layer=2)
    student = models.mlp([784, 16, 10])
    for refused, value in (("augment", lambda x, g: -x), ("masks", {})):
        # the teacher's targets are looked up by row: an augmented batch would meet another image's targets
        with pytest.raises(ValueError, match=f"{refused} is not supported by distill_with_hints"):
            hints.distill_with_hints(student, teacher, tiny_splits, teacher_layer=0, epochs=1, progress=False,
                                     **{refused: value})


def test_the_combined_loss_is_kd_plus_beta_times_the_hint_of_the_batch_rows(tiny_splits):
    """Guards: on a batch of training rows (batch.index), the loss is kd_loss against the teacher's logits of
    those rows plus beta times the MSE between r(h_s) and the teacher's features of those rows, computed
    here from scratch; features of other rows (a lookup ignoring batch.index) give another value."""
    torch.manual_seed(0)
    teacher, student = models.mlp([784, 24, 10]).eval(), models.mlp([784, 8, 10])
    wrapper = hints.HintStudent(student, 24)
    kd = distillation.KDConfig(temperature=4.0, alpha=0.9)
    loss_fn = hints.hint_distillation_loss(wrapper, teacher, tiny_splits, kd=kd, beta=0.5)
    index = torch.tensor([5, 17, 200, 3])
    x, y = tiny_splits.x_train[index], tiny_splits.y_train[index]
    logits = wrapper(x)
    with torch.no_grad():
        teacher_logits, teacher_features = teacher(x), torch.relu(teacher[0](x))
    expected = distillation.kd_loss(logits, teacher_logits, y, temperature=4.0, alpha=0.9) \
        + 0.5 * F.mse_loss(wrapper.regressed, teacher_features)
    torch.testing.assert_close(loss_fn(logits, training.Batch(x, y, index)), expected)
    shifted = training.Batch(x, y, index + 1)      # the same images, looked up at the wrong rows
    assert not torch.allclose(loss_fn(logits, shifted), expected)
