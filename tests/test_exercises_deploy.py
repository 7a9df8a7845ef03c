"""Notebook 06's checks pass the notebook's solution and fail plausible wrong answers with a precise message."""

import copy

import pytest
import torch
from torch import nn

from tutorial_utils import exercises_deploy, onnx_export
from tutorial_utils.exercises import ExerciseError


def _pack(codes, block_size, *, pad=8, high_first=False):
    n, k = codes.shape
    blocks = -(-k // block_size)
    padded = torch.full((n, blocks * block_size), pad, dtype=torch.uint8)
    padded[:, :k] = codes.to(torch.uint8)
    pairs = padded.reshape(n, blocks, block_size // 2, 2)
    low, high = (pairs[..., 1], pairs[..., 0]) if high_first else (pairs[..., 0], pairs[..., 1])
    return (low | (high << 4)).numpy()


def pack_right(codes, block_size):
    return _pack(codes, block_size)


def pack_nibbles_swapped(codes, block_size):
    return _pack(codes, block_size, high_first=True)


def pack_zero_padding(codes, block_size):
    return _pack(codes, block_size, pad=0)            # code 0 is the weight -8, not 0


def unpack_right(packed, k):
    packed = torch.as_tensor(packed)
    low, high = packed & 15, packed >> 4
    return torch.stack([low, high], dim=-1).reshape(packed.shape[0], -1)[:, :k]


def unpack_swapped(packed, k):
    packed = torch.as_tensor(packed)
    return torch.stack([packed >> 4, packed & 15], dim=-1).reshape(packed.shape[0], -1)[:, :k]


def unpack_uncut(packed, k):
    packed = torch.as_tensor(packed)
    return torch.stack([packed & 15, packed >> 4], dim=-1).reshape(packed.shape[0], -1)  # keeps the padding


@torch.no_grad()
def _compact(model, fold=True, relu=True, constant_too=True):
    first, last = model[0], model[2]
    unused = (last.weight == 0).all(dim=0)
    constant = (first.weight == 0).all(dim=1) & ~unused
    drop = unused | constant if constant_too else unused
    keep = (~drop).nonzero().flatten()
    bias = last.bias.clone()
    if fold and constant_too:
        b = torch.relu(first.bias[constant]) if relu else first.bias[constant]
        bias += last.weight[:, constant] @ b
    small = nn.Sequential(nn.Linear(first.in_features, len(keep)), nn.ReLU(), nn.Linear(len(keep), last.out_features))
    small[0].weight.copy_(first.weight[keep])
    small[0].bias.copy_(first.bias[keep])
    small[2].weight.copy_(last.weight[:, keep])
    small[2].bias.copy_(bias)
    return small


def compact_in_place(model):
    small = _compact(model)
    with torch.no_grad():
        model[2].bias.copy_(small[2].bias)  # changes the learner's model
    return small


CASES = [
    (exercises_deploy.check_pack_4bit, pack_right, [pack_nibbles_swapped, pack_zero_padding]),
    (exercises_deploy.check_unpack_4bit, unpack_right, [unpack_swapped, unpack_uncut]),
    (exercises_deploy.check_compact_hidden, _compact,
     [lambda m: _compact(m, fold=False), lambda m: _compact(m, relu=False), lambda m: _compact(m, constant_too=False),
      lambda m: copy.deepcopy(m), compact_in_place]),
]


@pytest.mark.parametrize("check, right, wrongs", CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_the_solution_and_fails_wrong_answers(check, right, wrongs, exercise_check):
    exercise_check(check, right, wrongs)


def fold_right(layer, mean, std):           # the formula, written out: the check refuses fold_pixels itself
    row_scale = layer.scale.double().reshape(-1).expand(layer.out_features)
    codes = layer.codes.long()
    bias = layer.bias.double() - mean / std * row_scale * codes.sum(dim=1)
    return codes.T, row_scale / (255 * std), bias


def fold_by_the_package(layer, mean, std):
    return onnx_export.fold_pixels(layer, mean=mean, std=std)


def fold_without_mean(layer, mean, std):
    codes_t, scale, _ = fold_right(layer, mean, std)
    return codes_t, scale, layer.bias.detach().numpy()


def fold_without_255(layer, mean, std):
    codes_t, scale, bias = fold_right(layer, mean, std)
    return codes_t, scale * 255, bias


def fold_one_scale(layer, mean, std):       # a per-tensor scale left as shape (1,): breaks the contract
    codes_t, scale, bias = fold_right(layer, mean, std)
    return codes_t, scale[:1], bias


def fold_float_codes(layer, mean, std):
    codes_t, scale, bias = fold_right(layer, mean, std)
    return codes_t.float(), scale, bias


def fold_without_std(layer, mean, std):
    return fold_right(layer, mean, 1.0)


def fold_reshaped(layer, mean, std):        # codes (N, K) reshaped to (K, N): the shape is right, the order not
    codes_t, scale, bias = fold_right(layer, mean, std)
    return layer.codes.reshape(codes_t.shape), scale, bias


def fold_not_expanded(layer, mean, std):    # one scale for the layer left as shape (1,): fails only that case
    row_scale = layer.scale.double().reshape(-1)
    codes = layer.codes.long()
    bias = layer.bias.double() - mean / std * row_scale * codes.sum(dim=1)
    return codes.T, row_scale / (255 * std), bias


def fold_in_place(layer, mean, std):
    codes_t, scale, bias = fold_right(layer, mean, std)
    with torch.no_grad():
        layer.bias.copy_(torch.as_tensor(bias))      # changes the learner's layer
    return codes_t, scale, bias


def test_fold_check_passes_the_solution_and_fails_wrong_answers(exercise_check):
    exercise_check(exercises_deploy.check_fold_pixels, fold_right,
                   [fold_without_mean, fold_without_255, fold_one_scale, fold_float_codes, fold_without_std,
                    fold_reshaped, fold_not_expanded, fold_in_place])
    with pytest.raises(ExerciseError, match="check_fold_pixels: your function calls onnx_export.fold_pixels"):
        exercises_deploy.check_fold_pixels(fold_by_the_package)
