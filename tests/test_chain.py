"""chain: five models per seed, built once and loaded back with the same predictions."""

import torch

from tutorial_utils import chain, models, pruning, quantization, training


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


def test_another_teacher_or_seed_is_another_file(small_splits, tmp_path):
    training.setup(0)
    teacher = models.mlp([784, 32, 10])
    chain.build(small_splits, teacher, seed=0, epochs=1, folder=tmp_path)
    other = models.mlp([784, 32, 10])
    chain.build(small_splits, other, seed=0, epochs=1, folder=tmp_path)
    assert len(list(tmp_path.iterdir())) == 10
