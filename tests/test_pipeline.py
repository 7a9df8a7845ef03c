import json
import subprocess
import sys

from tutorial_utils import pipeline


def test_pipeline_writes_ledger_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert pipeline.main(["--out", str(out), "--epochs", "2", "--finetune-epochs", "1", "--sparsity", "0.8"]) == 0
    rows = json.loads((out / "ledger.json").read_text())
    assert rows[0]["stage"] == "teacher (teacher)" and rows[0]["parameters"] == 101_770
    assert rows[1]["nonzeros"] < 0.25 * rows[1]["parameters"] and rows[1]["bytes"] == rows[0]["bytes"]
    assert rows[2]["bytes"] == (out / "pruned.dcmp").stat().st_size < rows[0]["bytes"] / 3
    assert rows[3]["parameters"] == 50_890
    assert (out / "ledger.csv").read_text().startswith("stage,accuracy")
    assert "teacher (teacher)" in capsys.readouterr().out


def test_pipeline_reports_bad_input_clearly(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert pipeline.main(["--out", str(blocker)]) == 2
    assert "--out=" in capsys.readouterr().err
    assert pipeline.main(["--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert pipeline.main(["--epochs", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--epochs=0" in capsys.readouterr().err
    assert pipeline.main(["--sparsity", "1.0", "--out", str(tmp_path / "x")]) == 2
    assert "--sparsity=1.0" in capsys.readouterr().err


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "tutorial_utils", "pipeline", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--dataset" in result.stdout and "--out" in result.stdout
    result = subprocess.run([sys.executable, "-m", "tutorial_utils", "train"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "unknown command 'train'" in result.stderr
