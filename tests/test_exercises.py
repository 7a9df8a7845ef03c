"""Notebooks 01-02's checks pass the notebook's solution and fail plausible wrong answers with a precise message."""

import math

import pytest
import torch


from tutorial_utils import exercises, measure, models, training


def macs_right(sizes):
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


def macs_wrong(sizes):
    return sum(a * b for a, b in zip(sizes, sizes[1:])) + sum(sizes[1:])  # counts biases as MACs


def count_right(sizes):
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def count_wrong(sizes):
    return sum(a * b for a, b in zip(sizes, sizes[1:]))  # forgets biases


def global_masks_right(model, sparsity):
    weights = {n: p.detach() for n, p in model.named_parameters() if n.endswith("weight")}
    everything = torch.cat([w.abs().flatten() for w in weights.values()])
    k = round(sparsity * everything.numel())
    if k == 0:
        return {n: torch.ones_like(w) for n, w in weights.items()}
    threshold = everything.kthvalue(k).values
    return {n: (w.abs() > threshold).float() for n, w in weights.items()}


def layer_masks_right(model, sparsity):
    masks = {}
    for n, p in model.named_parameters():
        if n.endswith("weight"):
            k = round(sparsity * p.numel())
            masks[n] = torch.ones_like(p) if k == 0 else (p.abs() > p.abs().flatten().kthvalue(k).values).float()
    return masks


def masks_wrong(model, sparsity):
    return {n: (torch.rand_like(p) > sparsity).float() for n, p in model.named_parameters() if n.endswith("weight")}


def layer_masks_off_by_one(model, sparsity):
    masks = {}
    for n, p in model.named_parameters():
        if n.endswith("weight"):
            k = int(sparsity * p.numel()) + 1  # one weight too many
            k = min(k, p.numel())
            masks[n] = (p.abs() > p.abs().flatten().kthvalue(k).values).float()
    return masks


@torch.no_grad()
def evaluate_right(model, x, y, batch_size):
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y: {len(x)} and {len(y)}")
    was_training = model.training
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum()) for i in range(0, len(x), batch_size))
    model.train(was_training)
    return correct / len(x)


@torch.no_grad()
def evaluate_train_mode(model, x, y, batch_size):
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("lengths")
    return sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum()) for i in range(0, len(x), batch_size)) / len(x)


@torch.no_grad()
def evaluate_mean_of_batches(model, x, y, batch_size):
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("lengths")
    was_training = model.training
    model.eval()
    means = [(model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).float().mean().item() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return sum(means) / len(means)  # weights a short last batch like a full one


@torch.no_grad()
def evaluate_drops_last_batch(model, x, y, batch_size):
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("lengths")
    was_training = model.training
    model.eval()
    full = max(len(x) // batch_size, 1) * batch_size
    correct = int((model(x[:full]).argmax(1) == y[:full]).sum())
    model.train(was_training)
    return correct / min(full, len(x))


def evaluate_no_error(model, x, y, batch_size):
    return evaluate_right(model, x, y, batch_size) if len(x) == len(y) and len(x) else 0.0


def wilson_right(correct, total, z=1.959963984540054):
    if total <= 0:
        raise ValueError("total")
    p = correct / total
    center = (p + z**2 / (2 * total)) / (1 + z**2 / total)
    half = z / (1 + z**2 / total) * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2))
    return max(center - half, 0.0), min(center + half, 1.0)


def normal_interval(correct, total):
    if total <= 0:
        raise ValueError("total")
    p = correct / total
    half = 1.96 * math.sqrt(p * (1 - p) / total)  # collapses to a point at 0 and at all correct
    return p - half, p + half


def csr_right(w, index_bytes, value_bytes):
    nonzeros = int((w != 0).sum())
    return nonzeros * (index_bytes + value_bytes) + (w.shape[0] + 1) * index_bytes


def csr_no_row_pointers(w, index_bytes, value_bytes):
    return int((w != 0).sum()) * (index_bytes + value_bytes)


def csr_rows_not_plus_one(w, index_bytes, value_bytes):
    return int((w != 0).sum()) * (index_bytes + value_bytes) + w.shape[0] * index_bytes


def csr_every_weight(w, index_bytes, value_bytes):
    return w.numel() * (index_bytes + value_bytes) + (w.shape[0] + 1) * index_bytes


CASES = [
    (exercises.check_macs, macs_right, [macs_wrong, lambda sizes: sum(sizes)]),
    (exercises.check_parameter_count, count_right, [count_wrong, lambda sizes: sum(a * b + a for a, b in zip(sizes, sizes[1:]))]),
    (exercises.check_evaluate, evaluate_right, [evaluate_train_mode, evaluate_mean_of_batches, evaluate_drops_last_batch,
                                                evaluate_no_error]),
    (exercises.check_wilson_interval, wilson_right, [normal_interval, lambda c, t: wilson_right(c, t, z=2.0)]),
    (exercises.check_global_masks, global_masks_right, [masks_wrong, layer_masks_right]),
    (exercises.check_layer_masks, layer_masks_right, [global_masks_right, layer_masks_off_by_one]),
    (exercises.check_csr_bytes, csr_right, [csr_no_row_pointers, csr_rows_not_plus_one, csr_every_weight]),
]


@pytest.mark.parametrize("check, right, wrongs", CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_the_solution_and_fails_wrong_answers(check, right, wrongs, exercise_check):
    exercise_check(check, right, wrongs)


def test_check_evaluate_restores_the_mode():
    def leaves_eval(model, x, y, batch_size):
        value = evaluate_right(model, x, y, batch_size)
        model.eval()
        return value
    with pytest.raises(exercises.ExerciseError, match="train mode"):
        exercises.check_evaluate(leaves_eval)


def test_checks_that_seed_leave_the_notebook_random_stream_as_it_was(capsys):
    """Guards: a check seeds torch to build its cases; it must not reseed the learner's notebook, where the
    next cell would then draw other numbers depending on whether the check ran (exercises.own_random_stream)."""
    from tests.test_exercises_beyond import pgd_right
    from tests.test_exercises_compress import step_right
    from tutorial_utils import exercises_beyond, exercises_compress

    for check, right in ((exercises.check_evaluate, evaluate_right), (exercises_beyond.check_pgd, pgd_right),
                         (exercises_compress.check_distillation_step, step_right)):
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        check(right)
        assert torch.equal(torch.rand(3), expected), check.__name__
    assert capsys.readouterr().out.count("passed") == 3


def test_a_learner_calling_the_package_answer_fails_under_any_name_and_the_names_come_back():
    """own_work: measure.macs and footprint.macs are one function; calling either fails the check by name, and
    after the check (passed, failed, or raising) both names are the package's function again."""
    from tutorial_utils import footprint
    original = footprint.macs
    with pytest.raises(exercises.ExerciseError, match="check_macs: your function calls footprint.macs"):
        exercises.check_macs(lambda sizes: measure.macs(models.mlp(sizes), in_features=sizes[0]))
    assert footprint.macs is original and measure.macs is original
    exercises.check_macs(lambda sizes: sum(a * b for a, b in zip(sizes, sizes[1:])))
    with pytest.raises(ZeroDivisionError):
        exercises.check_macs(lambda sizes: 1 / 0)
    assert footprint.macs is original and measure.macs is original
    with pytest.raises(exercises.ExerciseError, match="check_evaluate: your function calls evaluation.evaluate"):
        exercises.check_evaluate(lambda model, x, y, batch_size: training.evaluate(model, x, y, batch_size=batch_size))
