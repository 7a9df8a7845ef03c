import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from tutorial_utils import checkpoints, data, measure, models, pruning, quantization, storage, training


def test_setup_seeds_everything_and_returns_a_device():
    device = training.setup(7)
    a = torch.rand(3)
    training.setup(7)
    assert torch.equal(a, torch.rand(3))
    assert device.type in ("cpu", "cuda")


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": -1}, "seed=-1"), ({"seed": 1.5}, "seed=1.5"), ({"threads": 0}, "threads=0"),
])
def test_setup_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.setup(**kwargs)


def test_evaluate_matches_argmax_accuracy(small_splits):
    model = models.teacher()
    expected = (model(small_splits.x_test).argmax(1) == small_splits.y_test).float().mean().item()
    assert training.evaluate(model, small_splits.x_test, small_splits.y_test) == pytest.approx(expected)
    with pytest.raises(ValueError, match="y holds 3 labels for 200 images"):
        training.evaluate(model, small_splits.x_test, small_splits.y_test[:3])


def test_predict_restores_training_mode():
    model = models.big_teacher()
    model.train()
    x = torch.randn(4, 784)
    first, second = training.predict(model, x), training.predict(model, x)
    torch.testing.assert_close(first, second)  # dropout is off while predicting
    assert model.training


def test_confusion_matrix_counts(small_splits):
    model = models.teacher()
    matrix = training.confusion_matrix(model, small_splits.x_test, small_splits.y_test)
    assert matrix.sum() == len(small_splits.y_test)
    assert torch.equal(matrix.sum(dim=1), torch.bincount(small_splits.y_test, minlength=10))
    accuracy = training.evaluate(model, small_splits.x_test, small_splits.y_test)
    assert matrix.diag().sum().item() / matrix.sum().item() == pytest.approx(accuracy)


def test_fit_learns_and_records_history(small_splits):
    model = models.teacher()
    history = training.fit(model, small_splits, epochs=3, lr=1e-3, batch_size=32, progress=False)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["test_accuracy"] > 0.75
    assert not model.training
    # no gradients left: a freshly trained teacher behaves like one loaded from the cache (notebook 04 checks
    # that a distillation step leaves the teacher's .grad None)
    assert all(p.grad is None for p in model.parameters())


def test_fit_is_deterministic_under_setup(small_splits):
    weights = []
    for _ in range(2):
        training.setup(3)
        model = models.student()
        training.fit(model, small_splits, epochs=2, progress=False)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(*weights)


@pytest.mark.parametrize("weight_decay", [0.0, 0.5])
def test_fit_one_step_equals_a_hand_written_adam_step(small_splits, weight_decay):
    """One step of fit against Adam by hand; weight decay is Adam's coupled L2, weight_decay * w added to the
    gradient, written out here rather than passed as Adam's own argument."""
    training.setup(0)
    model = models.student()
    reference = models.student()
    reference.load_state_dict(model.state_dict())
    one_batch = type(small_splits)(small_splits.x_train[:16], small_splits.y_train[:16],
                                   small_splits.x_test, small_splits.y_test)
    training.fit(model, one_batch, epochs=1, lr=0.01, batch_size=16, weight_decay=weight_decay, progress=False)
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01)
    F.cross_entropy(reference(one_batch.x_train), one_batch.y_train).backward()  # order of rows does not matter
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.grad += weight_decay * parameter
    optimizer.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    if weight_decay:   # the decay did change the step
        training.setup(0)
        undecayed = models.student()
        training.fit(undecayed, one_batch, epochs=1, lr=0.01, batch_size=16, progress=False)
        assert not torch.allclose(undecayed[0].weight, model[0].weight)


def test_fit_uses_the_pluggable_loss(small_splits):
    seen = []

    def loss_fn(logits, batch):
        seen.append((logits.shape, batch.x.shape, batch.index.shape))
        return F.cross_entropy(logits, batch.y)

    training.fit(models.student(), small_splits, epochs=1, batch_size=100, loss_fn=loss_fn, progress=False)
    assert len(seen) == 8 and seen[0] == ((100, 10), (100, 784), (100,))


def test_fit_keeps_masked_weights_at_zero(small_splits):
    model = models.teacher()
    mask = (torch.rand(128, 784) > 0.7).float()
    training.fit(model, small_splits, epochs=2, masks={"0.weight": mask}, progress=False)
    assert torch.all(model[0].weight[mask == 0] == 0)
    assert pruning.sparsity(model) > 0.6


def test_fit_applies_augmentation(small_splits):
    calls = []

    def augment(x, generator):
        calls.append(x.shape)
        return x

    training.fit(models.student(), small_splits, epochs=1, batch_size=400, augment=augment, progress=False)
    assert calls == [(400, 784), (400, 784)]


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs=0"), ({"epochs": -2}, "epochs=-2"), ({"epochs": 1.5}, "epochs=1.5"),
    ({"lr": 0}, "lr=0"), ({"lr": -1e-3}, "lr=-0.001"), ({"lr": float("nan")}, "lr=nan"),
    ({"batch_size": 0}, "batch_size=0"), ({"weight_decay": -1.0}, "weight_decay=-1.0"),
    ({"weight_decay": float("inf")}, "weight_decay=inf"),
    ({"schedule": "linear"}, "schedule='linear'"),
])
def test_fit_rejects_bad_arguments(small_splits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.fit(models.student(), small_splits, **{"epochs": 1, **kwargs})


def test_fit_rejects_masks_that_do_not_fit(small_splits):
    with pytest.raises(ValueError, match=r"masks\['0.weight'\] has shape \(3, 3\)"):
        training.fit(models.student(), small_splits, epochs=1, masks={"0.weight": torch.ones(3, 3)})


def test_progress_prints_one_line_per_epoch(small_splits, capsys):
    training.fit(models.student(), small_splits, epochs=2, progress=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "test" in lines[0]


def test_teacher_cache_round_trip(small_splits, tmp_path):
    first = training.load_or_train_teacher(small_splits, epochs=2, cache_dir=tmp_path)
    files = list(tmp_path.glob("teacher-*.pt"))
    assert len(files) == 1
    state = torch.load(files[0], weights_only=True)
    assert state["meta"]["sizes"] == [784, 128, 10] and state["meta"]["epochs"] == 2
    again = training.load_or_train_teacher(small_splits, epochs=2, cache_dir=tmp_path)
    for a, b in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_teacher_cache_does_not_disturb_callers_rng(small_splits, tmp_path):
    training.setup(5)
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)   # miss: trains
    after_miss = torch.rand(2)
    training.setup(5)
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)   # hit: loads
    assert torch.equal(after_miss, torch.rand(2))


def test_cached_teacher_equals_a_fresh_seeded_run(small_splits, tmp_path):
    cached = training.load_or_train_teacher(small_splits, epochs=2, seed=4, cache_dir=tmp_path)
    training.setup(4)
    fresh = models.teacher()
    training.fit(fresh, small_splits, epochs=2, lr=1e-3, batch_size=32, progress=False)
    for a, b in zip(cached.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


def test_stale_or_corrupt_checkpoints_are_retrained(small_splits, tmp_path):
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    path = next(tmp_path.glob("teacher-*.pt"))
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    assert any("is unreadable" in str(w.message) and "retraining" in str(w.message) for w in caught)
    assert training.evaluate(model, small_splits.x_test, small_splits.y_test) > 0.5
    assert torch.load(path, weights_only=True)["meta"]["epochs"] == 1  # rewritten whole


def test_other_recipes_get_other_files(small_splits, tmp_path):
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    training.load_or_train_teacher(small_splits, epochs=1, lr=2e-3, cache_dir=tmp_path)
    training.load_or_train_teacher(small_splits, preset="student", epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 3
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_cosine_schedule_follows_its_formula(small_splits):
    """Full-batch Adam, so the data order does not matter: fit(schedule="cosine") equals a hand-written loop
    with lr_t = lr * (1 + cos(pi * t / steps)) / 2."""
    lr, epochs = 1e-2, 4
    model = models.student()
    reference = copy.deepcopy(model)
    training.fit(model, small_splits, epochs=epochs, lr=lr, batch_size=len(small_splits.x_train),
                 schedule="cosine", progress=False)
    optimizer = torch.optim.Adam(reference.parameters(), lr=lr)
    for t in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr * (1 + math.cos(math.pi * t / epochs)) / 2
        loss = torch.nn.functional.cross_entropy(reference(small_splits.x_train), small_splits.y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for (name, got), expected in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=name)


def test_cosine_schedule_differs_from_constant(small_splits):
    runs = []
    for schedule in training.SCHEDULES:
        training.setup(0)
        model = models.student()
        training.fit(model, small_splits, epochs=2, lr=1e-2, batch_size=len(small_splits.x_train),
                     schedule=schedule, progress=False)
        runs.append(model[0].weight.detach().clone())
    assert not torch.allclose(*runs)


def test_loading_or_rebuilding_a_model_does_not_change_the_next_training(small_splits, tmp_path):
    """Loading, rebuilding and measuring never draw from the global random stream (issue: a reload
    between two stages changed the second stage's result)."""
    model = models.student()
    storage.save(model, tmp_path / "m.dcmp")

    def second_training(between) -> torch.Tensor:
        training.setup(7)
        between()
        trained = models.student()
        training.fit(trained, small_splits, epochs=1, progress=False)
        return torch.cat([p.detach().flatten() for p in trained.parameters()])

    reference = second_training(lambda: None)
    for between in (lambda: storage.load(tmp_path / "m.dcmp"), lambda: pruning.prune_neurons(model, 0.5),
                    lambda: quantization.prepare_qat(model, 4),
                    lambda: quantization.dequantize_model(quantization.quantize_model(model, 4)),
                    lambda: measure.latency_ms(model, 8, repeats=2, warmup=0)):
        assert torch.equal(second_training(between), reference)


def _flip_a_weight(path) -> None:
    """Change one float of the saved state in place, keeping the zip readable (torch.load does not check CRCs)."""
    state = torch.load(path, weights_only=True)
    target = state["state_dict"]["0.weight"][0, 0].item()
    raw = bytearray(path.read_bytes())
    needle = torch.tensor([target]).numpy().tobytes()
    at = raw.find(needle)
    assert at >= 0
    raw[at + 3] ^= 0x40
    path.write_bytes(bytes(raw))


def _nan_weights_with_a_valid_digest(path) -> None:
    saved = torch.load(path, weights_only=True)
    state = {k: torch.full_like(v, float("nan")) for k, v in saved["state_dict"].items()}
    torch.save({**saved, "state_dict": state, "sha256": checkpoints.state_digest(state)}, path)


def test_corrupt_nan_or_foreign_cache_entries_are_reported_and_retrained(small_splits, tmp_path):
    fresh = training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    path = next(tmp_path.glob("teacher-*.pt"))
    damages = {"corrupt": _flip_a_weight,
               "NaN or infinite": _nan_weights_with_a_valid_digest,
               "another recipe": lambda p: torch.save({**torch.load(p, weights_only=True), "meta": {"preset": "x"}}, p)}
    for reason, damage in damages.items():
        damage(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
        assert any(reason in str(w.message) and "retraining" in str(w.message) for w in caught), reason
        for a, b in zip(fresh.parameters(), again.parameters(), strict=True):
            assert torch.equal(a, b)  # retrained deterministically, not the damaged weights


def test_the_cache_key_holds_the_thread_count_and_names_stay_inside(small_splits, tmp_path):
    torch.set_num_threads(1)
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    torch.set_num_threads(2)
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("teacher-*.pt"))) == 2  # a 2-thread run does not reuse a 1-thread teacher
    sneaky = data.Splits(small_splits.x_train, small_splits.y_train, small_splits.x_test, small_splits.y_test,
                         name="../../escaped")
    training.load_or_train_teacher(sneaky, epochs=1, cache_dir=tmp_path / "inner")
    assert not list(tmp_path.glob("escaped*")) and len(list((tmp_path / "inner").iterdir())) == 1


def test_other_training_code_or_another_dropout_does_not_reuse_old_teachers(small_splits, tmp_path, monkeypatch):
    """Guards: the key holds the source of the code that trains (it once relied on a version number raised
    by hand) and the preset's dropout (a changed rate was served the old teacher)."""
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    sources = []
    real = training.files.source_digest
    monkeypatch.setattr(training.files, "source_digest", lambda modules: sources.append(modules) or real(modules))
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1                     # the same code: served from the cache
    assert {m.__name__ for m in sources[0]} >= {"tutorial_utils.training", "tutorial_utils.data",
                                                "tutorial_utils.models", "tutorial_utils.evaluation"}
    monkeypatch.setattr(training.files, "source_digest", lambda modules: "other code")
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2                     # another key: trained again
    monkeypatch.setitem(models.PRESETS, "teacher", (models.PRESETS["teacher"][0], 0.1))
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 3


def test_the_fingerprint_tells_apart_two_splits_of_the_same_name(splits):
    """Guards: the cache key of a trained model holds a fingerprint of the training data, so a split with the
    name of another but other images (or labels) never reuses its checkpoints."""
    other_images = data.Splits(splits.x_train.flip(0), splits.y_train.flip(0), splits.x_test, splits.y_test,
                               name=splits.name)
    other_labels = data.Splits(splits.x_train, (splits.y_train + 1) % 10, splits.x_test, splits.y_test,
                               name=splits.name)
    prints = {training.fingerprint(s) for s in (splits, other_images, other_labels)}
    assert len(prints) == 3
    same = data.Splits(splits.x_train.clone(), splits.y_train.clone(), splits.x_test[:5], splits.y_test[:5], name="x")
    assert training.fingerprint(same) == training.fingerprint(splits)     # the test split is not in the key


def test_another_kind_of_cpu_does_not_reuse_this_ones_teacher(small_splits, tmp_path, monkeypatch):
    """Guards: a cache folder copied from a laptop with another CPU (other kernels, other float sums) is
    retrained, not served as if this machine had trained it (notebook 01 asserts that it did)."""
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1      # the same machine: served from the cache
    monkeypatch.setattr(training.machine, "float_path", lambda: {"cpu": "another CPU", "isa": ["avx2"],
                                                                 "kernels": "AVX2"})
    training.load_or_train_teacher(small_splits, epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_a_diverging_loss_stops_training_with_its_cause(small_splits):
    # a temperature near 0 made kd_loss NaN on the first step, and the run failed stages later on NaN weights
    def nan_loss(logits, batch):
        return F.cross_entropy(logits, batch.y) * float("nan")

    with pytest.raises(ValueError, match=r"loss nan in epoch 1: training diverged"):
        training.fit(models.student(), small_splits, epochs=1, loss_fn=nan_loss, progress=False)
