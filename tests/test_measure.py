import json
import time

import pytest
import torch

from tutorial_utils import measure, models


def test_latency_is_positive_and_restores_threads():
    threads = torch.get_num_threads()
    ms = measure.latency_ms(models.teacher(), 8, repeats=5, warmup=1, threads=1)
    assert ms > 0 and torch.get_num_threads() == threads


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size=0"), ({"repeats": 0}, "repeats=0"), ({"warmup": -1}, "warmup=-1"),
])
def test_latency_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        measure.latency_ms(models.teacher(), **kwargs)


def test_ledger_rows_table_and_files(small_splits, tmp_path):
    ledger = measure.Ledger(latency_batch_size=16)
    row = ledger.measure("teacher", models.teacher(), small_splits, note="untrained")
    ledger.add("by hand", accuracy=0.5, bytes=10)
    assert row["parameters"] == 101_770 and row["macs"] == 101_632 and row["note"] == "untrained"
    assert 0 <= row["accuracy"] <= 1 and row["latency_ms"] > 0
    text = str(ledger)
    assert "teacher" in text and "101,770" in text and "note" in text
    assert "<table>" in ledger._repr_html_()
    ledger.to_csv(tmp_path / "ledger.csv")
    ledger.to_json(tmp_path / "ledger.json")
    lines = (tmp_path / "ledger.csv").read_text().splitlines()
    assert lines[0].startswith("stage,accuracy,parameters") and len(lines) == 3
    assert measure.Ledger.from_json(tmp_path / "ledger.json").rows == json.loads(json.dumps(ledger.rows))
    ledger.notes["finding"] = {"p_value": 0.5}   # what is no stage's row travels in the same file
    ledger.to_json(tmp_path / "ledger.json")
    assert measure.Ledger.from_json(tmp_path / "ledger.json").notes == {"finding": {"p_value": 0.5}}


def test_ledger_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="stage=''"):
        measure.Ledger().add("")
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a ledger"):
        measure.Ledger.from_json(tmp_path / "bad.json")


def test_time_ms_measures_the_median_of_calls():
    calls = []
    ms = measure.time_ms(lambda: calls.append(1), repeats=7, warmup=3)
    assert len(calls) == 10 and ms >= 0
    with pytest.raises(ValueError, match="repeats=0"):
        measure.time_ms(lambda: None, repeats=0)


TICK = 2**-10  # seconds; a power of two, so clock differences and their conversion to ms are exact


@pytest.mark.parametrize("warmup_ticks, timed_ticks, median_ticks", [
    ([500, 500, 500], [3, 1, 2, 900, 4], 3),   # odd repeats: the middle value
    ([500, 500], [5, 1, 700, 2], 3.5),         # even repeats: the mean of the two middle values
])
def test_time_ms_is_the_exact_median_of_the_timed_calls(monkeypatch, warmup_ticks, timed_ticks, median_ticks):
    """A fake clock that moves only inside fn(): each call lasts exactly its scripted duration.

    The slow warm-up calls would shift the median if they were timed, and the outlier would drag a mean,
    so only the median of the timed calls gives the expected value.
    """
    now = 100.0
    durations = iter(warmup_ticks + timed_ticks)

    def fn():
        nonlocal now
        now += next(durations) * TICK

    monkeypatch.setattr(time, "perf_counter", lambda: now)
    ms = measure.time_ms(fn, repeats=len(timed_ticks), warmup=len(warmup_ticks))
    assert next(durations, None) is None  # every scripted call ran, and no more
    assert ms == median_ticks * 1000 * TICK


def test_ledger_shows_its_machine_record_peak_and_energy_at_two_batch_sizes(small_splits):
    ledger = measure.Ledger(latency_batch_size=64, repeats=3, threads=1)
    row = ledger.measure("teacher", models.teacher(), small_splits)
    assert 0 < row["of_peak"] < 5 and ledger.machine["peak_gflops"] > 0
    assert row["energy_nj_batch"] < row["energy_nj"]
    text = str(ledger)
    assert "machine:" in text and "GFLOP/s" in text and "batch 64" in text and "of_peak" in text
    assert "machine:" in ledger._repr_html_()
    ledger.add("busy row", busy="load 9.0 while timing")
    assert "WARNING: machine busy" in str(ledger) and "busy row" in str(ledger).splitlines()[3]


def test_ledger_takes_given_values_instead_of_measuring(small_splits):
    ledger = measure.Ledger(latency_batch_size=8, repeats=3)
    row = ledger.measure("given", models.teacher(), small_splits, parameters=7, macs=1, note="x")
    assert row["parameters"] == 7 and row["macs"] == 1 and row["note"] == "x" and row["energy_nj"] > 0
    with pytest.raises(ValueError, match="latency_batch_size=0"):
        measure.Ledger(latency_batch_size=0)


def test_latency_ratio_sees_a_wider_model_as_slower():
    narrow, wide = models.mlp([784, 16, 10]), models.mlp([784, 1024, 10])
    assert measure.latency_ratio(wide, narrow, 64, rounds=3, repeats=10) > 1.5
    with pytest.raises(ValueError, match="rounds=0"):
        measure.latency_ratio(wide, narrow, rounds=0)


def test_pareto_front_keeps_exactly_the_undominated_rows():
    """Checked against a brute-force definition on hand-made rows: ties kept, dominated rows dropped."""
    rows = [{"stage": "a", "bytes": 100, "accuracy": 0.90}, {"stage": "b", "bytes": 50, "accuracy": 0.90},
            {"stage": "c", "bytes": 200, "accuracy": 0.95}, {"stage": "d", "bytes": 50, "accuracy": 0.85},
            {"stage": "e", "bytes": 200, "accuracy": 0.95}, {"stage": "f", "bytes": 300, "accuracy": 0.94}]
    front = measure.pareto_front(rows)
    assert [r["stage"] for r in front] == ["b", "c", "e"]  # a: b is smaller at equal accuracy; d, f dominated
    brute = [r for r in rows if not any(o["bytes"] <= r["bytes"] and o["accuracy"] >= r["accuracy"]
                                        and (o["bytes"], o["accuracy"]) != (r["bytes"], r["accuracy"]) for o in rows)]
    assert sorted(r["stage"] for r in front) == sorted(r["stage"] for r in brute)
    by_latency = measure.pareto_front([{"stage": "x", "latency_ms": 2.0, "accuracy": 0.9},
                                       {"stage": "y", "latency_ms": 1.0, "accuracy": 0.8}], x="latency_ms")
    assert [r["stage"] for r in by_latency] == ["y", "x"]


def test_pareto_front_refuses_rows_without_numbers():
    with pytest.raises(ValueError, match="row 'a' has accuracy=nan"):
        measure.pareto_front([{"stage": "a", "bytes": 1, "accuracy": float("nan")}])
    with pytest.raises(ValueError, match="has bytes=None"):
        measure.pareto_front([{"stage": "a", "accuracy": 0.5}])


def test_ledger_json_stays_valid_with_nan(tmp_path):
    """JSON has no NaN: a NaN accuracy is written as null, and the file parses with a strict reader."""
    ledger = measure.Ledger()
    ledger.add("broken", accuracy=float("nan"), bytes=10)
    ledger.to_json(tmp_path / "ledger.json")
    text = (tmp_path / "ledger.json").read_text()
    rows = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))["rows"]
    assert rows[0]["accuracy"] is None


def test_ledger_json_carries_the_machine_record(tmp_path):
    ledger = measure.Ledger(threads=1)
    ledger.add("x", accuracy=0.5)
    ledger.to_json(tmp_path / "ledger.json")
    document = json.loads((tmp_path / "ledger.json").read_text())
    for key in ("cpu", "isa", "cores", "threads", "torch", "torchao", "load_before", "load_after"):
        assert key in document["machine"], key
    assert document["machine"]["threads"] == 1
    loaded = measure.Ledger.from_json(tmp_path / "ledger.json")
    assert loaded.machine["cpu"] == document["machine"]["cpu"]
    assert loaded.threads == 1    # a row measured into it is timed at the threads of its other rows


def test_a_busy_machine_is_flagged_beside_the_latency(monkeypatch, splits):
    from tutorial_utils import machine
    monkeypatch.setattr(machine, "usable_cores", lambda: 2)   # 7.5 runnable is busy for 2 cores, not for 16
    monkeypatch.setattr(machine, "load_average", lambda: 7.5)
    ledger = measure.Ledger(threads=1, repeats=2)
    row = ledger.measure("student", models.student(), splits)
    assert row["busy"] == "load 7.5 while timing"
    monkeypatch.setattr(machine, "load_average", lambda: 0.2)
    assert "busy" not in ledger.measure("student", models.student(), splits)


def test_beyond_accuracy_columns_are_added_only_when_asked(small_splits):
    from tutorial_utils import calibration, privacy, robustness, training
    model = models.mlp([784, 16, 10])
    ledger = measure.Ledger(repeats=2)
    plain = ledger.measure("plain", model, small_splits)
    assert not {"robust_accuracy", "ece", "mia_auc"} & set(plain)
    row = ledger.measure("beyond", model, small_splits, beyond=("robust_accuracy", "ece", "mia_auc"))
    x, y = small_splits.x_test, small_splits.y_test
    assert row["robust_accuracy"] == robustness.robust_accuracy(model, x, y, epsilon=measure.ROBUST_EPSILON)
    assert row["ece"] == calibration.expected_calibration_error(training.predict(model, x), y)
    assert row["mia_auc"] == privacy.membership_auc(privacy.per_image_loss(model, small_splits.x_train, small_splits.y_train),
                                         privacy.per_image_loss(model, x, y))
    assert "mia_auc" in str(ledger)
    with pytest.raises(ValueError, match="beyond='psnr'"):
        ledger.measure("bad", model, small_splits, beyond=("psnr",))
