"""benchmarks: the int8 latency table has one row per batch size with a time per runtime, reports a backend
that cannot run instead of failing, and refuses bad arguments before any work."""

import copy
import logging

import pytest
import torch

from tutorial_utils import benchmarks, int8, models


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return models.student()


def test_table_times_the_models_in_alternating_rounds_and_keeps_the_median(student, monkeypatch):
    calls = []
    seconds = iter([3.0, 1.0, 4.0, 2.0, 20.0, 1.5])           # fp32, legacy, fp32, legacy, fp32, legacy

    def fake_latency_ms(model, batch_size, **kwargs):
        calls.append("fp32" if model is student else "legacy")
        return next(seconds)
    monkeypatch.setattr(benchmarks.timing, "latency_ms", fake_latency_ms)
    (row,) = benchmarks.int8_latency_table(student, batch_sizes=(8,), backends=("legacy",), rounds=3)
    assert calls == ["fp32", "legacy"] * 3                     # side by side, not one model's repeats then the next's
    assert row == {"batch_size": 8, "fp32": 4.0, "legacy": 1.5}      # medians (fp32's mean would be 9)
    with pytest.raises(ValueError, match="rounds=0"):
        benchmarks.int8_latency_table(student, rounds=0)


def test_table_has_positive_times_for_fp32_and_legacy(student):
    """Guards: every row holds its batch size and positive float milliseconds for fp32 and the int8 backend."""
    before = copy.deepcopy(student.state_dict())
    torch.set_num_threads(2)
    rows = benchmarks.int8_latency_table(student, batch_sizes=(1, 4), backends=("legacy",), repeats=2, threads=1)
    assert [row["batch_size"] for row in rows] == [1, 4]
    for row in rows:
        assert set(row) == {"batch_size", "fp32", "legacy"}
        for key in ("fp32", "legacy"):
            assert type(row[key]) is float and row[key] > 0
    assert torch.get_num_threads() == 2  # threads=1 was for the measurement only
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())  # the float model is not changed


def test_a_backend_that_cannot_run_is_reported_not_raised(student, monkeypatch):
    """Guards: a missing package or compiler for one backend must not stop the comparison of the others."""
    real = int8.to_backend

    def to_backend(model, backend="torchao"):
        if backend == "torchao":
            raise RuntimeError("backend='torchao' needs torchao")
        return real(model, backend)

    monkeypatch.setattr(int8, "to_backend", to_backend)
    (row,) = benchmarks.int8_latency_table(student, batch_sizes=(2,), backends=("torchao", "legacy"), repeats=1,
                                          threads=1)
    assert row["torchao"] == "unavailable (RuntimeError)"
    assert isinstance(row["legacy"], float) and row["legacy"] > 0 and row["fp32"] > 0


def test_torch_log_level_is_restored(student):
    """Guards: silencing torch's compile chatter during the table does not leave the logger silenced."""
    logger = logging.getLogger("torch")
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        benchmarks.int8_latency_table(student, batch_sizes=(1,), backends=("legacy",), repeats=1, threads=1)
        assert logger.level == logging.INFO
    finally:
        logger.setLevel(previous)


@pytest.mark.parametrize("kwargs, message", [
    ({"backends": ("onnx",)}, r"backends\[0\]='onnx' must be one of \('torchao', 'torchao\+compile', 'legacy'\)"),
    ({"backends": ("legacy", "LEGACY")}, r"backends\[1\]='LEGACY' must be one of"),
    ({"batch_sizes": (1, 0)}, r"batch_sizes\[1\]=0 must be a positive integer"),
    ({"batch_sizes": (2.0,)}, r"batch_sizes\[0\]=2.0 must be a positive integer"),
])
def test_bad_arguments_are_clear_valueerrors_before_any_work(student, monkeypatch, kwargs, message):
    """Guards: an unknown backend or a batch size of 0 is refused before any conversion or timing runs."""
    def must_not_run(*args, **kw):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(int8, "to_backend", must_not_run)
    monkeypatch.setattr(benchmarks.timing, "latency_ms", must_not_run)
    arguments = {"batch_sizes": (1,), "backends": ("legacy",), "repeats": 1, "threads": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        benchmarks.int8_latency_table(student, **arguments)


def test_every_int8_backend_name_is_accepted(student, monkeypatch):
    """Guards: the table accepts exactly the names int8 knows (one list): each is tried, none refused."""
    def unavailable(model, backend="torchao"):
        raise RuntimeError(f"{backend} not here")

    monkeypatch.setattr(int8, "to_backend", unavailable)
    monkeypatch.setattr(benchmarks.timing, "latency_ms", lambda *args, **kwargs: 1.0)
    (row,) = benchmarks.int8_latency_table(student, batch_sizes=(3,), backends=int8.BACKENDS, repeats=1)
    assert row == {"batch_size": 3, "fp32": 1.0, **{name: "unavailable (RuntimeError)" for name in int8.BACKENDS}}


def _deploy_document(speedups: list[float], model_accuracy: list[float], onnx_bytes: int) -> dict:
    row = {"speedup": sorted(speedups)[len(speedups) // 2], "speedups": speedups}
    name = "narrow, ONNX Runtime int8-pixels"
    return {"accuracy": {"teacher, PyTorch eager float32": [0.94, 0.95, 0.96], name: model_accuracy},
            "bytes": {name: onnx_bytes, "narrow, .dcmp file": 1000},
            "latency": {f"threads {t}, batch {b}": {name: row} for t in (1, 2) for b in (1, 256)}}


def test_deploy_targets_names_each_miss_and_nothing_when_all_are_met():
    met = benchmarks.deploy_targets(_deploy_document([5.1, 6.0, 7.0], [0.945, 0.95, 0.955], 1500), "narrow")
    for slowest, text in ((4.96, "4.96x"), (4.9999, "4.99x"), (4.94, "4.9x")):   # never "5.0x" for a miss
        near = benchmarks.deploy_targets(_deploy_document([slowest, 6.0, 7.0], [0.945, 0.95, 0.955], 1500), "narrow")
        assert near["misses"][0] == f"threads 1, batch 1 ({text})"
    assert met["misses"] == [] and met["slowest"]["threads 1, batch 1"] == 5.1
    assert abs(met["gap_points"]) < 1e-9 and met["bytes_ratio"] == 1.5            # the limits themselves pass
    missed = benchmarks.deploy_targets(_deploy_document([4.9, 6.0, 7.0], [0.94, 0.94, 0.95], 1600), "narrow")
    assert missed["misses"] == [f"threads {t}, batch {b} (4.9x)" for t in (1, 2) for b in (1, 256)] + [
        "accuracy (-0.67 points)", "bytes (1.60x its .dcmp file)"]     # one slow pass is enough to miss
    with pytest.raises(ValueError, match="model='final'"):
        benchmarks.deploy_targets(_deploy_document([6.0], [0.95], 1000), "final")
    # the same file timed another way: its own latency rows, the file's accuracy and bytes
    both = _deploy_document([6.0, 6.0, 6.0], [0.95, 0.95, 0.95], 1000)
    for rows in both["latency"].values():
        rows["narrow, ONNX Runtime int8-pixels, Python wrapper"] = {"speedup": 4.5, "speedups": [4.5, 6.0, 6.0]}
    assert benchmarks.deploy_targets(both, "narrow")["misses"] == []
    assert benchmarks.deploy_targets(both, "narrow", timed=", Python wrapper")["misses"][0] == "threads 1, batch 1 (4.5x)"
    with pytest.raises(ValueError, match="timed=', C API'"):
        benchmarks.deploy_targets(both, "narrow", timed=", C API")


def test_a_compiler_that_fails_on_the_first_call_is_reported_not_raised(student, monkeypatch):
    """Guards: torch.compile is lazy, so a laptop without a C++ compiler fails on the compiled model's first
    call; that call happens inside int8.to_backend, so the table reports it instead of stopping the cell."""
    def lazy_compile(model, **kwargs):
        def call(x):
            raise OSError("no C++ compiler found (cl.exe)")
        return call

    monkeypatch.setattr(int8.torch, "compile", lazy_compile)
    with pytest.raises(RuntimeError, match=r"backend='torchao\+compile' could not compile here \(OSError: no C\+\+"):
        int8.to_backend(student, "torchao+compile")
    (row,) = benchmarks.int8_latency_table(student, batch_sizes=(2,), backends=("torchao+compile", "legacy"),
                                          repeats=1, threads=1)
    assert row["torchao+compile"] == "unavailable (RuntimeError)" and isinstance(row["legacy"], float)
