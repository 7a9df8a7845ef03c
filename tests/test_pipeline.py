import json
import subprocess
import sys

import pytest

from tutorial_utils import data, models, pipeline, storage, training

FAST = ["--epochs", "2", "--finetune-epochs", "1", "--qat-epochs", "1", "--teacher", "teacher"]


def test_pipeline_writes_every_stage_and_a_reloadable_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert pipeline.main(["--out", str(out), *FAST, "--sparsity", "0.8", "--bits", "4"]) == 0
    rows = json.loads((out / "ledger.json").read_text())["rows"]
    stages = [r["stage"] for r in rows]
    assert stages[0].startswith("reference teacher 784-128-10") and rows[0]["parameters"] == 101_770
    assert any("distilled" in s for s in stages) and any("entropy coding" in s for s in stages)
    final = rows[stages.index(next(s for s in stages if "entropy coding" in s))]
    assert final["bytes"] == (out / "model.dcmp").stat().st_size < rows[0]["bytes"] / 20
    assert final["nonzeros"] < 0.25 * final["parameters"]
    assert all(r["energy_nj"] > 0 for r in rows)
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "ledger.csv").read_text().startswith("stage,accuracy")
    splits = data.load("mnist-5k")
    assert training.evaluate(storage.load(out / "model.dcmp"), splits.x_test, splits.y_test) == final["accuracy"]
    assert "final model" in capsys.readouterr().out
    paired = json.loads((out / "ledger.json").read_text())["notes"]["final_vs_teacher"]   # the README renders it
    assert paired["total"] == len(splits.y_test) and paired["low"] <= paired["diff"] <= paired["high"]
    assert paired["only_a"] - paired["only_b"] == round((final["accuracy"] - rows[0]["accuracy"]) * paired["total"])


def test_pipeline_without_a_teacher(tmp_path):
    assert pipeline.main(["--out", str(tmp_path), *FAST[:-2], "--teacher", "none", "--student", "student"]) == 0
    stages = [r["stage"] for r in json.loads((tmp_path / "ledger.json").read_text())["rows"]]
    assert not any("distilled" in s for s in stages)


def test_pipeline_with_self_distillation_and_a_cosine_schedule(tmp_path, capsys):
    argv = ["--out", str(tmp_path), *FAST[:-2], "--teacher", "self", "--schedule", "cosine", "--weight-decay", "1e-4",
            "--sparsity", "0.9"]
    assert pipeline.main(argv) == 0
    rows = json.loads((tmp_path / "ledger.json").read_text())["rows"]
    stages = [r["stage"] for r in rows]
    assert not any("distilled" in s or "distillation teacher" in s for s in stages)
    assert stages[1] == "student 784-64-10 from scratch (float32)" and len(rows) == 6


@pytest.mark.parametrize("argv, message", [
    (["--sparsity", "1.0"], "argument --sparsity: 1.0 must be a number in [0, 1)"),
    (["--narrow", "1"], "argument --narrow: 1.0 must be a number in [0, 1)"),
    (["--narrow", "-0.5"], "argument --narrow: -0.5 must be a number in [0, 1)"),
    (["--narrow", "0.995"], "narrow=0.995 would remove no unit or every unit of a hidden layer"),
    (["--narrow", "0.005"], "narrow=0.005 would remove no unit or every unit of a hidden layer"),
    (["--bits", "0"], "argument --bits: 0 must be an integer in 1..16"),
    (["--bits", "17"], "argument --bits: 17 must be an integer in 1..16"),
    (["--bits", "4.5"], "argument --bits: '4.5' is not an integer"),
    (["--epochs", "0"], "argument --epochs: 0 must be a positive integer"),
    (["--weight-decay", "-1"], "argument --weight-decay: -1.0 must be a finite number >= 0"),
    (["--weight-decay", "nan"], "argument --weight-decay: nan must be a finite number >= 0"),
    (["--temperature", "0"], "argument --temperature: 0.0 must be a finite number > 0"),
    (["--temperature", "inf"], "argument --temperature: inf must be a finite number > 0"),
    (["--alpha", "2"], "argument --alpha: 2.0 must be a number in [0, 1]"),
    (["--threads", "0"], "argument --threads: 0 must be a positive integer"),
    (["--seed", "-1"], "argument --seed: -1 must be a non-negative integer"),
    (["--bits", "1"], "bits=1 with sparsity > 0 is refused"),
    (["--out", ""], "out='' must name a folder"),
    (["--dataset", "fashion-mnist", "--data-dir", "/no/such/folder"], "does not exist"),
    # options another option makes meaningless were dropped in silence
    (["--seed", "5", "--seeds", "0", "1"], "--seed 5 with --seeds 0 1: give one"),
    (["--teacher", "none", "--temperature", "20"], "--temperature 20.0 with --teacher none: there is no distillation"),
    (["--teacher", "none", "--alpha", "0.1"], "--alpha 0.1 with --teacher none"),
])
def test_pipeline_reports_bad_input_clearly(tmp_path, capsys, argv, message):
    assert pipeline.main(["--out", str(tmp_path / "x"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x" / "ledger.json").exists()


def test_out_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert pipeline.main(["--out", str(blocker)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert pipeline.main(["--out", str(blocker / "sub")]) == 2  # refused before any training, not after
    assert "cannot be written" in capsys.readouterr().err


def test_out_that_cannot_be_replaced_as_a_whole_is_refused_before_training(tmp_path, capsys, monkeypatch):
    # --out . staged inside itself and failed to publish after all the training; a symbolic link was
    # replaced by the new set while the old set stayed where it pointed
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path / "real")
    for out in (".", "..", str(tmp_path / "link")):
        assert pipeline.main(["--out", out]) == 2
        assert "which cannot be replaced as a whole" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"] and not list((tmp_path / "real").iterdir())


def test_module_entry_point_help(capsys):
    result = subprocess.run([sys.executable, "-m", "tutorial_utils", "pipeline", "--help"],
                            capture_output=True, text=True, timeout=120)
    for option in ("--dataset", "--data-dir", "--out", "--teacher", "--student", "--sparsity", "--bits", "--seed"):
        assert option in result.stdout
    from tutorial_utils import __main__ as entry  # the same dispatch, in-process: one torch import is enough
    assert entry.main(["train"]) == 2
    assert "unknown command 'train'" in capsys.readouterr().err


def test_pipeline_deploys_onnx_files_that_compute_the_published_model(tmp_path):
    out = tmp_path / "run"
    assert pipeline.main(["--out", str(out), *FAST, "--seeds", "0", "1", "--deploy", "onnx"]) == 0
    ledger = json.loads((out / "ledger.json").read_text())
    rows = ledger["rows"]
    assert ledger["notes"]["ort_call"] == "direct"                 # how the runtime rows' latencies were taken
    by_stage = {r["stage"]: r for r in rows}
    four_bit, int8 = by_stage["ONNX Runtime 4bit (model.onnx)"], by_stage["ONNX Runtime int8-dynamic (model-int8.onnx)"]
    final = next(r for r in rows if r["stage"].endswith("+ entropy coding"))
    assert four_bit["bytes"] == (out / "model.onnx").stat().st_size and int8["bytes"] == (out / "model-int8.onnx").stat().st_size
    assert four_bit["accuracies"] == final["accuracies"]           # the file's own codes: the same predictions
    assert abs(int8["accuracy"] - final["accuracy"]) <= 0.01
    assert four_bit["latency_ms"] > 0 and four_bit["macs"] == final["macs"]
    # the same float32 multiply-adds as the file's PyTorch model, its weights read packed: less energy
    assert four_bit["energy_nj"] < final["energy_nj"] and four_bit["energy_nj_batch"] < final["energy_nj_batch"]
    pixels = by_stage["ONNX Runtime int8-pixels (model-pixels.onnx)"]     # the codes on the raw image: exact too
    assert pixels["accuracies"] == final["accuracies"] and pixels["bytes"] == (out / "model-pixels.onnx").stat().st_size
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert {"model.onnx", "model-int8.onnx", "model-pixels.onnx"} <= set(json.dumps(manifest).replace('"', " ").split())


def test_pipeline_refuses_deploy_without_onnxruntime(tmp_path, monkeypatch, capsys):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert pipeline.main(["--out", str(tmp_path / "run"), *FAST, "--deploy", "onnx"]) == 2
    assert "pip install -e '.[deploy]'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_pipeline_narrows_the_student_and_can_skip_magnitude_pruning(tmp_path):
    out = tmp_path / "run"
    assert pipeline.main(["--out", str(out), *FAST, "--narrow", "0.5", "--sparsity", "0", "--deploy", "onnx"]) == 0
    rows = json.loads((out / "ledger.json").read_text())["rows"]
    stages = [r["stage"] for r in rows]
    distilled = rows[next(i for i, s in enumerate(stages) if "distilled" in s)]
    narrowed = rows[stages.index("narrowed to 784-32-10 (50% of hidden units removed) + fine-tuned (float32)")]
    assert distilled["macs"] == 784 * 64 + 64 * 10 and narrowed["macs"] == 784 * 32 + 32 * 10
    assert narrowed["bytes"] < 0.55 * distilled["bytes"]
    assert not any(s.startswith("pruned") for s in stages)                  # --sparsity 0: no magnitude stage
    final = next(r for r in rows if r["stage"].endswith("+ entropy coding"))
    assert models.layer_sizes(storage.load(out / "model.dcmp")) == [784, 32, 10] and final["macs"] == narrowed["macs"]
    pixels = next(r for r in rows if r["stage"] == "ONNX Runtime int8-pixels (model-pixels.onnx)")
    assert pixels["accuracy"] == final["accuracy"] and pixels["macs"] == final["macs"]


def test_pipeline_with_one_bit_codes_needs_no_pruning_and_deploys_them_exactly(tmp_path):
    out = tmp_path / "run"
    assert pipeline.main(["--out", str(out), *FAST, "--bits", "1", "--sparsity", "0", "--deploy", "onnx"]) == 0
    rows = {r["stage"]: r for r in json.loads((out / "ledger.json").read_text())["rows"]}
    final = rows["1-bit QAT, sparse file + entropy coding"]
    assert final["nonzeros"] == final["parameters"]                          # +-1 codes: no zero weight
    for name in ("ONNX Runtime 4bit (model.onnx)", "ONNX Runtime int8-pixels (model-pixels.onnx)"):
        assert rows[name]["accuracy"] == final["accuracy"]                   # the codes themselves, exactly
