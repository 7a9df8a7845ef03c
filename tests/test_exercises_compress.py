"""Notebooks 03-04's checks pass the notebook's solution and fail plausible wrong answers with a precise message."""

import pytest
import torch
import torch.nn.functional as F

from tutorial_utils import distillation, exercises_compress, measure


def per_channel_right(w, bits):
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=1, keepdim=True) / qmax
    return torch.clamp(torch.round(w / scale), -qmax, qmax).int(), scale


def per_channel_floor(w, bits):
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=1, keepdim=True) / qmax
    return torch.clamp(torch.floor(w / scale), -qmax, qmax).int(), scale


def per_tensor(w, bits):
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().max() / qmax * torch.ones(w.shape[0], 1)
    return torch.clamp(torch.round(w / scale), -qmax, qmax).int(), scale


def asymmetric_right(x, bits):
    low, high = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    scale = (high - low) / (2**bits - 1)
    zero_point = round(-low / scale)
    return torch.clamp(torch.round(x / scale) + zero_point, 0, 2**bits - 1), scale, zero_point


def asymmetric_without_zero(x, bits):
    low, high = x.min().item(), x.max().item()  # does not keep 0 in range
    scale = (high - low) / (2**bits - 1)
    zero_point = round(-low / scale)
    return torch.clamp(torch.round(x / scale) + zero_point, 0, 2**bits - 1), scale, zero_point


def asymmetric_floor(x, bits):
    q, scale, zero_point = asymmetric_right(x, bits)
    low = min(x.min().item(), 0.0)
    return torch.clamp(torch.floor(x / scale) + round(-low / scale), 0, 2**bits - 1), scale, zero_point


def fake_right(w, bits):
    if bits == 1:
        scale = w.detach().abs().mean(dim=1, keepdim=True)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.where(w.detach() >= 0, 1.0, -1.0) * scale
    else:
        qmax = 2 ** (bits - 1) - 1
        scale = w.detach().abs().amax(dim=1, keepdim=True) / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.clamp(torch.round(w.detach() / scale), -qmax, qmax) * scale
    return w + (q - w).detach()


def fake_no_straight_through(w, bits):
    return fake_right(w, bits).detach() * 1.0 + 0 * w.detach()  # the values, but the gradient path is cut


def fake_round_in_graph(w, bits):
    qmax = max(2 ** (bits - 1) - 1, 1)
    scale = w.detach().abs().amax(dim=1, keepdim=True) / qmax
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale  # round() kills the gradient


def kd_right(s, t, y, temperature, alpha):
    soft = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean")
    return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(s, y)


def kd_no_t_squared(s, t, y, temperature, alpha):
    soft = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean")
    return alpha * soft + (1 - alpha) * F.cross_entropy(s, y)


def kd_mean_reduction(s, t, y, temperature, alpha):
    soft = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="mean")  # per element
    return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(s, y)


def _step(student, teacher, optimizer, x, y, temperature, alpha, *, eval_teacher=True, no_grad=True,
          zero_grad=True, loss_fn=kd_right):
    if eval_teacher:
        teacher.eval()
    if no_grad:
        with torch.no_grad():
            soft = teacher(x)
    else:
        soft = teacher(x)                              # the teacher collects gradients
    if zero_grad:
        optimizer.zero_grad()
    loss = loss_fn(student(x), soft, y, temperature, alpha)
    loss.backward()
    optimizer.step()
    return loss.item()


def step_right(*args):
    return _step(*args)


def step_teacher_in_train_mode(*args):
    return _step(*args, eval_teacher=False)           # dropout still on


def step_without_zero_grad(*args):
    return _step(*args, zero_grad=False)


def step_teacher_with_gradients(*args):
    return _step(*args, no_grad=False)


def kd_package(s, t, y, temperature, alpha):
    return distillation.kd_loss(s, t, y, temperature=temperature, alpha=alpha)   # detaches the teacher's logits


def step_package_loss_without_no_grad(*args):
    return _step(*args, no_grad=False, loss_fn=kd_package)   # no gradient reaches the teacher, but a graph is built


def step_returns_the_tensor(student, teacher, optimizer, x, y, temperature, alpha):
    step_right(student, teacher, optimizer, x, y, temperature, alpha)
    return torch.tensor(0.0)


def step_without_t_squared(*args):
    return _step(*args, loss_fn=kd_no_t_squared)


def _check_seeds(baseline, candidates):
    if any(len(v) != len(baseline) for v in candidates.values()) or len(baseline) < 2:
        raise ValueError("seeds")


def _choose_paired(baseline, candidates, standard_errors, spread_needed=True):
    _check_seeds(baseline, candidates)
    best, best_mean = None, None
    for name, values in candidates.items():
        d = [v - b for v, b in zip(values, baseline)]
        mean = sum(d) / len(d)
        se = (sum((x - mean) ** 2 for x in d) / (len(d) - 1)) ** 0.5 / len(d) ** 0.5
        if spread_needed and max(d) - min(d) <= 1e-9:
            continue
        if mean - standard_errors(len(d)) * se > 0 and (best_mean is None or mean > best_mean):
            best, best_mean = name, mean
    return best


def choose_paired(baseline, candidates):
    return _choose_paired(baseline, candidates, lambda n: measure.t_quantile(0.95, n - 1))


def choose_zero_width_interval(baseline, candidates):
    return _choose_paired(baseline, candidates, lambda n: measure.t_quantile(0.95, n - 1), spread_needed=False)


def choose_wrong_degrees_of_freedom(baseline, candidates):
    return _choose_paired(baseline, candidates, lambda n: measure.t_quantile(0.95, n))   # n, not n - 1


def choose_two_standard_errors(baseline, candidates):
    return _choose_paired(baseline, candidates, lambda n: 2.0)   # the normal rule of thumb: too lenient for 5 seeds


def choose_by_mean(baseline, candidates):
    _check_seeds(baseline, candidates)
    gains = {name: sum(values) / len(values) - sum(baseline) / len(baseline) for name, values in candidates.items()}
    name = max(gains, key=gains.get)
    return name if gains[name] > 0 else None  # the best mean, however noisy


def choose_unpaired(baseline, candidates):
    _check_seeds(baseline, candidates)
    def mean_var(v):
        m = sum(v) / len(v)
        return m, sum((x - m) ** 2 for x in v) / (len(v) - 1)
    mb, vb = mean_var(baseline)
    best, best_mean = None, None
    for name, values in candidates.items():
        m, v = mean_var(values)  # ignores the pairing: the seeds' shared luck stays in the error
        if m - mb - 2 * ((v + vb) / len(values)) ** 0.5 > 0 and (best_mean is None or m - mb > best_mean):
            best, best_mean = name, m - mb
    return best


def choose_without_checks(baseline, candidates):
    padded = {k: v + [v[-1]] * (len(baseline) - len(v)) for k, v in candidates.items()}  # pads instead of refusing
    try:
        return choose_paired(baseline, padded)
    except ValueError:
        return None                                    # one seed: silently no answer


CASES = [
    (exercises_compress.check_quantize_per_channel, per_channel_right, [per_channel_floor, per_tensor]),
    (exercises_compress.check_asymmetric_quantize, asymmetric_right, [asymmetric_without_zero, asymmetric_floor]),
    (exercises_compress.check_fake_quantize, fake_right, [fake_no_straight_through, fake_round_in_graph]),
    (exercises_compress.check_kd_loss, kd_right, [kd_no_t_squared, kd_mean_reduction]),
    (exercises_compress.check_choose_over_seeds, choose_paired, [choose_by_mean, choose_unpaired, choose_without_checks,
                                                                   choose_two_standard_errors, choose_wrong_degrees_of_freedom,
                                                                   choose_zero_width_interval]),
    (exercises_compress.check_distillation_step, step_right,
     [step_teacher_in_train_mode, step_without_zero_grad, step_teacher_with_gradients, step_package_loss_without_no_grad,
      step_without_t_squared, step_returns_the_tensor]),
]


@pytest.mark.filterwarnings("ignore:reduction")  # kd_mean_reduction uses the reduction it warns about
@pytest.mark.parametrize("check, right, wrongs", CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_the_solution_and_fails_wrong_answers(check, right, wrongs, exercise_check):
    exercise_check(check, right, wrongs)


def test_the_step_check_names_what_it_wanted():
    """A run outside no_grad that kd_loss's detach hides, and a tensor instead of a number, each get their own hint."""
    with pytest.raises(exercises_compress.ExerciseError, match="torch.no_grad"):
        exercises_compress.check_distillation_step(step_package_loss_without_no_grad)
    with pytest.raises(exercises_compress.ExerciseError, match=r"Python number.*\n.*Tensor.*\n.*\.item\(\)"):
        exercises_compress.check_distillation_step(lambda *args: torch.tensor(step_right(*args)))
