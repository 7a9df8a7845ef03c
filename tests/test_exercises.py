"""Every exercise check passes with the notebook's solution and fails, with a precise message, on a wrong one."""

import pytest
import torch
import torch.nn.functional as F

from tutorial_utils import exercises


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


def per_channel_right(w, bits):
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=1, keepdim=True) / qmax
    return torch.clamp(torch.round(w / scale), -qmax, qmax).int(), scale


def per_channel_wrong(w, bits):
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=1, keepdim=True) / qmax
    return torch.clamp(torch.floor(w / scale), -qmax, qmax).int(), scale  # floor instead of round


def asymmetric_right(x, bits):
    low, high = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    scale = (high - low) / (2**bits - 1)
    zero_point = round(-low / scale)
    return torch.clamp(torch.round(x / scale) + zero_point, 0, 2**bits - 1), scale, zero_point


def asymmetric_wrong(x, bits):
    low, high = x.min().item(), x.max().item()  # does not keep 0 in range
    scale = (high - low) / (2**bits - 1)
    zero_point = round(-low / scale)
    return torch.clamp(torch.round(x / scale) + zero_point, 0, 2**bits - 1), scale, zero_point


def kd_right(s, t, y, temperature, alpha):
    soft = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean")
    return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(s, y)


def kd_wrong(s, t, y, temperature, alpha):
    soft = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean")
    return alpha * soft + (1 - alpha) * F.cross_entropy(s, y)  # forgets T^2


def estimate_right(model, bits):
    total = 600
    for layer in (model[0], model[2]):
        n, nonzero = layer.weight.numel(), int((layer.weight != 0).sum())
        total += (nonzero * bits + min(n, 5 * nonzero)) / 8 + 4 * layer.out_features
    return total


def estimate_wrong(model, bits):
    return sum(4 * layer.weight.numel() for layer in (model[0], model[2]))  # float32 dense


@pytest.mark.parametrize("check, right, wrong", [
    (exercises.check_macs, macs_right, macs_wrong),
    (exercises.check_parameter_count, count_right, count_wrong),
    (exercises.check_global_masks, global_masks_right, masks_wrong),
    (exercises.check_layer_masks, layer_masks_right, global_masks_right),
    (exercises.check_quantize_per_channel, per_channel_right, per_channel_wrong),
    (exercises.check_asymmetric_quantize, asymmetric_right, asymmetric_wrong),
    (exercises.check_kd_loss, kd_right, kd_wrong),
    (exercises.check_soft_targets, lambda z, t: F.softmax(z / t, 1), lambda z, t: F.softmax(z, 1)),
    (exercises.check_size_estimate, estimate_right, estimate_wrong),
    (exercises.check_compression_ratio, lambda r, f: r / f, lambda r, f: f / r),
], ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_the_solution_and_fails_a_wrong_answer(check, right, wrong, capsys):
    check(right)
    assert "passed" in capsys.readouterr().out
    with pytest.raises(exercises.ExerciseError) as caught:
        check(wrong)
    message = str(caught.value)
    assert "wrong on" in message and "expected:" in message and "got:" in message and "hint:" in message
