"""chain: five models per seed, built once and loaded back with the same predictions."""

import pytest
import torch

from tutorial_utils import chain, models, pruning, quantization, recipes, training


def test_built_once_then_loaded_with_identical_predictions(small_splits, tmp_path, monkeypatch):
    training.setup(0)
    teacher = models.mlp([784, 32, 10])
    built = chain.build(small_splits, teacher, seed=3, epochs=1, folder=tmp_path)
    assert tuple(built) == chain.STAGES and len(list(tmp_path.iterdir())) == 5
    assert pruning.sparsity(built["pruned"]) > 0.85 and pruning.sparsity(built["final"]) > 0.85
    assert isinstance(built["final"][0], quantization.QuantizedLinear) and built["qat"][0].bits == 4

    def no_training(*args, **kwargs):
        raise AssertionError("the chain was trained again instead of loaded")

    monkeypatch.setattr(chain, "_train", no_training)
    loaded = chain.build(small_splits, teacher, seed=3, epochs=1, folder=tmp_path)
    for stage in chain.STAGES:
        assert torch.equal(loaded[stage](small_splits.x_test), built[stage](small_splits.x_test))
    assert not loaded["final"].training


def test_asking_for_one_stage_trains_only_what_it_starts_from_and_gives_the_same_model(small_splits, tmp_path,
                                                                                     monkeypatch):
    training.setup(0)
    teacher = models.mlp([784, 32, 10])
    trained = []
    train = chain._train
    monkeypatch.setattr(chain, "_train", lambda stage, *args: trained.append(stage) or train(stage, *args))
    final = chain.build(small_splits, teacher, seed=2, epochs=1, stages=("final",), folder=tmp_path / "one")
    assert tuple(final) == ("final",) and trained == ["final", "pruned", "distilled"]   # no scratch, no qat
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "one").iterdir()) == ["distilled", "final", "pruned"]
    trained.clear()
    more = chain.build(small_splits, teacher, seed=2, epochs=1, stages=("qat", "final"), folder=tmp_path / "one")
    assert trained == ["qat"]                                                  # distilled loaded, final loaded
    whole = chain.build(small_splits, teacher, seed=2, epochs=1, folder=tmp_path / "all")
    for name, model in (("final", final["final"]), ("qat", more["qat"]), ("final", more["final"])):
        assert torch.equal(model(small_splits.x_test), whole[name](small_splits.x_test))


def test_the_final_stage_from_a_pruned_model_loaded_from_its_file_is_the_same(small_splits, tmp_path):
    training.setup(0)
    teacher = models.mlp([784, 32, 10])
    chain.build(small_splits, teacher, seed=5, epochs=1, stages=("pruned",), folder=tmp_path / "two")
    final = chain.build(small_splits, teacher, seed=5, epochs=1, stages=("final",), folder=tmp_path / "two")["final"]
    whole = chain.build(small_splits, teacher, seed=5, epochs=1, stages=("final",), folder=tmp_path / "one")["final"]
    assert torch.equal(final(small_splits.x_test), whole(small_splits.x_test))


def test_one_bit_codes_with_the_final_stage_are_refused_before_any_training(small_splits, tmp_path, monkeypatch):
    monkeypatch.setattr(chain, "_train", lambda *args: pytest.fail("trained before refusing"))
    with pytest.raises(ValueError, match="bits=1 with the 'final' stage"):
        chain.build(small_splits, models.mlp([784, 8, 10]), bits=1, folder=tmp_path)


@pytest.mark.parametrize("stages", [(), "final", ("final", "final"), ("teacher",)])
def test_stages_must_be_distinct_names_of_the_chain(small_splits, tmp_path, stages):
    with pytest.raises(ValueError, match="stages="):
        chain.build(small_splits, models.mlp([784, 8, 10]), stages=stages, folder=tmp_path)


def test_another_teacher_or_seed_is_another_file(small_splits, tmp_path):
    training.setup(0)
    teacher = models.mlp([784, 32, 10])
    chain.build(small_splits, teacher, seed=0, epochs=1, folder=tmp_path)
    other = models.mlp([784, 32, 10])
    chain.build(small_splits, other, seed=0, epochs=1, folder=tmp_path)
    assert len(list(tmp_path.iterdir())) == 10


def test_the_stage_budgets_are_part_of_the_key_and_give_the_recipes_models(small_splits, tmp_path):
    training.setup(0)
    teacher = models.mlp([784, 32, 10])
    short = training.TrainConfig(epochs=1)
    built = chain.build(small_splits, teacher, seed=1, epochs=1, finetune=short, qat=short.replace(lr=5e-4),
                        folder=tmp_path)
    assert len(list(tmp_path.iterdir())) == 5
    # the same final model as compressing the chain's distilled student with the same budgets and seed
    final = recipes.compress(built["distilled"], small_splits, sparsity=0.9, quant=4, teacher=teacher, finetune=short,
                             qat=short.replace(lr=5e-4), seed=1)
    assert torch.equal(final(small_splits.x_test), built["final"](small_splits.x_test))
    chain.build(small_splits, teacher, seed=1, epochs=1, folder=tmp_path)      # the default budgets: other files
    assert len(list(tmp_path.iterdir())) == 10



def test_cached_trains_once_per_recipe_and_source_then_loads(small_splits, tmp_path):
    teacher, calls = models.mlp([784, 32, 10]), []

    def train(*, seed: int, epochs: int) -> torch.nn.Module:
        calls.append((seed, epochs))
        training.setup(seed)
        return recipes.quantize_aware(models.mlp([784, 8, 10]), small_splits, quant=4,
                                      config=training.TrainConfig(epochs=epochs))

    first = chain.cached(train, small_splits, teacher, name="labels", seed=0, epochs=1, folder=tmp_path)
    again = chain.cached(train, small_splits, teacher, name="labels", seed=0, epochs=1, folder=tmp_path)
    assert calls == [(0, 1)]                                                # loaded, not trained, the second time
    assert torch.equal(again(small_splits.x_test), first(small_splits.x_test))
    chain.cached(train, small_splits, teacher, name="labels", seed=1, epochs=1, folder=tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.iterdir())) == 2          # another argument: another file

    def edited(*, seed: int, epochs: int) -> torch.nn.Module:               # same name and arguments, other code
        calls.append((seed, epochs))
        return train(seed=seed, epochs=epochs)

    chain.cached(edited, small_splits, teacher, name="labels", seed=0, epochs=1, folder=tmp_path)
    assert len(calls) == 4 and len(list(tmp_path.iterdir())) == 3          # trained again, into a third file


def test_cached_refuses_what_it_cannot_key(small_splits, tmp_path):
    teacher = models.mlp([784, 32, 10])
    with pytest.raises(TypeError, match="train must be a function"):
        chain.cached(None, small_splits, teacher, name="x", folder=tmp_path)
    with pytest.raises(ValueError, match="source code cannot be read"):
        chain.cached(eval("lambda: None"), small_splits, teacher, name="x", folder=tmp_path)


def test_cached_keys_every_argument_by_value_even_names_the_key_uses_itself(small_splits, tmp_path):
    teacher, calls = models.mlp([784, 32, 10]), []

    def train(*, threads: int, source: str, config: training.TrainConfig) -> torch.nn.Module:
        calls.append((threads, source, config))
        return models.mlp([784, 4, 10])

    for threads, config in ((1, training.TrainConfig()), (2, training.TrainConfig()), (1, training.TrainConfig(lr=0.5))):
        chain.cached(train, small_splits, teacher, name="named", threads=threads, source="x", config=config,
                     folder=tmp_path)
    assert len(calls) == 3 and len(list(tmp_path.iterdir())) == 3          # three recipes, three files
    with pytest.raises(ValueError, match="config is a object, whose repr cannot key a cache"):
        chain.cached(train, small_splits, teacher, name="named", threads=1, source="x", config=object(),
                     folder=tmp_path)
    # reprs that look complete but are not: two tensors that differ in one hidden element, two models
    assert repr(torch.zeros(5000)) == repr(torch.zeros(5000).index_fill(0, torch.tensor([2500]), 1.0))
    for value in (torch.zeros(5000), models.mlp([4, 3, 2]), (1, torch.zeros(3))):
        with pytest.raises(ValueError, match="whose repr cannot key a cache"):
            chain.cached(train, small_splits, teacher, name="named", threads=1, source="x", config=value,
                         folder=tmp_path)
    assert len(calls) == 3


def test_a_corrupt_stage_file_is_said_and_trained_again(small_splits, tmp_path):
    """Guards: a truncated cache file used to be retrained in silence, as if it were simply missing; now the
    reason is a warning (as training.load_or_train_teacher does), and the rebuilt model is the same."""
    training.setup(0)
    teacher = models.mlp([784, 32, 10])
    first = chain.build(small_splits, teacher, seed=4, epochs=1, stages=("distilled",), folder=tmp_path)["distilled"]
    (path,) = tmp_path.iterdir()
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match="retraining it"):
        again = chain.build(small_splits, teacher, seed=4, epochs=1, stages=("distilled",), folder=tmp_path)
    assert torch.equal(first(small_splits.x_test), again["distilled"](small_splits.x_test))
