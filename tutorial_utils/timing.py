"""Timing that stays honest: warm-up, repeats, the median, fixed threads, ratios measured side by side.

    latency = median over `repeats` timed calls, after `warmup` untimed ones

The median ignores the rare call that another process interrupted; warm-up pays one-off costs (lazy
initialisation, caches) before timing starts. Timed inputs come from a private random generator, so
measuring a model never changes the global random stream that training draws from.

Example:
    >>> latency_ms(model, batch_size=256, threads=1)   # milliseconds per forward pass
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from tutorial_utils import validate


def time_ms(fn: Callable[[], object], *, repeats: int = 50, warmup: int = 10, sync: bool = False) -> float:
    """Median wall-clock milliseconds of fn() over `repeats` calls, after `warmup` untimed calls.

    With sync=True, CUDA is synchronised around each call so that queued GPU work is counted.
    """
    validate.positive_int("repeats", repeats)
    validate.nonnegative_int("warmup", warmup)
    barrier = torch.cuda.synchronize if sync else (lambda: None)
    times = []
    for i in range(warmup + repeats):
        barrier()
        start = time.perf_counter()
        fn()
        barrier()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


_PEAK_GFLOPS: dict[tuple[int, int], float] = {}


def peak_gflops(*, threads: int | None = None, size: int = 1024) -> float:
    """This CPU's measured float32 peak: GFLOP/s of a (size, size) @ (size, size) matrix product.

        peak = 2 size^3 / median seconds of one product   (a large matmul is as close to peak as torch gets)

    Measured once per (threads, size) in a process and cached; inputs from a private generator.
    Side effect: none lasting (the thread count is restored).
    """
    validate.positive_int("size", size)
    threads = validate.positive_int("threads", threads) if threads is not None else torch.get_num_threads()
    if (threads, size) not in _PEAK_GFLOPS:
        generator = torch.Generator().manual_seed(0)
        a, b = (torch.randn(size, size, generator=generator) for _ in range(2))
        previous = torch.get_num_threads()
        try:
            torch.set_num_threads(threads)
            ms = time_ms(lambda: a @ b, repeats=10, warmup=3)
        finally:
            torch.set_num_threads(previous)
        _PEAK_GFLOPS[threads, size] = 2 * size**3 / (ms / 1e3) / 1e9
    return _PEAK_GFLOPS[threads, size]


def achieved_gflops(macs_per_image: float, latency_ms: float, *, batch_size: int) -> float:
    """The rate a model reached, counting each multiply-add as two operations whatever its type.

        achieved = 2 macs_per_image batch_size / (latency_ms / 1e3) / 1e9   GFLOP/s

    Over `peak_gflops()` it is the one-line roofline share of the measured float32 peak; an int8 kernel can
    pass 100%, since its multiply-add is cheaper than the float32 one the peak counts.
    Example: achieved_gflops(101_632, 0.5, batch_size=256) is about 104 GFLOP/s.
    """
    validate.positive_float("macs_per_image", macs_per_image)
    validate.positive_float("latency_ms", latency_ms)
    validate.positive_int("batch_size", batch_size)
    return 2 * macs_per_image * batch_size / (latency_ms / 1e3) / 1e9


def _device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")  # int8 backends hide their weights: they run on the CPU


def latency_ms(model: nn.Module, batch_size: int = 1, *, repeats: int = 50, warmup: int = 10,
               threads: int | None = None, in_features: int = 784) -> float:
    """Median wall-clock milliseconds of one forward pass on a (batch_size, in_features) input.

    Runs `warmup` untimed passes, then `repeats` timed ones under torch.inference_mode (see time_ms);
    on a GPU it synchronises around each pass. `threads` fixes torch's CPU threads for the measurement
    and restores them after. The input is drawn from a private generator (seed 0): the global random
    stream is untouched. Compare latencies only as ratios measured in one run: a shared machine is noisy.
    A model that names its own timer (`own_timer`, e.g. deploy.RuntimeModel) is refused: timed here, its
    call would include conversions and run on threads `threads` does not set.
    """
    if getattr(model, "own_timer", None):
        raise TypeError(f"model is a {type(model).__name__}, which this timer would time wrongly; use {model.own_timer}")
    validate.positive_int("batch_size", batch_size)
    validate.in_features(model, in_features)
    if threads is not None:
        validate.positive_int("threads", threads)
    device = _device(model)
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch_size, in_features, device=device, generator=generator)  # (batch, 784)
    previous_threads = torch.get_num_threads()
    was_training = model.training
    model.eval()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        with torch.inference_mode():
            return time_ms(lambda: model(x), repeats=repeats, warmup=warmup, sync=device.type == "cuda")
    finally:
        torch.set_num_threads(previous_threads)
        model.train(was_training)


def side_by_side(measurements: dict[str, Callable[[], float]], *, rounds: int = 5,
                 before_each: Callable[[], object] | None = None) -> dict[str, list[float]]:
    """Every measurement taken once per round, in turn, for `rounds` rounds: {name: [one value per round]}.

    Alternating, rather than all of one model's rounds and then the next's, lets a slow drift of a shared
    machine (other jobs, clock changes) touch every entry alike; a ratio taken within a round cancels it.
    `before_each` runs before every measurement (e.g. a pause that lets idle thread pools stop spinning).
    Example: side_by_side({"a": lambda: latency_ms(a), "b": lambda: latency_ms(b)}, rounds=5)
    """
    validate.positive_int("rounds", rounds)
    values: dict[str, list[float]] = {name: [] for name in measurements}
    for _ in range(rounds):
        for name, measure in measurements.items():
            if before_each is not None:
                before_each()
            values[name].append(measure())
    return values


def latency_ratio(baseline: nn.Module, candidate: nn.Module, batch_size: int = 256, *, rounds: int = 5,
                  threads: int | None = None, repeats: int = 50) -> float:
    """How many times faster `candidate` is than `baseline`: median over `rounds` of
    latency_ms(baseline) / latency_ms(candidate), the two measured alternately (side_by_side).

    Alternating cancels slow drifts of a shared machine (other jobs, clock changes) that two
    measurements taken minutes apart would fold into the ratio. Both models must be on one device.
    """
    if _device(baseline) != _device(candidate):
        raise ValueError(f"baseline is on {_device(baseline)} but candidate on {_device(candidate)}: a ratio of "
                         "a GPU's time to a CPU's says nothing about either model; time both on one device")
    times = side_by_side({"baseline": lambda: latency_ms(baseline, batch_size, threads=threads, repeats=repeats),
                          "candidate": lambda: latency_ms(candidate, batch_size, threads=threads, repeats=repeats)},
                         rounds=rounds)
    return statistics.median([b / c for b, c in zip(times["baseline"], times["candidate"])])
