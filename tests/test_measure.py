import json
import os

import pytest
import torch

from tutorial_utils import measure, models, pruning


def test_parameters_and_nonzeros():
    model = models.teacher()
    assert measure.count_parameters(model) == sum(p.numel() for p in model.parameters()) == 101_770
    assert measure.count_nonzeros(model) == 101_770
    mask = torch.zeros(128, 784)
    mask[:, :392] = 1
    pruning.apply_masks_(model, {"0.weight": mask})
    assert measure.count_nonzeros(model) == 101_770 - 128 * 392
    assert measure.count_parameters(model) == 101_770  # masked weights are still stored


def test_storage_bytes_is_the_size_of_a_real_file(tmp_path):
    model = models.teacher()
    path = tmp_path / "teacher.pt"
    written = measure.storage_bytes(model, path)
    assert written == os.path.getsize(path)
    assert written == measure.storage_bytes(model)
    assert 4 * 101_770 < written < 4 * 101_770 + 5_000
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["0.weight"], model[0].weight)


@pytest.mark.parametrize("build, expected", [
    (models.teacher, 784 * 128 + 128 * 10),
    (models.lenet_300_100, 784 * 300 + 300 * 100 + 100 * 10),
    (models.big_teacher, 784 * 1200 + 1200 * 1200 + 1200 * 10),
])
def test_macs_match_hand_count(build, expected):
    assert measure.macs(build()) == expected


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


def test_quantized_layers_count_their_weights():
    from tutorial_utils import quantization

    model = quantization.quantize_model(models.teacher(), 2)
    assert measure.count_parameters(model) == 101_770
    assert measure.count_nonzeros(model) < 101_770  # a 2-bit grid sends many weights to 0


def test_energy_estimate_follows_the_formula():
    from tutorial_utils import quantization

    teacher = models.teacher()
    estimate = measure.energy_estimate(teacher)
    assert estimate["compute_pj"] == pytest.approx(101_632 * (3.7 + 0.9))
    assert estimate["weights_pj"] == pytest.approx(101_632 * 640)          # 406 KB: from DRAM
    assert estimate["activations_pj"] == pytest.approx((784 + 128 + 128 + 10) * 5)
    assert "estimate" in estimate["assumptions"] and "DRAM" in estimate["assumptions"]
    small = measure.energy_estimate(quantization.quantize_model(teacher, 4), weight_bytes=6_000)
    assert small["compute_pj"] == pytest.approx(101_632 * (0.2 + 0.03))
    assert small["weights_pj"] == pytest.approx(6_000 / 4 * 5)            # fits on chip: SRAM
    assert small["total_nj"] < estimate["total_nj"] / 100


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
