"""The whole chain as one function: options checked first, outputs published as one set."""

import json
import os
import shutil

import pytest
import torch

from tutorial_utils import files, pipeline, storage, workflow

FAST = dict(epochs=2, finetune_epochs=1, qat_epochs=1, teacher="teacher", threads=1)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One published set, copied by the tests that need an existing output folder."""
    out = tmp_path_factory.mktemp("first") / "run"
    workflow.run(workflow.PipelineConfig(out=str(out), **FAST))
    return out


def copy_of(first_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(first_run, out)
    return out


def test_a_run_publishes_a_complete_verified_set(first_run):
    out, tmp_path = first_run, first_run.parent
    manifest = files.verify_manifest(out)
    assert sorted(manifest["files"]) == ["ledger.csv", "ledger.json", "model.dcmp", "pareto.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    document = json.loads((out / "ledger.json").read_text())
    assert document["rows"][-2]["bytes"] == (out / "model.dcmp").stat().st_size
    assert document["machine"]["training_device"] == "cpu"   # DC_DEVICE=cuda would train other weights


@pytest.mark.parametrize("failing", ["storage.save", "files.publish_folder"])
def test_an_interrupted_run_leaves_the_previous_set_whole(first_run, tmp_path, monkeypatch, failing):
    """Interrupted while writing its files or just before publishing: the old set stays, verified, and no
    staging folder is left."""
    out = copy_of(first_run, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    module, name = failing.split(".")
    original = getattr({"storage": storage, "files": files}[module], name)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr({"storage": storage, "files": files}[module], name, interrupted)
    with pytest.raises(KeyboardInterrupt):
        workflow.run(workflow.PipelineConfig(out=str(out), **{**FAST, "seed": 1}))
    monkeypatch.setattr({"storage": storage, "files": files}[module], name, original)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    files.verify_manifest(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_second_run_replaces_the_set_as_a_whole(first_run, tmp_path):
    out = copy_of(first_run, tmp_path)
    first = files.verify_manifest(out)
    workflow.run(workflow.PipelineConfig(out=str(out), **{**FAST, "seed": 1}))
    second = files.verify_manifest(out)
    assert first["files"]["model.dcmp"]["sha256"] != second["files"]["model.dcmp"]["sha256"]


def test_a_folder_with_other_files_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert pipeline.main(["--out", str(tmp_path)]) == 2
    assert "holds files the pipeline did not write (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_tampered_set_does_not_verify(first_run, tmp_path):
    out = copy_of(first_run, tmp_path)
    (out / "ledger.csv").write_text("stage\n")
    with pytest.raises(ValueError, match="ledger.csv is missing or differs"):
        files.verify_manifest(out)
    (out / files.MANIFEST).unlink()
    with pytest.raises(ValueError, match="not a complete set"):
        files.verify_manifest(out)


def test_bits_one_with_pruning_and_bad_values_are_refused_when_the_config_is_made():
    with pytest.raises(ValueError, match="bits=1 with sparsity > 0 is refused"):
        workflow.PipelineConfig(bits=1)
    workflow.PipelineConfig(bits=1, sparsity=0.0)  # 1 bit without pruning is honest
    for field, value in (("temperature", float("inf")), ("epochs", 2.0), ("threads", 0), ("teacher", "gpt"),
                         ("alpha", -0.1), ("weight_decay", float("nan")), ("out", " ")):
        with pytest.raises(ValueError, match=f"{field}="):
            workflow.PipelineConfig(**{field: value})


def test_the_pipeline_and_the_notebook_05_path_give_the_same_ledger(tmp_path, splits):
    """Notebook 05 calls the same stage functions with the same per-stage seeds, so for one seed its pruned and
    final models equal the pipeline's (accuracy and file bytes), whatever was measured or loaded in between."""
    import copy

    from tutorial_utils import distillation, recipes, training
    config = workflow.PipelineConfig(out=str(tmp_path / "run"), **{**FAST, "seed": 3})
    rows = workflow.run(config).rows
    training.setup(3, threads=1)
    teacher = training.load_or_train_teacher(splits, preset="teacher", epochs=2, seed=3)
    student = distillation.train_student(splits, teacher=teacher, seed=3, config=training.TrainConfig(epochs=2))
    torch.rand(5)  # the notebook measures and prints between stages: the stages must not care
    pruned = copy.deepcopy(student)
    masks = recipes.prune_(pruned, splits, sparsity=0.9, teacher=teacher, config=recipes.FINETUNE.replace(epochs=1),
                           seed=3)
    final = recipes.quantize_aware(pruned, splits, quant=4, teacher=teacher, config=recipes.QAT.replace(epochs=1),
                                   masks=masks, seed=3)
    by_stage = {row["stage"].split(" ")[0]: row for row in rows}
    assert training.evaluate(pruned, splits.x_test, splits.y_test) == by_stage["pruned"]["accuracy"]
    assert training.evaluate(final, splits.x_test, splits.y_test) == rows[-2]["accuracy"]
    assert storage.save(final, tmp_path / "same.dcmp", compress="auto") == rows[-2]["bytes"]


def test_several_seeds_give_mean_and_spread_per_stage(tmp_path, capsys):
    out = tmp_path / "run"
    assert pipeline.main(["--out", str(out), "--epochs", "2", "--finetune-epochs", "1", "--qat-epochs", "1",
                          "--teacher", "teacher", "--threads", "1", "--seeds", "1", "2"]) == 0
    document = json.loads((out / "ledger.json").read_text())
    rows = document["rows"]
    paired = document["notes"]["final_vs_teacher_by_seed"]   # each seed's own test, not the first seed's alone
    assert sorted(paired) == ["1", "2"] and all(test["total"] == 1000 for test in paired.values())
    final = next(row for row in rows if row["stage"].endswith("+ entropy coding"))
    for seed, accuracy, reference in zip(("1", "2"), final["accuracies"], rows[0]["accuracies"]):
        assert paired[seed]["diff"] == pytest.approx(accuracy - reference, abs=1e-6)
    for row in rows:
        assert row["seeds"] == [1, 2] and len(row["accuracies"]) == 2
        assert row["accuracy"] == pytest.approx(sum(row["accuracies"]) / 2)
        assert row["accuracy_std"] >= 0
    assert "over seeds 1, 2:" in capsys.readouterr().out
    files.verify_manifest(out)
    with pytest.raises(ValueError, match="must not repeat a seed"):
        workflow.PipelineConfig(seeds=(1, 1))


def test_hidden_files_that_are_not_ours_are_never_deleted(tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / ".git").mkdir(parents=True)
    (folder / ".env").write_text("SECRET=1")
    assert pipeline.main(["--out", str(folder)]) == 2
    assert "holds files the pipeline did not write (.env, .git)" in capsys.readouterr().err
    assert (folder / ".env").read_text() == "SECRET=1" and (folder / ".git").is_dir()


def test_publishing_puts_the_old_set_back_if_the_new_one_cannot_move_in(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "ledger.csv").write_text("old")
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)  # force the fallback path
    with pytest.raises(FileNotFoundError):
        files.publish_folder(tmp_path / "no-such-stage", out)
    assert (out / "ledger.csv").read_text() == "old"


def test_a_run_gives_back_the_thread_count_and_the_cache_setting(tmp_path, monkeypatch):
    """Guards: a run sets torch's threads (config.threads) and DC_CACHE_DIR (config.cache_dir) for itself; a
    notebook or test that calls it keeps its own settings afterwards."""
    monkeypatch.setenv("DC_CACHE_DIR", str(tmp_path / "mine"))
    torch.set_num_threads(2)
    workflow.run(workflow.PipelineConfig(out=str(tmp_path / "run"), cache_dir=str(tmp_path / "its"), **FAST))
    assert torch.get_num_threads() == 2
    assert os.environ["DC_CACHE_DIR"] == str(tmp_path / "mine")
    assert (tmp_path / "its" / "checkpoints").is_dir()     # the run did use its own cache
