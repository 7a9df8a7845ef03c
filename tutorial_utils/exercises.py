"""Automatic checks for the notebooks' exercises.

Each `check_*` function runs the learner's function and the package's reference on hidden random
cases, and raises ExerciseError naming the case, what was expected, what came back, and a hint.
In a notebook the raised error fails the cell, so an executed notebook (and nbval) shows at once
whether the exercise is solved.

Example:
    >>> def my_macs(sizes): return sum(a * b for a, b in zip(sizes, sizes[1:]))
    >>> exercises.check_macs(my_macs)
    check_macs: passed 6 cases
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from tutorial_utils import distillation, measure, models, onnx_export, pruning, quantization, storage


class ExerciseError(AssertionError):
    """An exercise's answer differs from the reference on one case."""


def _fail(check: str, case: str, expected: object, got: object, hint: str) -> None:
    raise ExerciseError(f"{check}: wrong on {case}\n  expected: {expected}\n  got:      {got}\n  hint: {hint}")


def _passed(check: str, cases: int) -> None:
    print(f"{check}: passed {cases} cases")


def _cases_of_sizes() -> list[list[int]]:
    return [[784, 128, 10], [784, 300, 100, 10], [784, 64, 10], [20, 7, 3], [5, 5], [784, 1200, 1200, 10]]


def check_macs(my_macs: Callable[[list[int]], int]) -> None:
    """Notebook 01: my_macs(sizes) must return the multiply-accumulates of one sample through mlp(sizes)."""
    for sizes in _cases_of_sizes():
        expected, got = measure.macs(models.mlp(sizes), in_features=sizes[0]), my_macs(sizes)
        if got != expected:
            _fail("check_macs", f"sizes={sizes}", expected, got, "a Linear n_in -> n_out does n_in * n_out MACs")
    _passed("check_macs", len(_cases_of_sizes()))


def check_parameter_count(my_count: Callable[[list[int]], int]) -> None:
    """Notebook 01: my_count(sizes) must return the number of weights and biases of mlp(sizes)."""
    for sizes in _cases_of_sizes():
        expected, got = measure.count_parameters(models.mlp(sizes)), my_count(sizes)
        if got != expected:
            _fail("check_parameter_count", f"sizes={sizes}", expected, got,
                  "each Linear n_in -> n_out holds n_in * n_out weights and n_out biases")
    _passed("check_parameter_count", len(_cases_of_sizes()))


def _random_models(seed: int = 1234) -> list[torch.nn.Sequential]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for sizes in ([30, 12, 4], [50, 20, 10, 3], [784, 16, 10]):
        model = models.mlp(sizes)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
        out.append(model)
    return out


def _check_masks(name: str, my_masks: Callable, scope: str, hint: str) -> None:
    cases = 0
    for model in _random_models():
        for sparsity in (0.0, 0.3, 0.5, 0.9):
            expected, got = pruning.magnitude_masks(model, sparsity, scope=scope), my_masks(model, sparsity)
            for key, mask in expected.items():
                if key not in got or not torch.equal(got[key].float(), mask):
                    zeros = None if key not in got else int((got[key] == 0).sum())
                    _fail(name, f"sizes={models.layer_sizes(model)}, sparsity={sparsity}, mask {key!r}",
                          f"{int((mask == 0).sum())} zeros at the smallest |w|", f"{zeros} zeros (or another pattern)", hint)
            cases += 1
    _passed(name, cases)


def check_layer_masks(my_masks: Callable) -> None:
    """Notebook 02: my_masks(model, sparsity) -> {"i.weight": 0/1 mask}, per-layer magnitude pruning."""
    _check_masks("check_layer_masks", my_masks, "layer",
                 "zero the round(sparsity * n) smallest |w| of each weight matrix; biases are not pruned")


def check_global_masks(my_masks: Callable) -> None:
    """Notebook 02: my_masks(model, sparsity) -> {"i.weight": 0/1 mask}, one threshold over all weights."""
    _check_masks("check_global_masks", my_masks, "global",
                 "take k = round(sparsity * total) over all weights together and one threshold for every layer")


def _random_weights(seed: int = 99) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 32, generator=generator) * s for s in (0.05, 1.0, 30.0)]


def check_quantize_per_channel(my_quantize: Callable) -> None:
    """Notebook 03: my_quantize(w, bits) -> (integer codes, scale of shape (rows, 1)), symmetric per channel."""
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


def check_kd_loss(my_kd_loss: Callable) -> None:
    """Notebook 04: my_kd_loss(student_logits, teacher_logits, targets, temperature, alpha) -> scalar."""
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


def check_soft_targets(my_soft_targets: Callable) -> None:
    """Notebook 04: my_soft_targets(logits, temperature) -> probabilities softened by T (rows sum to 1)."""
    generator = torch.Generator().manual_seed(11)
    cases = 0
    for temperature in (0.5, 1.0, 4.0, 20.0):
        logits = 5 * torch.randn(6, 10, generator=generator)
        expected, got = F.softmax(logits / temperature, dim=1), torch.as_tensor(my_soft_targets(logits, temperature))
        if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-6):
            _fail("check_soft_targets", f"T={temperature}", f"row 0 = {expected[0, :4].tolist()}...",
                  f"row 0 = {got.flatten()[:4].tolist()}...", "softmax(logits / T) along the class dimension")
        cases += 1
    _passed("check_soft_targets", cases)


def check_size_estimate(my_estimate: Callable, *, tolerance: float = 0.25) -> None:
    """Notebook 05: my_estimate(model, bits) must be within `tolerance` of storage.save's bytes for
    pruned, quantized MLPs (a sparse file without entropy coding)."""
    import tempfile

    cases = 0
    generator = torch.Generator().manual_seed(5)
    with tempfile.TemporaryDirectory() as folder:
        for sizes in ([784, 64, 10], [784, 32, 10], [784, 128, 10]):
            model = models.mlp(sizes)
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(torch.randn(p.shape, generator=generator))
            for sparsity, bits in ((0.5, 8), (0.9, 4), (0.95, 2)):
                pruned = pruning.apply_masks(model, pruning.magnitude_masks(model, sparsity, scope="global"))
                quantized = quantization.quantize_model(pruned, bits)
                actual = storage.save(quantized, f"{folder}/m.dcmp")
                estimate = my_estimate(quantized, bits)
                if abs(estimate / actual - 1) > tolerance:
                    _fail("check_size_estimate", f"sizes={models.layer_sizes(model)}, sparsity={sparsity}, bits={bits}",
                          f"{actual:,} bytes (within {tolerance:.0%})", f"{estimate:,.0f} bytes",
                          "codes: nonzeros * bits; positions: the cheaper of 1 bit per weight or 5 bits per nonzero; "
                          "plus 2-byte scales and biases and a header of some hundred bytes")
                cases += 1
    _passed("check_size_estimate", cases)


def check_compression_ratio(my_ratio: Callable) -> None:
    """Notebook 05: my_ratio(reference_bytes, file_bytes) -> how many times smaller the file is."""
    for reference_bytes, file_bytes in ((409_181, 5_966), (1_069_077, 26_514), (100, 100)):
        expected, got = reference_bytes / file_bytes, my_ratio(reference_bytes, file_bytes)
        if abs(got - expected) > 1e-9 * expected:
            _fail("check_compression_ratio", f"reference {reference_bytes:,} bytes, file {file_bytes:,} bytes",
                  f"{expected:.3f}x", f"{got}", "reference bytes divided by file bytes: bigger is smaller")
    _passed("check_compression_ratio", 3)


def _packing_cases() -> list[tuple[torch.Tensor, int]]:
    generator = torch.Generator().manual_seed(6)
    return [(torch.tensor([[1, 2, 3, 15, 0]]), 16), (torch.randint(0, 16, (3, 16), generator=generator), 16),
            (torch.randint(0, 16, (2, 33), generator=generator), 32), (torch.zeros(1, 16, dtype=torch.int64), 16),
            (torch.full((2, 20), 15), 16)]


def check_unpack_4bit(my_unpack: Callable) -> None:
    """Notebook 06: my_unpack(packed, k) -> the (N, k) unsigned codes that onnx_export.pack_4bit packed."""
    cases = _packing_cases()
    for codes, block_size in cases:
        got = torch.as_tensor(my_unpack(onnx_export.pack_4bit(codes, block_size), codes.shape[1]))
        if got.shape != codes.shape or not torch.equal(got.long(), codes.long()):
            _fail("check_unpack_4bit", f"codes of shape {tuple(codes.shape)}, block_size {block_size}",
                  f"{codes.reshape(-1)[:6].tolist()}...", f"shape {tuple(got.shape)}, {got.reshape(-1)[:6].tolist()}...",
                  "low nibble: byte & 15, high nibble: byte >> 4; interleave them, flatten the blocks, cut to k")
    _passed("check_unpack_4bit", len(cases))


def check_pack_4bit(my_pack: Callable) -> None:
    """Notebook 06: my_pack(codes, block_size) -> uint8 (N, blocks, block_size // 2), as onnx_export.pack_4bit."""
    cases = _packing_cases()
    for codes, block_size in cases:
        expected, got = onnx_export.pack_4bit(codes, block_size), my_pack(codes, block_size)
        if getattr(got, "shape", None) != expected.shape or not (torch.as_tensor(got).numpy() == expected).all():
            _fail("check_pack_4bit", f"codes of shape {tuple(codes.shape)}, block_size {block_size}",
                  f"shape {expected.shape}, first bytes {expected.reshape(-1)[:4].tolist()}",
                  f"shape {getattr(got, 'shape', None)}, first bytes {torch.as_tensor(got).reshape(-1)[:4].tolist()}",
                  "pad K to a multiple of block_size with code 8 (weight 0); even code low nibble, odd high")
    _passed("check_pack_4bit", len(cases))
