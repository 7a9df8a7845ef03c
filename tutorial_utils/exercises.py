"""Automatic checks for the exercises of notebooks 01 and 02, and the error every check raises.

Each `check_*` function runs the learner's function and the package's reference on hidden cases, edge
cases included (sparsity 0 and 0.99, a batch that does not divide the data, a model left in train mode,
0 or all correct), and raises ExerciseError naming the case, what was expected, what came back, and a
hint. In a notebook the raised error fails the graded cell, so an executed notebook, nbval and nbgrader's
autograder all see whether the exercise is solved. Checks for notebooks 03-05 are in exercises_compress,
06 in exercises_deploy, 07 in exercises_beyond.

Example:
    >>> exercises.check_macs(lambda sizes: 0)          # a wrong answer
    ExerciseError: check_macs: wrong on sizes=[784, 128, 10]
      expected: 101632 ...
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable

import torch

from torch import nn

from tutorial_utils import evaluation, measure, models, pruning, stats


class ExerciseError(AssertionError):
    """An exercise's answer differs from the reference on one case."""


def own_random_stream(check: Callable) -> Callable:
    """Run `check` under torch.random.fork_rng: the seeds it sets (and whatever the learner's function draws)
    leave the notebook's random stream as it was, so a cell after a check draws the same numbers either way."""
    @functools.wraps(check)
    def run(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            return check(*args, **kwargs)
    return run


def own_work(check: str, my_function: Callable, *answers: str) -> Callable:
    """my_function, run with the package's answers to the exercise (`answers`: "module.name" in tutorial_utils),
    under every name the package binds them to, turned into failures of the check that name them: calling
    the reference you are compared with is no solution. Side effect: only while my_function runs."""
    references = {id(getattr(__import__(f"tutorial_utils.{a.split('.')[0]}", fromlist=["_"]), a.split(".")[1])): a
                  for a in answers}
    def refused(answer: str) -> Callable:
        def fail(*args, **kwargs):
            raise ExerciseError(f"{check}: your function calls {answer}, the package's answer that this check compares "
                                f"yours with\n  hint: write the idea itself, from the formula in the notebook")
        return fail

    @functools.wraps(my_function)
    def run(*args, **kwargs):
        bound = [(module, name, value) for module in list(sys.modules.values())
                 if getattr(module, "__name__", "").startswith("tutorial_utils.")
                 for name, value in list(vars(module).items()) if id(value) in references]
        try:
            for module, name, value in bound:
                setattr(module, name, refused(references[id(value)]))
            return my_function(*args, **kwargs)
        finally:
            for module, name, value in bound:
                setattr(module, name, value)
    return run


def _fail(check: str, case: str, expected: object, got: object, hint: str) -> None:
    raise ExerciseError(f"{check}: wrong on {case}\n  expected: {expected}\n  got:      {got}\n  hint: {hint}")


def _number(check: str, case: str, got: object) -> float:
    """got as a float if it is a Python number; otherwise a failure that says so (a 0-d tensor is not one)."""
    if isinstance(got, bool) or not isinstance(got, (float, int)):
        _fail(check, case, "a Python number (float)", f"{type(got).__name__}: {got!r}",
              "return value.item() (or float(value)), not the tensor itself")
    return float(got)


def _passed(check: str, cases: int) -> None:
    print(f"{check}: passed {cases} cases")


def _cases_of_sizes() -> list[list[int]]:
    return [[784, 128, 10], [784, 300, 100, 10], [784, 64, 10], [20, 7, 3], [5, 5], [784, 1200, 1200, 10]]


def check_macs(my_macs: Callable[[list[int]], int]) -> None:
    """Notebook 01: my_macs(sizes) must return the multiply-accumulates of one sample through mlp(sizes)."""
    my_macs = own_work("check_macs", my_macs, "footprint.macs")
    for sizes in _cases_of_sizes():
        expected, got = measure.macs(models.mlp(sizes), in_features=sizes[0]), my_macs(sizes)
        if got != expected:
            _fail("check_macs", f"sizes={sizes}", expected, got, "a Linear n_in -> n_out does n_in * n_out MACs")
    _passed("check_macs", len(_cases_of_sizes()))


def check_parameter_count(my_count: Callable[[list[int]], int]) -> None:
    """Notebook 01: my_count(sizes) must return the number of weights and biases of mlp(sizes)."""
    my_count = own_work("check_parameter_count", my_count, "footprint.count_parameters")
    for sizes in _cases_of_sizes():
        expected, got = measure.count_parameters(models.mlp(sizes)), my_count(sizes)
        if got != expected:
            _fail("check_parameter_count", f"sizes={sizes}", expected, got,
                  "each Linear n_in -> n_out holds n_in * n_out weights and n_out biases")
    _passed("check_parameter_count", len(_cases_of_sizes()))


@own_random_stream
def check_evaluate(my_evaluate: Callable) -> None:
    """Notebook 01: my_evaluate(model, x, y, batch_size) -> accuracy in [0, 1], as evaluation.evaluate.

    Hidden cases: a model with dropout handed over in train mode (the answer must not change from call to
    call), a last batch smaller than the others, a batch larger than the data, one image; mismatched or
    empty x and y must raise ValueError; the model's train/eval mode must be as it was before the call.
    """
    my_evaluate = own_work("check_evaluate", my_evaluate, "evaluation.evaluate")
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 4))
    generator = torch.Generator().manual_seed(3)
    x, y = torch.randn(50, 12, generator=generator), torch.randint(0, 4, (50,), generator=generator)
    y[:45] = evaluation.predict(model, x[:45]).argmax(dim=1)       # right up to image 45; the rest random
    cases = [(x, y, 16, "50 images in batches of 16 (the last has 2)"), (x, y, 50, "one batch of 50"),
             (x, y, 1000, "a batch larger than the data"), (x[:1], y[:1], 8, "one image"),
             (x[40:], y[40:], 3, "10 images, 5 wrong, batches of 3")]
    for inputs, labels, batch_size, name in cases:
        model.train()
        expected = evaluation.evaluate(model, inputs, labels, batch_size=batch_size)
        got = my_evaluate(model, inputs, labels, batch_size)
        if abs(_number("check_evaluate", name, got) - expected) > 1e-6:
            _fail("check_evaluate", name, f"{expected:.4f}", got, "eval mode (dropout off) and no_grad; count "
                  "correct images over every batch, the last smaller one too, and divide by the number of images")
        if not model.training:
            _fail("check_evaluate", name, "the model back in train mode", "left in eval mode",
                  "remember model.training before model.eval() and restore it with model.train(was_training)")
    for inputs, labels, name in ((x, y[:49], "50 images, 49 labels"), (x[:0], y[:0], "no images")):
        try:
            my_evaluate(model, inputs, labels, 16)
        except ValueError:
            continue
        _fail("check_evaluate", name, "ValueError", "no error", "check len(x) == len(y) > 0 first, naming both")
    _passed("check_evaluate", len(cases) + 2)


def check_wilson_interval(my_interval: Callable[[int, int], tuple[float, float]]) -> None:
    """Notebook 01: my_interval(correct, total) -> (low, high), the 95% Wilson interval, as stats.wilson_interval.

    Hidden cases include 0 and all correct (where p +- 1.96 sqrt(p(1-p)/n) collapses to a point), one
    image, and total = 0, which must raise ValueError.
    """
    my_interval = own_work("check_wilson_interval", my_interval, "stats.wilson_interval")
    cases = [(945, 1000), (0, 10), (10, 10), (1, 1), (0, 1), (5, 7), (999, 1000), (500, 1000), (3_700, 4_000)]
    for correct, total in cases:
        expected, got = stats.wilson_interval(correct, total), my_interval(correct, total)
        if len(got) != 2 or any(abs(float(g) - e) > 1e-4 for g, e in zip(got, expected)):   # z = 1.96 passes
            _fail("check_wilson_interval", f"correct={correct}, total={total}", f"({expected[0]:.5f}, {expected[1]:.5f})",
                  got, "z = 1.96; center = (p + z^2/2n) / (1 + z^2/n); half = z / (1 + z^2/n) * "
                  "sqrt(p(1-p)/n + z^2/4n^2)")
    try:
        my_interval(0, 0)
    except ValueError:
        _passed("check_wilson_interval", len(cases) + 1)
        return
    _fail("check_wilson_interval", "correct=0, total=0", "ValueError", "no error", "no images, no interval: raise")


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
    cases, my_masks = 0, own_work(name, my_masks, "pruning.magnitude_masks")
    for model in _random_models():
        for sparsity in (0.0, 0.3, 0.5, 0.9, 0.99):   # 0 keeps all; sparsity 1 is refused by the package
            # the formula's own answer, even where it empties a small layer (the package refuses that by default)
            expected = pruning.magnitude_masks(model, sparsity, scope=scope, allow_empty=True)
            got = my_masks(model, sparsity)
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


def check_csr_bytes(my_csr_bytes: Callable) -> None:
    """Notebook 02: my_csr_bytes(w, index_bytes, value_bytes) -> bytes of w's three CSR arrays.

    CSR keeps the non-zero values, one column index per value and rows + 1 row pointers; the reference
    measures the arrays of torch's own `to_sparse_csr()`. Hidden cases: no zeros, all zeros, one row,
    int32 indices with int8 values.
    """
    my_csr_bytes = own_work("check_csr_bytes", my_csr_bytes, "footprint.csr_bytes")
    generator = torch.Generator().manual_seed(21)
    dense = torch.randn(8, 32, generator=generator)
    cases = [(dense * (torch.rand(8, 32, generator=generator) > s), 8, 4, f"8 x 32 at sparsity {s:.0%}")
             for s in (0.5, 0.9)]
    cases += [(dense, 8, 4, "no zeros"), (torch.zeros(8, 32), 8, 4, "all zeros"),
              (dense[:1] * (dense[:1] > 0), 8, 4, "one row"), (dense * (dense.abs() > 1), 4, 1, "int32 indices, int8 values")]
    for w, index_bytes, value_bytes, name in cases:
        with warnings.catch_warnings():  # "sparse CSR support is in beta": true, and not the point here
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            csr = w.to_sparse_csr()
        expected = (csr.crow_indices().numel() + csr.col_indices().numel()) * index_bytes + csr.values().numel() * value_bytes
        got = my_csr_bytes(w, index_bytes, value_bytes)
        if got != expected:
            _fail("check_csr_bytes", f"{name}, {int((w != 0).sum())} non-zeros, index_bytes={index_bytes}, "
                  f"value_bytes={value_bytes}", f"{expected:,} bytes", got,
                  "values and column indices: one each per non-zero; row pointers: rows + 1 (where each row starts, "
                  "and the end)")
    _passed("check_csr_bytes", len(cases))
