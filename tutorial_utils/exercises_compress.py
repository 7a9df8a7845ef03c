"""Automatic checks for the exercises of notebooks 03 (quantization) and 04 (distillation).

Same contract as `exercises`: hidden cases, edge cases included (1 and 8 bits, an all-zero row, T = 1,
alpha 0 and 1, a teacher with dropout handed over in train mode), and an
ExerciseError that names the case, the expected and the returned value, and a hint.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from tutorial_utils import distillation, models, qtensor, quantization, stats
from tutorial_utils.exercises import ExerciseError  # noqa: F401  (one error type for every exercise)
from tutorial_utils.exercises import _fail, _number, _passed, own_random_stream, own_work


def _random_weights(seed: int = 99) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 32, generator=generator) * s for s in (0.05, 1.0, 30.0)]


def check_quantize_per_channel(my_quantize: Callable) -> None:
    """Notebook 03: my_quantize(w, bits) -> (integer codes, scale of shape (rows, 1)), symmetric per channel."""
    my_quantize = own_work("check_quantize_per_channel", my_quantize, "qtensor.quantize")
    cases = 0
    for w in _random_weights():
        for bits in (2, 3, 4, 8):
            reference = quantization.quantize(w, bits, per_channel=True)
            q, scale = my_quantize(w, bits)
            if not torch.allclose(torch.as_tensor(scale, dtype=torch.float32).reshape(-1, 1), reference.scale):
                _fail("check_quantize_per_channel", f"bits={bits}, |w| up to {w.abs().max():.3g}",
                      f"scales {reference.scale.flatten()[:3].tolist()}...", f"{torch.as_tensor(scale).flatten()[:3].tolist()}...",
                      "one scale per row: max|w_row| / (2^(bits-1) - 1)")
            if not torch.equal(torch.as_tensor(q).to(torch.int32), reference.q):
                _fail("check_quantize_per_channel", f"bits={bits}", f"codes {reference.q[0, :6].tolist()}...",
                      f"{torch.as_tensor(q)[0, :6].tolist()}...", "round (not floor) w / scale, then clamp to ±(2^(bits-1) - 1)")
            cases += 1
    _passed("check_quantize_per_channel", cases)


def check_asymmetric_quantize(my_quantize: Callable) -> None:
    """Notebook 03: my_quantize(x, bits) -> (codes, scale, zero_point), asymmetric per tensor, 0 exact."""
    my_quantize = own_work("check_asymmetric_quantize", my_quantize, "qtensor.quantize")
    cases = 0
    for x in _random_weights() + [torch.rand(40) * 5, -torch.rand(40)]:
        for bits in (2, 4, 8):
            reference = quantization.quantize(x, bits, symmetric=False)
            q, scale, zero_point = my_quantize(x, bits)
            got = torch.as_tensor(scale, dtype=torch.float32) * (torch.as_tensor(q).float() - float(zero_point))
            if not torch.allclose(got, quantization.dequantize(reference), atol=1e-6):
                _fail("check_asymmetric_quantize", f"bits={bits}, x in [{x.min():.3g}, {x.max():.3g}]",
                      f"scale {reference.scale.item():.5g}, zero point {int(reference.zero_point)}",
                      f"scale {float(scale):.5g}, zero point {zero_point}",
                      "extend [min, max] to include 0; S = (max - min) / (2^bits - 1); Z = round(-min / S)")
            cases += 1
    _passed("check_asymmetric_quantize", cases)


def check_fake_quantize(my_fake_quantize: Callable) -> None:
    """Notebook 03: my_fake_quantize(w, bits) -> w on its symmetric per-row grid, with a straight-through gradient.

    Forward: as qtensor.fake_quantize(w, bits, per_channel=True) (1 bit: sign(w) * mean|w_row|; an all-zero
    row stays zero). Backward: d out / d w = 1 everywhere, so w.grad equals the incoming gradient.
    """
    my_fake_quantize = own_work("check_fake_quantize", my_fake_quantize, "qtensor.fake_quantize")
    cases = [(w, bits) for w in _random_weights() for bits in (1, 2, 4, 8)]
    cases.append((torch.cat([torch.zeros(1, 32), _random_weights()[1][:3]]), 4))      # an all-zero row
    generator = torch.Generator().manual_seed(13)
    for w, bits in cases:
        name = f"bits={bits}, shape {tuple(w.shape)}, |w| up to {w.abs().max():.3g}"
        expected = qtensor.fake_quantize(w, bits, per_channel=True)
        leaf = w.clone().requires_grad_(True)
        got = my_fake_quantize(leaf, bits)
        if not isinstance(got, torch.Tensor) or got.shape != w.shape or not torch.allclose(got.detach(), expected, atol=1e-6):
            _fail("check_fake_quantize", name, f"row 0 = {expected[0, :4].tolist()}...",
                  f"{got.detach()[0, :4].tolist() if isinstance(got, torch.Tensor) else got}...",
                  "scale = max|w_row| / (2^(bits-1) - 1); round(w / scale), clamp, times scale (1 bit: sign * mean|w_row|)")
        if not got.requires_grad:
            _fail("check_fake_quantize", name, "an output connected to w's graph", "no gradient path",
                  "return w + (w_q - w).detach(): the value of w_q, the gradient of w")
        upstream = torch.randn(w.shape, generator=generator)
        (got * upstream).sum().backward()
        if leaf.grad is None or not torch.allclose(leaf.grad, upstream, atol=1e-6):
            _fail("check_fake_quantize", name, "w.grad == the incoming gradient (straight through)",
                  "no gradient" if leaf.grad is None else f"w.grad differs by up to {(leaf.grad - upstream).abs().max():.3g}",
                  "round() has zero gradient almost everywhere: detach the rounding error, not w")
    _passed("check_fake_quantize", len(cases))


def check_kd_loss(my_kd_loss: Callable) -> None:
    """Notebook 04: my_kd_loss(student_logits, teacher_logits, targets, temperature, alpha) -> scalar."""
    my_kd_loss = own_work("check_kd_loss", my_kd_loss, "distillation.kd_loss")
    generator = torch.Generator().manual_seed(7)
    cases = 0
    for temperature in (1.0, 2.5, 4.0, 20.0):
        for alpha in (0.0, 0.5, 0.9, 1.0):
            s, t = torch.randn(16, 10, generator=generator), 3 * torch.randn(16, 10, generator=generator)
            y = torch.randint(0, 10, (16,), generator=generator)
            expected = distillation.kd_loss(s, t, y, temperature=temperature, alpha=alpha)
            got = torch.as_tensor(my_kd_loss(s, t, y, temperature, alpha))
            if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
                _fail("check_kd_loss", f"T={temperature}, alpha={alpha}", f"{expected.item():.5f}", f"{got.item():.5f}",
                      "alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) averaged over the batch + (1 - alpha) * CE(s, y)")
            cases += 1
    _passed("check_kd_loss", cases)


def check_choose_over_seeds(my_choose: Callable) -> None:
    """Notebook 04: my_choose(baseline, candidates) -> the recipe to adopt or None, as stats.choose_over_seeds.

    baseline: per-seed accuracies without a teacher; candidates: {name: per-seed accuracies, same seeds}.
    Hidden cases: a noisy candidate with the best mean that is not established, a small gain on every seed
    (established only when paired), no gain, the same gain on every seed (no spread: not adopted), a gain beyond two
    standard errors but not beyond t's 2.776 (five seeds), one beyond the t quantile with n instead of n - 1
    degrees of freedom (2.571) but not beyond 2.776, and a ValueError for seeds that do not pair or a
    single seed.
    """
    my_choose = own_work("check_choose_over_seeds", my_choose, "stats.choose_over_seeds")
    base = [0.900, 0.930, 0.910, 0.950, 0.920]
    cases = [({"steady +0.3": [b + d for b, d in zip(base, (0.003, 0.004, 0.002, 0.003, 0.003))], "noisy +0.6": [b + d for b, d in zip(base, (0.03, -0.02, 0.01, -0.01, 0.02))]},
              "a steady small gain against a noisy larger one"),
             ({"same": list(base), "worse": [b - 0.004 for b in base]}, "no candidate gains"),
             ({"+0.2 on every seed": [b + d for b, d in zip(base, (0.002, 0.003, 0.001, 0.002, 0.002))],
               "+0.5 on every seed": [b + d for b, d in zip(base, (0.005, 0.006, 0.004, 0.005, 0.005))]},
              "two established gains: the larger wins"),
             ({"noisy": [b + d for b, d in zip(base, (0.02, -0.01, 0.015, -0.012, 0.0))]}, "one noisy candidate"),
             ({"2.4 standard errors": [b + d for b, d in zip(base, (-0.002, 0.010, 0.022, 0.004, 0.016))]},
              "a gain beyond two standard errors, inside the t interval"),
             ({"2.7 standard errors": [b + d for b, d in zip(base, (0.000, 0.010, 0.020, 0.004, 0.016))]},
              "a gain beyond the normal curve's 2.58 and t's 2.57 with n degrees of freedom, inside t's 2.78"),
             ({"+0.1 on every seed": [b + 0.001 for b in base]},   # differences equal up to float rounding
              "the same gain on every seed: stdev(d) = 0, no interval, not adopted")]
    for candidates, name in cases:
        expected, got = stats.choose_over_seeds(base, candidates), my_choose(list(base), {k: list(v) for k, v in candidates.items()})
        if got != expected:
            _fail("check_choose_over_seeds", name, expected, got, "d_i = candidate_i - baseline_i per seed; adopt only "
                  "if mean(d) - t * stdev(d) / sqrt(n) > 0 with t = measure.t_quantile(0.95, n - 1) and the d_i "
                  "are not all equal (within 1e-9); among those, the largest mean(d); else None")
    for baseline, candidates, name in ((base, {"short": base[:4]}, "4 seeds against 5"), (base[:1], {"one": base[:1]}, "one seed")):
        try:
            my_choose(list(baseline), candidates)
        except ValueError:
            continue
        _fail("check_choose_over_seeds", name, "ValueError", "no error", "seeds must pair, and one seed has no standard error")
    _passed("check_choose_over_seeds", len(cases) + 2)


@own_random_stream
def check_distillation_step(my_step: Callable) -> None:
    """Notebook 04: my_step(student, teacher, optimizer, x, y, temperature, alpha) -> the loss, as a float.

    One step: teacher in eval mode under no_grad, zero the gradients, distillation.kd_loss, backward, step.
    Two steps are compared with a reference on copies (so gradients left from the first step show), the
    teacher has dropout and arrives in train mode, and it must come out with no gradient and unchanged.
    """
    torch.manual_seed(17)
    teacher = nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Dropout(0.5), nn.Linear(24, 5))
    generator = torch.Generator().manual_seed(17)
    x, y = torch.randn(32, 12, generator=generator), torch.randint(0, 5, (32,), generator=generator)
    cases = 0
    for temperature, alpha in ((4.0, 0.9), (1.0, 0.5), (2.0, 1.0), (4.0, 0.0)):
        torch.manual_seed(cases)
        start = models.mlp([12, 8, 5])
        reference, learner = copy.deepcopy(start), copy.deepcopy(start)
        reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
        optimizer = torch.optim.SGD(learner.parameters(), lr=0.1, momentum=0.9)
        teacher_before = copy.deepcopy(teacher.state_dict())
        graph_built = []   # kd_loss detaches the teacher's logits, so only a hook sees a teacher run outside no_grad
        hook = teacher.register_forward_hook(lambda *_: graph_built.append(torch.is_grad_enabled()))
        for step in (1, 2):
            teacher.eval()
            with torch.no_grad():
                soft = teacher(x)
            reference_optimizer.zero_grad()
            expected = distillation.kd_loss(reference(x), soft, y, temperature=temperature, alpha=alpha)
            expected.backward()
            reference_optimizer.step()
            teacher.train()                                  # handed over as a training loop would leave it
            graph_built.clear()
            got = my_step(learner, teacher, optimizer, x, y, temperature, alpha)
            name = f"T={temperature}, alpha={alpha}, step {step}"
            if abs(_number("check_distillation_step", name, got) - expected.item()) > 1e-5 * max(1.0, abs(expected.item())):
                _fail("check_distillation_step", name, f"loss {expected.item():.5f}", got, "teacher.eval() before it "
                      "runs (dropout off); return loss.item(); the loss is alpha T^2 KL + (1 - alpha) CE")
            drift = max((a - b).abs().max().item() for a, b in zip(learner.parameters(), reference.parameters()))
            if drift > 1e-5:
                _fail("check_distillation_step", name, "the student's weights after the reference's step",
                      f"weights differ by up to {drift:.3g}", "optimizer.zero_grad() before backward, then optimizer.step()")
            if any(graph_built):
                _fail("check_distillation_step", name, "the teacher run under torch.no_grad()", "the teacher ran "
                      "with gradients enabled (a graph built through it)", "compute teacher(x) inside "
                      "`with torch.no_grad():`; kd_loss detaches it, but the graph costs memory and time")
            if any(p.grad is not None for p in teacher.parameters()) or any(
                    not torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items()):
                _fail("check_distillation_step", name, "the teacher unchanged, with no gradients", "the teacher changed "
                      "or holds gradients", "compute teacher(x) under torch.no_grad(); never step the teacher")
            cases += 1
        hook.remove()
    _passed("check_distillation_step", cases)
