"""timing: medians after warm-up, restored threads and train/eval mode, an untouched global random stream,
and ratios measured alternately (checked with scripted clocks, not real timings, so nothing is flaky)."""

import pytest
import torch
from torch import nn

from tutorial_utils import models, timing


@pytest.fixture
def model():
    torch.manual_seed(0)
    return models.mlp([16, 8, 4], dropout=0.5)


class Recorder(nn.Module):
    """Identity layer that records, on each call, the thread count, its own mode and the input."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def forward(self, x):
        self.calls.append((torch.get_num_threads(), self.training, x.clone()))
        return x


def test_latency_ms_is_a_positive_float(model):
    """Guards: the result is milliseconds as a plain positive float."""
    ms = timing.latency_ms(model, 4, repeats=3, warmup=1, in_features=16)
    assert type(ms) is float and ms > 0


def test_latency_ms_runs_warmup_plus_repeats_passes_in_eval_with_the_given_threads():
    """Guards: warm-up and timed passes all run, in eval mode, with `threads` set during the measurement."""
    recorder = Recorder()
    model = nn.Sequential(nn.Linear(16, 16), recorder).train()
    timing.latency_ms(model, 3, repeats=4, warmup=2, threads=1, in_features=16)
    assert len(recorder.calls) == 6
    assert all(threads == 1 and not training for threads, training, _ in recorder.calls)
    assert all(x.shape == (3, 16) for *_, x in recorder.calls)


@pytest.mark.parametrize("train", [True, False])
def test_latency_ms_restores_threads_and_mode(model, train):
    """Guards: the thread count and the train/eval mode of every submodule are as before the call."""
    torch.set_num_threads(2)
    model.train(train)
    timing.latency_ms(model, 2, repeats=2, warmup=0, threads=1, in_features=16)
    assert torch.get_num_threads() == 2
    assert all(m.training == train for m in model.modules())


def test_latency_ms_restores_threads_and_mode_when_the_model_fails():
    """Guards: an exception in the forward pass does not leave torch on 1 thread or the model in eval."""
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("bad forward")

    torch.set_num_threads(2)
    model = nn.Sequential(nn.Linear(4, 4), Broken()).train()
    with pytest.raises(RuntimeError, match="bad forward"):
        timing.latency_ms(model, 1, repeats=1, threads=1, in_features=4)
    assert torch.get_num_threads() == 2 and model.training and model[1].training


def test_latency_ms_does_not_touch_the_global_random_stream(model):
    """Guards: timing between two training stages must not shift the data order or initialisation after it."""
    model.train()  # dropout would draw from the global generator if the model were left in train mode
    torch.manual_seed(123)
    timing.latency_ms(model, 8, repeats=2, warmup=1, in_features=16)
    after_call = torch.rand(10)
    torch.manual_seed(123)
    without_call = torch.rand(10)
    assert torch.equal(after_call, without_call)


def test_latency_ms_input_is_the_same_every_time():
    """Guards: the timed input comes from a private seeded generator, so two measurements see the same batch."""
    recorder = Recorder()
    model = nn.Sequential(recorder)
    torch.manual_seed(1)
    timing.latency_ms(model, 2, repeats=1, warmup=0, in_features=5)
    torch.manual_seed(2)
    timing.latency_ms(model, 2, repeats=1, warmup=0, in_features=5)
    expected = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(recorder.calls[0][2], expected) and torch.equal(recorder.calls[1][2], expected)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, r"batch_size=0 must be a positive integer"),
    ({"batch_size": 2.0}, r"batch_size=2.0 must be a positive integer"),
    ({"batch_size": True}, r"batch_size=True must be a positive integer"),
    ({"threads": 0}, r"threads=0 must be a positive integer"),
    ({"threads": 1.5}, r"threads=1.5 must be a positive integer"),
    ({"repeats": 0}, r"repeats=0 must be a positive integer"),
    ({"warmup": -1}, r"warmup=-1 must be a non-negative integer"),
    ({"in_features": 0}, r"in_features=0 must be a positive integer"),
])
def test_latency_ms_refuses_bad_arguments(model, kwargs, message):
    """Guards: bad sizes, threads and repeats are ValueErrors naming the argument, before anything runs."""
    torch.set_num_threads(2)
    arguments = {"batch_size": 1, "repeats": 1, "warmup": 0, "in_features": 16, **kwargs}
    with pytest.raises(ValueError, match=message):
        timing.latency_ms(model, arguments.pop("batch_size"), **arguments)
    assert torch.get_num_threads() == 2


class FakeClock:
    """perf_counter replacement: time only advances when the timed function says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_ms_is_the_median_of_the_timed_calls_after_warmup(monkeypatch):
    """Guards: warm-up calls are not counted and the median (not the mean or the first) is returned."""
    clock = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    durations_s = iter([5.0, 5.0, 0.001, 0.004, 0.002, 0.100, 0.003])  # 2 slow warm-ups, one interrupted call
    calls = []

    def fn():
        calls.append(1)
        clock.now += next(durations_s)

    assert timing.time_ms(fn, repeats=5, warmup=2) == pytest.approx(3.0)
    assert len(calls) == 7


def test_time_ms_refuses_bad_counts():
    """Guards: zero repeats (no median to take) and negative warm-up are ValueErrors."""
    with pytest.raises(ValueError, match="repeats=0 must be a positive integer"):
        timing.time_ms(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup=-2 must be a non-negative integer"):
        timing.time_ms(lambda: None, warmup=-2)


def test_latency_ratio_is_the_median_of_alternating_ratios(monkeypatch):
    """Guards: baseline and candidate are timed alternately and the median of per-round ratios is returned
    (not the ratio of medians, 20/6, nor the mean ratio, 4.4)."""
    baseline, candidate = nn.Linear(2, 2), nn.Linear(2, 2)
    times = {id(baseline): iter([10.0, 30.0, 20.0, 100.0, 12.0]), id(candidate): iter([5.0, 10.0, 4.0, 10.0, 6.0])}
    order, seen = [], []

    def scripted(model, batch_size, *, threads=None, repeats=50):
        order.append("b" if model is baseline else "c")
        seen.append((batch_size, threads, repeats))
        return next(times[id(model)])

    monkeypatch.setattr(timing, "latency_ms", scripted)
    ratio = timing.latency_ratio(baseline, candidate, 64, rounds=5, threads=1, repeats=7)
    assert ratio == pytest.approx(3.0)  # ratios 2, 3, 5, 10, 2
    assert order == ["b", "c"] * 5
    assert set(seen) == {(64, 1, 7)}


def test_latency_ratio_refuses_zero_rounds(model):
    """Guards: rounds=0 would take the median of nothing; it is a ValueError before any timing."""
    with pytest.raises(ValueError, match="rounds=0 must be a positive integer"):
        timing.latency_ratio(model, model, rounds=0)


def test_latency_ratio_refuses_models_on_two_devices(model):
    """A GPU's time over a CPU's is no speed-up of either model (the meta device stands in for a GPU)."""
    elsewhere = models.mlp([784, 8, 10]).to("meta")
    with pytest.raises(ValueError, match="baseline is on cpu but candidate on meta"):
        timing.latency_ratio(model, elsewhere, 8, rounds=1)


def test_peak_gflops_is_measured_once_per_thread_count_and_restores_threads():
    torch.set_num_threads(2)
    first = timing.peak_gflops(threads=1, size=256)
    assert first > 0 and timing.peak_gflops(threads=1, size=256) == first   # cached, not re-measured
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="threads=0"):
        timing.peak_gflops(threads=0)


def test_achieved_gflops_counts_two_operations_per_multiply_add():
    # 1,000 MACs an image, 100 images in 1 ms: 2e5 operations per millisecond = 0.2 GFLOP/s
    assert timing.achieved_gflops(1_000, 1.0, batch_size=100) == pytest.approx(0.2, rel=1e-12)
    assert timing.achieved_gflops(101_632, 0.5, batch_size=256) == pytest.approx(104.071168, rel=1e-12)
    for macs, latency, batch, message in ((0, 1.0, 1, "macs_per_image=0"), (1, 0.0, 1, "latency_ms=0.0"),
                                          (1, float("inf"), 1, "latency_ms=inf"), (1, 1.0, 0, "batch_size=0")):
        with pytest.raises(ValueError, match=message):
            timing.achieved_gflops(macs, latency, batch_size=batch)


def test_side_by_side_takes_each_measurement_once_per_round_in_turn():
    order = []
    values = iter(range(6))

    def measure(name):
        def take():
            order.append(name)
            return next(values)
        return take
    rests = []
    times = timing.side_by_side({"a": measure("a"), "b": measure("b")}, rounds=3, before_each=lambda: rests.append(1))
    assert order == ["a", "b"] * 3 and times == {"a": [0, 2, 4], "b": [1, 3, 5]} and len(rests) == 6
    with pytest.raises(ValueError, match="rounds=0"):
        timing.side_by_side({"a": measure("a")}, rounds=0)


def test_a_model_with_its_own_timer_is_refused_by_name(model):
    class Session(nn.Module):   # like deploy.RuntimeModel: timed here it would count conversions, on other threads
        own_timer = "deploy.latency_ms"

        def forward(self, x):
            return x

    with pytest.raises(TypeError, match=r"model is a Session, which this timer would time wrongly; use deploy.latency_ms"):
        timing.latency_ms(Session(), 1)
    assert timing.latency_ms(model, 1, repeats=2, warmup=0, in_features=16) > 0
