"""Automatic checks for notebook 06's exercises (deployment): 4-bit packing for MatMulNBits, compaction, and
folding the pixels' normalisation into the first layer.

Same contract as `exercises`: hidden cases with edge cases (a K that is not a multiple of the block, all
codes 0 or 15, a hidden unit whose constant output must be folded into the next bias, a negative bias
that ReLU turns off), and an ExerciseError naming the case, the expected and the returned value, a hint.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tutorial_utils import compaction, models, nbits, quantization
from tutorial_utils.exercises import ExerciseError  # noqa: F401  (one error type for every exercise)
from tutorial_utils.exercises import _fail, _passed, own_work


def _packing_cases() -> list[tuple[torch.Tensor, int]]:
    generator = torch.Generator().manual_seed(6)
    return [(torch.tensor([[1, 2, 3, 15, 0]]), 16), (torch.randint(0, 16, (3, 16), generator=generator), 16),
            (torch.randint(0, 16, (2, 33), generator=generator), 32), (torch.zeros(1, 16, dtype=torch.int64), 16),
            (torch.full((2, 20), 15), 16)]


def check_unpack_4bit(my_unpack: Callable) -> None:
    """Notebook 06: my_unpack(packed, k) -> the (N, k) unsigned codes that nbits.pack_4bit packed."""
    cases = _packing_cases()
    for codes, block_size in cases:
        got = torch.as_tensor(my_unpack(nbits.pack_4bit(codes, block_size), codes.shape[1]))
        if got.shape != codes.shape or not torch.equal(got.long(), codes.long()):
            _fail("check_unpack_4bit", f"codes of shape {tuple(codes.shape)}, block_size {block_size}",
                  f"{codes.reshape(-1)[:6].tolist()}...", f"shape {tuple(got.shape)}, {got.reshape(-1)[:6].tolist()}...",
                  "low nibble: byte & 15, high nibble: byte >> 4; interleave them, flatten the blocks, cut to k")
    _passed("check_unpack_4bit", len(cases))


def check_pack_4bit(my_pack: Callable) -> None:
    """Notebook 06: my_pack(codes, block_size) -> uint8 (N, blocks, block_size // 2), as nbits.pack_4bit."""
    my_pack = own_work("check_pack_4bit", my_pack, "nbits.pack_4bit")
    cases = _packing_cases()
    for codes, block_size in cases:
        expected, got = nbits.pack_4bit(codes, block_size), my_pack(codes, block_size)
        if getattr(got, "shape", None) != expected.shape or not (torch.as_tensor(got).numpy() == expected).all():
            _fail("check_pack_4bit", f"codes of shape {tuple(codes.shape)}, block_size {block_size}",
                  f"shape {expected.shape}, first bytes {expected.reshape(-1)[:4].tolist()}",
                  f"shape {getattr(got, 'shape', None)}, first bytes {torch.as_tensor(got).reshape(-1)[:4].tolist()}",
                  "pad K to a multiple of block_size with code 8 (weight 0); even code low nibble, odd high")
    _passed("check_pack_4bit", len(cases))


def _pruned_mlps() -> list[tuple[nn.Sequential, str]]:
    """Two-layer MLPs with dead units of each kind: an unused unit, constant units with b > 0 and b < 0."""
    generator = torch.Generator().manual_seed(31)
    cases = []
    for name, unused, constant in (("one unused unit", [1], []), ("constant units, bias +0.5 and -0.5", [], [2, 5]),
                                   ("unused and constant units", [0, 3], [4]), ("nothing to remove", [], [])):
        model = models.mlp([10, 8, 4])
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
            model[2].weight[:, unused] = 0                      # nobody reads these units
            model[0].weight[constant] = 0                       # these units read nothing: relu(b) always
            model[0].bias[constant] = torch.tensor([0.5, -0.5, 0.7][:len(constant)])
        cases.append((model, name))
    return cases


def check_compact_hidden(my_compact: Callable) -> None:
    """Notebook 06: my_compact(model) -> a smaller Linear-ReLU-Linear with the same logits, as
    compaction.compact(model, inputs=False): unused hidden units dropped, constant ones folded into the
    next bias (b2 + W2[:, j] * relu(b1_j)). The input model must not change."""
    my_compact = own_work("check_compact_hidden", my_compact, "compaction.compact")
    cases = _pruned_mlps()
    x = torch.randn(16, 10, generator=torch.Generator().manual_seed(32))
    for model, name in cases:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        expected = compaction.compact(model, inputs=False)
        got = my_compact(model)
        hidden, got_hidden = models.layer_sizes(expected)[1], models.layer_sizes(got)[1] if isinstance(got, nn.Sequential) else None
        if got_hidden != hidden:
            _fail("check_compact_hidden", name, f"{hidden} hidden units", f"{got_hidden}",
                  "drop unit j when W2[:, j] is all zero (unused) or W1[j, :] is all zero (constant relu(b1_j))")
        with torch.no_grad():
            difference = (got(x) - expected(x)).abs().max().item()
        if difference > 1e-5:
            _fail("check_compact_hidden", name, "the same logits as the model", f"logits differ by up to {difference:.3g}",
                  "before dropping a constant unit add W2[:, j] * relu(b1_j) to b2: relu, so a negative b1_j adds nothing")
        if any(not torch.equal(v, before[k]) for k, v in model.state_dict().items()):
            _fail("check_compact_hidden", name, "the input model unchanged", "its weights changed",
                  "build new Linear layers (or work on copy.deepcopy(model))")
    _passed("check_compact_hidden", len(cases))


def _coded_layers() -> list[tuple[nn.Module, float, float, str]]:
    """First layers of symmetric codes with (mean, std): per-row and per-tensor scales, 4 and 7 bits."""
    generator = torch.Generator().manual_seed(61)
    cases = []
    settings = ((4, True, 0.1307, 0.3081, "4-bit codes, row scales, MNIST's mean and std"),
                (4, False, 0.5, 0.25, "one scale for the whole layer, mean 0.5, std 0.25"),
                (7, True, 0.0, 1.0, "7-bit codes, mean 0, std 1 (x = p / 255)"))
    for bits, per_channel, mean, std, name in settings:
        model = models.mlp([12, 5, 3])
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
        cases.append((quantization.quantize_model(model, bits, per_channel=per_channel)[0], mean, std, name))
    return cases


def check_fold_pixels(my_fold: Callable) -> None:
    """Notebook 06: my_fold(layer, mean, std) -> (codes_t (K, N) integers, scale (N,), bias (N,)) such that
    pixels @ codes_t * scale + bias equals layer((pixels / 255 - mean) / std) for uint8 pixels. The bias
    is checked on a black image first (all it leaves is the bias), then the rest on random images; the
    layer must not change."""
    my_fold = own_work("check_fold_pixels", my_fold, "onnx_export.fold_pixels")
    cases = _coded_layers()
    pixels = torch.randint(0, 256, (9, 12), generator=torch.Generator().manual_seed(62))
    pixels[0] = 0                                              # a black image: only the folded bias is left
    for layer, mean, std, name in cases:
        before = {k: v.clone() for k, v in layer.state_dict().items()}
        with torch.no_grad():
            expected = layer(((pixels.float() / 255 - mean) / std)).double()      # (9, 5)
        codes_t, scale, bias = (torch.as_tensor(v) for v in my_fold(layer, mean, std))
        if any(not torch.equal(v, before[k]) for k, v in layer.state_dict().items()):
            _fail("check_fold_pixels", name, "the layer unchanged", "its codes, scale or bias changed",
                  "compute new tensors (layer.bias - ..., not layer.bias -= ...)")
        if codes_t.shape != (12, 5) or codes_t.is_floating_point() or scale.shape != (5,) or bias.shape != (5,):
            _fail("check_fold_pixels", name, "integer codes_t of shape (12, 5), scale and bias of shape (5,)",
                  f"codes_t {tuple(codes_t.shape)} {codes_t.dtype}, scale {tuple(scale.shape)}, "
                  f"bias {tuple(bias.shape)}",
                  "codes_t is layer.codes transposed (.T), kept integer; layer.scale is (N, 1) or one number: "
                  "flatten it, and expand a single one to N")
        got = (pixels.long() @ codes_t.long()).double() * scale.double() + bias.double()
        for rows, part, hint in ((slice(0, 1), "bias (the black image)",
                                  "bias = b - (mean / std) * s * (sum of each row of codes)"),
                                 (slice(1, None), "codes and scale (random images)",
                                  "scale = s / (255 std), codes_t = codes.T (a transpose, not a reshape)")):
            difference = (got[rows] - expected[rows]).abs().max().item()
            if difference > 1e-4:
                _fail("check_fold_pixels", f"{name}: the {part}", f"{expected[rows][0, :3].tolist()}",
                      f"{got[rows][0, :3].tolist()} (off by up to {difference:.3g})", hint)
    _passed("check_fold_pixels", len(cases))
