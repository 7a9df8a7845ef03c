"""Benchmark harnesses: the same model on several runtimes and batch sizes, timed side by side in one run.

A latency table is only meaningful as ratios measured in the same run on the same machine: every
row here times the float32 model and each backend back to back, with fixed threads (see `timing`).

Example:
    >>> rows = int8_latency_table(model, batch_sizes=(1, 256), backends=("legacy",), threads=1)
    >>> rows[1]["fp32"] / rows[1]["legacy"]      # how many times faster int8 is at batch 256
"""

from __future__ import annotations

import warnings

from torch import nn

from tutorial_utils import int8, timing, validate


def int8_latency_table(model: nn.Module, *, batch_sizes: tuple[int, ...] = (1, 64, 1024),
                       backends: tuple[str, ...] = ("torchao", "legacy"), threads: int | None = None,
                       repeats: int = 100) -> list[dict]:
    """Median latency (ms) of the float model and of each int8 backend at each batch size, in one run.

    Returns rows {"batch_size", "fp32", <backend>: ms, ...}; a backend that cannot run here is
    reported as its error message instead of a time.
    """
    for batch_size in batch_sizes:
        validate.positive_int("batch_sizes[i]", batch_size)
    for backend in backends:
        validate.choice("backends[i]", backend, int8.BACKENDS)
    with warnings.catch_warnings(), int8.quiet_torch_logs():  # compile chatter is not a result
        warnings.simplefilter("ignore")
        fast: dict[str, nn.Module | str] = {}
        for backend in backends:
            try:
                fast[backend] = int8.to_backend(model, backend)
            except Exception as exc:  # a missing compiler or package must not stop the comparison
                fast[backend] = f"unavailable ({type(exc).__name__})"
        rows = []
        for batch_size in batch_sizes:
            row = {"batch_size": batch_size,
                   "fp32": timing.latency_ms(model, batch_size, threads=threads, repeats=repeats)}
            for backend, candidate in fast.items():
                row[backend] = candidate if isinstance(candidate, str) else timing.latency_ms(
                    candidate, batch_size, threads=threads, repeats=repeats)
            rows.append(row)
    return rows
