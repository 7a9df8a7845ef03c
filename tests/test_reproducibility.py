"""Two runs with the same seed and threads give identical ledger numbers (timings aside)."""

import json

from tutorial_utils import pipeline

DETERMINISTIC = ("stage", "accuracy", "parameters", "nonzeros", "bytes", "macs", "energy_nj")


def test_two_pipeline_runs_with_the_same_seed_give_identical_ledgers(tmp_path):
    ledgers = []
    for run in ("a", "b"):
        out = tmp_path / run
        argv = ["--out", str(out), "--epochs", "2", "--finetune-epochs", "1", "--qat-epochs", "1",
                "--teacher", "teacher", "--seed", "3"]
        assert pipeline.main(argv) == 0
        rows = json.loads((out / "ledger.json").read_text())["rows"]
        ledgers.append([{k: row[k] for k in DETERMINISTIC} for row in rows])
    assert ledgers[0] == ledgers[1]
    assert (tmp_path / "a" / "model.dcmp").read_bytes() == (tmp_path / "b" / "model.dcmp").read_bytes()
