"""Shared fixtures: the bundled data (loaded once) and a fast, deterministic setup."""

import pytest
import torch

from tutorial_utils import data, training


@pytest.fixture(scope="session")
def splits() -> data.Splits:
    return data.load("mnist-5k")


@pytest.fixture(scope="session")
def small_splits(splits: data.Splits) -> data.Splits:
    """800 train / 200 test digits: enough to learn, quick to train."""
    return data.Splits(splits.x_train[:800], splits.y_train[:800], splits.x_test[:200], splits.y_test[:200],
                       name="mnist-5k-small")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    training.setup(0)
    torch.set_num_threads(2)
