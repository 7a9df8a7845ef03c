import dataclasses
import os

import pytest
import torch

from tutorial_utils import chain, distillation, files, teachers, training


def test_recipes_are_the_notebooks_teachers(small_splits):
    recipes = teachers.recipes(small_splits, epochs=3)
    assert recipes["784-128-10"] == (small_splits, {"epochs": 3})
    assert recipes["784-1200-1200-10"][1] == distillation.BIG_TEACHER_RECIPE
    held_out, recipe = recipes["784-1200-1200-10, held-out split"]
    assert held_out.name == small_splits.holdout(500).name and len(held_out.x_train) == len(small_splits.x_train) - 500
    assert recipes["784-1200-1200-10, no shifted inputs"][1]["max_shift"] == 0
    with pytest.raises(ValueError, match="epochs=0"):
        teachers.recipes(small_splits, epochs=0)


def test_cache_all_trains_with_the_given_threads_and_restores_them(small_splits, monkeypatch, tmp_path):
    calls = []

    def fake(split, **recipe):
        calls.append((split.name, recipe, torch.get_num_threads()))
        return torch.nn.Linear(1, 1)

    monkeypatch.setattr(training, "load_or_train_teacher", fake)
    torch.set_num_threads(2)
    models = teachers.cache_all(small_splits, seed=3, threads=1, cache_dir=tmp_path)
    assert list(models) == list(teachers.NOTEBOOK_TEACHERS) and len(calls) == 3 and torch.get_num_threads() == 2
    assert all(threads == 1 and recipe["seed"] == 3 and recipe["cache_dir"] == tmp_path for _, recipe, threads in calls)


def test_cache_all_refuses_an_unknown_name(small_splits):
    with pytest.raises(ValueError, match="names='teacher'"):
        teachers.cache_all(small_splits, names=("teacher",))


def test_the_command_refuses_bad_values_with_one_line_and_status_2(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("DC_THREADS", raising=False)
    for argv, message in ((["--threads", "0"], "argument --threads: 0 must be a positive integer"),
                          # the chain uses seed + 1 and seed + 2: a seed at the top of the range failed after training
                          (["--seed", "4294967295"], "argument --seed: 4294967295 must be an integer in 0..4294967293")):
        with pytest.raises(SystemExit) as exited:
            teachers.main(argv)
        assert exited.value.code == 2 and message in capsys.readouterr().err
    # an error after parsing (here a missing data folder) is one line too, not a traceback
    monkeypatch.setenv("DC_CACHE_DIR", str(tmp_path / "cache"))
    assert teachers.main(["--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("error: root=")
    (tmp_path / "empty").mkdir()     # offline, a folder without the IDX files: the first row of WORKSHOP's errors
    assert teachers.main(["--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "empty")]) == 2
    assert "has no train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_sweep_parser_has_the_sweeps_defaults_and_refuses_bad_values(capsys):
    args = teachers.sweep_parser("a sweep").parse_args([])
    assert (args.threads, args.seeds, args.epochs, args.json) == (2, [0, 1, 2, 3, 4], 15, None)
    for bad in (["--threads", "0"], ["--seeds", "-1"], ["--epochs", "0"]):
        with pytest.raises(SystemExit):
            teachers.sweep_parser("a sweep").parse_args(bad)
        assert bad[1] in capsys.readouterr().err


def test_held_out_start_gives_the_sweeps_split_and_the_teacher_that_never_saw_it(monkeypatch):
    calls = []

    def fake(split, **recipe):
        calls.append((split.name, len(split.x_train), recipe))
        return torch.nn.Linear(1, 1)

    monkeypatch.setattr(training, "load_or_train_teacher", fake)
    args = teachers.sweep_parser("test").parse_args(["--threads", "1", "--epochs", "3"])
    threads = torch.get_num_threads()
    try:
        holdout, teacher = teachers.held_out_start(args)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)     # the rest of the test session keeps its thread count
    assert len(holdout.x_test) == teachers.HOLDOUT_IMAGES and holdout.name.endswith("holdout500")
    (name, trained_on, recipe), = calls     # one teacher: the big one, on the same split's training part
    assert name == holdout.name and trained_on == len(holdout.x_train) and recipe["seed"] == 0
    assert {k: recipe[k] for k in distillation.BIG_TEACHER_RECIPE} == distillation.BIG_TEACHER_RECIPE
    assert isinstance(teacher, torch.nn.Linear)


def test_cache_chain_builds_the_notebooks_seeds_with_their_budgets_and_threads(small_splits, monkeypatch):
    calls = []
    monkeypatch.setattr(chain, "build", lambda splits, teacher, **kw: calls.append((kw, torch.get_num_threads())))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        teachers.cache_chain(small_splits, torch.nn.Linear(1, 1), seed=4, threads=1, epochs=3)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)       # the rest of the test session keeps its thread count
    assert [kw for kw, _ in calls] == [{"seed": s, "epochs": 3} for s in (4, 5, 6)]   # chain.build's default budgets
    assert all(threads == 1 for _, threads in calls)


def test_the_command_fills_the_cache_the_notebooks_read(small_splits, monkeypatch, tmp_path):
    """--cache-dir is the cache's root, as DC_CACHE_DIR: the teachers go to its checkpoints/ and the chain's
    models to its chain/, where the notebooks (DC_CACHE_DIR) and the pipeline (--cache-dir) look."""
    monkeypatch.setenv("DC_CACHE_DIR", str(tmp_path / "elsewhere"))     # restored after the test
    seen = {}

    def fake_cache_all(splits, **kw):
        seen["teachers"] = (kw.get("cache_dir"), files.cache_dir("checkpoints"))
        return {"784-1200-1200-10": torch.nn.Linear(1, 1)}

    monkeypatch.setattr(teachers, "cache_all", fake_cache_all)
    monkeypatch.setattr(teachers, "cache_chain", lambda splits, teacher, **kw: seen.update(chain=(kw, files.cache_dir("chain"))))
    monkeypatch.setattr(teachers.data, "load", lambda name, root=None: small_splits)
    assert teachers.main(["--cache-dir", str(tmp_path / "room"), "--seed", "2", "--threads", "1"]) == 0
    assert seen["teachers"] == (None, tmp_path / "room" / "checkpoints")
    assert seen["chain"] == ({"seed": 2, "threads": 1, "epochs": 15}, tmp_path / "room" / "chain")
    assert os.environ["DC_CACHE_DIR"] == str(tmp_path / "room")
    monkeypatch.setenv("HOME", str(tmp_path))
    teachers.main(["--cache-dir", "~/dc"])                          # as the shell would expand it
    assert seen["chain"][1] == tmp_path / "dc" / "chain"


def test_the_command_refuses_an_empty_cache_dir(capsys):
    with pytest.raises(SystemExit):
        teachers.main(["--cache-dir", ""])
    assert "--cache-dir=''" in capsys.readouterr().err


def test_the_command_trains_on_the_notebooks_device(small_splits, monkeypatch, capsys):
    """Guards: the device is part of the teachers' cache key, and the notebooks train on the CPU unless
    DC_DEVICE=cuda asks for the GPU (training.setup): the command follows them by default, so a GPU laptop's
    preparation is not cached for a device no notebook uses; --device cuda without a GPU is refused by name."""
    seen = []

    def fake_cache_all(splits, **kw):
        seen.append(kw["device"])
        return {"784-1200-1200-10": torch.nn.Linear(1, 1)}

    monkeypatch.setattr(teachers, "cache_all", fake_cache_all)
    monkeypatch.setattr(teachers, "cache_chain", lambda splits, teacher, **kw: None)
    monkeypatch.setattr(teachers.data, "load", lambda name, root=None: small_splits)
    monkeypatch.setattr(teachers.torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("DC_DEVICE", raising=False)
    assert teachers.main([]) == 0 and seen == ["cpu"]   # a visible GPU alone changes nothing
    monkeypatch.setenv("DC_DEVICE", "cuda")
    assert teachers.main([]) == 0 and teachers.main(["--device", "cpu"]) == 0
    assert seen == ["cpu", "cuda", "cpu"]
    monkeypatch.delenv("DC_DEVICE")
    monkeypatch.setattr(teachers.torch.cuda, "is_available", lambda: False)
    assert teachers.main([]) == 0 and seen[-1] == "cpu"
    with pytest.raises(SystemExit):
        teachers.main(["--device", "cuda"])
    assert "--device='cuda': PyTorch sees no CUDA GPU" in capsys.readouterr().err


def test_the_command_follows_the_notebooks_environment(small_splits, monkeypatch, capsys):
    """Guards: the notebooks read DC_DATASET, DC_SEED, DC_THREADS, DC_EPOCHS; a room that sets them and then
    prepares with no options gets the cache its notebooks read. Options still win; a bad variable is an
    error naming it, before any training."""
    seen = {}

    def fake_prepare(splits, **kw):
        seen.update(kw, dataset=splits.name)

    monkeypatch.setattr(teachers, "prepare", fake_prepare)
    monkeypatch.setattr(teachers.data, "load", lambda name, root=None: dataclasses.replace(
        small_splits, name=f"{name}@{root}"))
    monkeypatch.setenv("DC_SEED", "3")
    monkeypatch.setenv("DC_THREADS", "1")
    monkeypatch.setenv("DC_EPOCHS", "4")
    monkeypatch.setenv("DC_DATASET", "fashion-mnist")
    monkeypatch.setenv("DC_DATA_DIR", "/data/fm")
    assert teachers.main(["--device", "cpu"]) == 0
    assert (seen["seed"], seen["threads"], seen["epochs"], seen["dataset"]) == (3, 1, 4, "fashion-mnist@/data/fm")
    assert teachers.main(["--device", "cpu", "--seed", "0", "--threads", "2"]) == 0
    assert (seen["seed"], seen["threads"]) == (0, 2)
    monkeypatch.setenv("DC_THREADS", "0")
    with pytest.raises(SystemExit):
        teachers.main([])
    assert "environment variable DC_THREADS='0'" in capsys.readouterr().err


def test_ci_and_the_timing_script_prepare_with_the_notebooks_settings(small_splits, monkeypatch):
    """Guards: conftest.py and scripts/notebooks.py prepare through prepare_for_notebooks, one reading of the
    notebooks' DC_* variables and device (on a GPU machine the device is part of the teachers' key)."""
    seen = {}
    monkeypatch.setattr(teachers, "prepare", lambda splits, **kw: seen.update(kw, dataset=splits.name))
    monkeypatch.setattr(teachers.data, "load", lambda name, root=None: dataclasses.replace(small_splits, name=name))
    monkeypatch.setenv("DC_SEED", "2")
    monkeypatch.setenv("DC_THREADS", "1")
    monkeypatch.delenv("DC_DATASET", raising=False)
    monkeypatch.delenv("DC_EPOCHS", raising=False)
    monkeypatch.setattr(teachers.torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("DC_DEVICE", "cuda")
    settings = teachers.prepare_for_notebooks()
    assert settings["threads"] == 1 and seen == {"seed": 2, "threads": 1, "epochs": 15, "device": "cuda",
                                                 "progress": False, "dataset": "mnist-5k"}
