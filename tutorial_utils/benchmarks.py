"""Benchmark harnesses: the same model on several runtimes and batch sizes, timed side by side in one run.

A latency table is only meaningful as ratios measured in the same run on the same machine: every
row here times the float32 model and each backend back to back, with fixed threads (see `timing`).

`deploy_targets` checks a deployment benchmark's result (scripts/bench_deploy.py) against the targets a
deployed model must reach.

Example:
    >>> rows = int8_latency_table(model, batch_sizes=(1, 256), backends=("legacy",), threads=1)
    >>> rows[1]["fp32"] / rows[1]["legacy"]      # how many times faster int8 is at batch 256
    >>> deploy_targets(json.load(open("results/deploy.json")), "narrow")["misses"]    # [] when all are met
"""

from __future__ import annotations

import functools
import math
import statistics
import warnings

import torch
from torch import nn

from tutorial_utils import int8, timing, validate


def int8_latency_table(model: nn.Module, *, batch_sizes: tuple[int, ...] = (1, 64, 1024),
                       backends: tuple[str, ...] = ("torchao", "legacy"), threads: int | None = None,
                       repeats: int = 100, rounds: int = 5) -> list[dict]:
    """Latency (ms) of the float model and of each int8 backend at each batch size, side by side.

    At each batch size the float model and every backend are timed side by side (timing.side_by_side,
    `rounds` rounds); each entry is the median over rounds. Returns rows
    {"batch_size", "fp32", <backend>: ms, ...}; a backend that cannot run here is reported as its error
    message instead of a time. The backends are built at `threads` threads too: torch.compile's code keeps
    the thread count it was compiled with.
    """
    validate.positive_int("rounds", rounds)
    for i, batch_size in enumerate(batch_sizes):
        validate.positive_int(f"batch_sizes[{i}]", batch_size)
    for i, backend in enumerate(backends):
        validate.choice(f"backends[{i}]", backend, int8.BACKENDS)
    with warnings.catch_warnings(), int8.quiet_torch_logs():  # compile chatter is not a result
        warnings.simplefilter("ignore")
        fast: dict[str, nn.Module | str] = {}
        previous = torch.get_num_threads()
        torch.set_num_threads(threads or previous)   # compiled code keeps the thread count it was built with
        try:
            for backend in backends:
                try:
                    fast[backend] = int8.to_backend(model, backend)
                except Exception as exc:  # a missing compiler or package must not stop the comparison
                    fast[backend] = f"unavailable ({type(exc).__name__})"
        finally:
            torch.set_num_threads(previous)
        runnable = {"fp32": model, **{b: m for b, m in fast.items() if not isinstance(m, str)}}
        rows = []
        for batch_size in batch_sizes:
            times = timing.side_by_side({name: functools.partial(timing.latency_ms, candidate, batch_size,
                                                                 threads=threads, repeats=repeats)
                                         for name, candidate in runnable.items()}, rounds=rounds)
            medians = {name: float(statistics.median(values)) for name, values in times.items()}
            rows.append({"batch_size": batch_size, "fp32": medians["fp32"],
                         **{b: m if isinstance(m, str) else medians[b] for b, m in fast.items()}})
    return rows


# What a deployed model must reach against the 784-128-10 teacher in PyTorch eager float32: this speed-up in
# every pass at batch 1 and 256 and at every thread count measured, accuracy within these points (mean over
# seeds), and an ONNX file at most this many times its compact .dcmp file.
TARGET_SPEEDUP, TARGET_POINTS, TARGET_BYTES_RATIO = 5.0, 0.5, 1.5


def miss_text(value: float, target: float) -> str:
    """value (< target) to one decimal, or cut (not rounded) to two where one would reach the target:
    4.94 -> '4.9', 4.96 -> '4.96', 4.999 -> '4.99'; never '5.0' for a miss of 5."""
    one = f"{value:.1f}"
    return one if float(one) < target else f"{math.floor(value * 100) / 100:.2f}"


def deploy_targets(document: dict, model: str, *, kind: str = "int8-pixels", timed: str = "") -> dict:
    """`model`'s `kind` deployment ("final" or "narrow" in a bench_deploy result) against the targets above.

    timed: the suffix of the latency rows to judge, "" for the file timed by the runtime's own call or
    ", Python wrapper" for the same file timed through onnxruntime's Python method (same accuracy, bytes).
    Returns {"slowest": {setting: the slowest pass's speed-up}, "gap_points": mean accuracy minus the
    teacher's, "bytes_ratio": ONNX bytes / .dcmp bytes, "misses": what falls short, in words ([] if none)}.
    """
    name = f"{model}, ONNX Runtime {kind}"
    if name not in document["accuracy"] or f"{name}{timed}" not in document["latency"]["threads 1, batch 1"]:
        raise ValueError(f"model={model!r}, kind={kind!r}, timed={timed!r}: the result has no row {name + timed!r}")
    teacher = document["accuracy"]["teacher, PyTorch eager float32"]
    slowest = {setting: min(rows[name + timed].get("speedups") or [rows[name + timed]["speedup"]])
               for setting, rows in document["latency"].items()}
    gap = 100 * (sum(document["accuracy"][name]) - sum(teacher)) / len(teacher)
    ratio = document["bytes"][name] / document["bytes"][f"{model}, .dcmp file"]
    misses = [f"{setting} ({miss_text(value, TARGET_SPEEDUP)}x)" for setting, value in slowest.items()
              if value < TARGET_SPEEDUP]
    misses += [f"accuracy ({gap:+.2f} points)"] if gap < -TARGET_POINTS else []
    misses += [f"bytes ({ratio:.2f}x its .dcmp file)"] if ratio > TARGET_BYTES_RATIO else []
    return {"slowest": slowest, "gap_points": gap, "bytes_ratio": ratio, "misses": misses}
