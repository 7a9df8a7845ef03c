"""Automatic checks for notebook 05's exercises (the chain): the file's size, the Pareto front, the operating point.

Same contract as `exercises`: hidden cases with edge cases (ties, duplicate points, a single point, no
point at all, a budget that nothing meets), and an ExerciseError naming the case, the expected and the
returned value, and a hint.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import torch

from tutorial_utils import measure, models, pruning, quantization, recipes, storage
from tutorial_utils.exercises import ExerciseError  # noqa: F401  (one error type for every exercise)
from tutorial_utils.exercises import _fail, _passed, own_work


def check_size_estimate(my_estimate: Callable, *, tolerance: float = 0.25) -> None:
    """Notebook 05: my_estimate(model, bits) must be within `tolerance` of storage.save's bytes for
    pruned, quantized MLPs (a sparse file without entropy coding)."""
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


def check_pareto_front(my_front: Callable) -> None:
    """Notebook 05: my_front(points) -> the points no other point beats, in increasing bytes, as measure.pareto_front.

    A point is beaten when another has bytes <= and accuracy >= with one of them strictly better; equal
    points are all kept. Hidden cases: a tie in bytes, a tie in accuracy, duplicates, one point, none.
    """
    my_front = own_work("check_pareto_front", my_front, "measure.pareto_front")
    def points(*pairs: tuple[int, float]) -> list[dict]:
        return [{"stage": chr(97 + i), "bytes": b, "accuracy": a} for i, (b, a) in enumerate(pairs)]

    cases = [(points((4_000, 0.93), (2_000, 0.90), (9_000, 0.95), (5_000, 0.92), (3_000, 0.89)), "a mixed sweep"),
             (points((4_000, 0.93), (4_000, 0.91)), "same bytes: the less accurate one is beaten"),
             (points((3_000, 0.93), (5_000, 0.93)), "same accuracy: the larger file is beaten"),
             (points((3_000, 0.93), (3_000, 0.93), (6_000, 0.90)), "two identical points (both kept)"),
             (points((1_000, 0.5)), "one point"), ([], "no points")]
    for rows, name in cases:
        expected = [r["stage"] for r in measure.pareto_front(rows)] if rows else []
        got = my_front([dict(r) for r in rows])
        got_stages = [r.get("stage") for r in got] if isinstance(got, list) else got
        if got_stages != expected:
            _fail("check_pareto_front", f"{name}: {[(r['bytes'], r['accuracy']) for r in rows]}", expected, got_stages,
                  "keep p unless some q has q.bytes <= p.bytes and q.accuracy >= p.accuracy and differs in one; "
                  "sort the kept points by bytes")
    _passed("check_pareto_front", len(cases))


def check_operating_point(my_choose: Callable) -> None:
    """Notebook 05: my_choose(points, max_bytes, min_accuracy) -> the chosen point, as recipes.choose.

    Among points with bytes <= max_bytes and val_accuracy >= min_accuracy: the highest val_accuracy,
    then the fewest bytes; None if no point qualifies; max_bytes <= 0 raises ValueError. Points also
    carry a test "accuracy", which must not decide anything.
    """
    my_choose = own_work("check_operating_point", my_choose, "recipes.choose")
    points = [{"stage": "a", "bytes": 9_000, "val_accuracy": 0.95, "accuracy": 0.93},
              {"stage": "b", "bytes": 5_000, "val_accuracy": 0.94, "accuracy": 0.96},
              {"stage": "c", "bytes": 4_000, "val_accuracy": 0.94, "accuracy": 0.92},
              {"stage": "d", "bytes": 2_000, "val_accuracy": 0.90, "accuracy": 0.95},
              {"stage": "e", "bytes": 12_000, "val_accuracy": 0.97, "accuracy": 0.97}]
    cases = [(10_000, 0.0, "10,000 bytes"), (6_000, 0.0, "6,000 bytes: a tie at 94% (fewer bytes wins)"),
             (3_000, 0.0, "3,000 bytes"), (3_000, 0.92, "3,000 bytes and at least 92%: nothing qualifies"),
             (100_000, 0.96, "any size, at least 96%"), (1_000, 0.0, "below every file: nothing qualifies"),
             (9_000, 0.95, "both limits met exactly")]
    for max_bytes, min_accuracy, name in cases:
        expected = recipes.choose(points, max_bytes=max_bytes, min_accuracy=min_accuracy)
        got = my_choose([dict(p) for p in points], max_bytes, min_accuracy)
        if (got or {}).get("stage") != (expected or {}).get("stage"):
            _fail("check_operating_point", name, expected and expected["stage"], got and got.get("stage", got),
                  "filter by bytes <= max_bytes and val_accuracy >= min_accuracy, then the best val_accuracy, "
                  "ties to the smaller file; never look at the test accuracy; None when nothing qualifies")
    try:
        my_choose(points, 0, 0.0)
    except ValueError:
        _passed("check_operating_point", len(cases) + 1)
        return
    _fail("check_operating_point", "max_bytes=0", "ValueError", "no error", "a budget of 0 bytes is a mistake: raise")
