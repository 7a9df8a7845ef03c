"""Shared fixtures: the bundled data (loaded once), a fast deterministic setup, and a temporary cache.

The cache ($DC_CACHE_DIR) points at a fresh temporary folder for the whole session, set before any test
or notebook kernel starts (kernels inherit the environment), so nothing is written into the source tree
or the user's own cache. Set DC_TEST_CACHE_DIR to reuse a folder across runs (faster locally).
"""

import os
import shutil
import tempfile

import pytest
import torch

_TEMPORARY = None
if os.environ.get("DC_TEST_CACHE_DIR"):
    os.environ["DC_CACHE_DIR"] = os.environ["DC_TEST_CACHE_DIR"]
else:
    _TEMPORARY = tempfile.mkdtemp(prefix="dc-test-cache-")
    os.environ["DC_CACHE_DIR"] = _TEMPORARY

from tutorial_utils import data, training  # noqa: E402  (after the cache is configured)


def pytest_sessionfinish(session, exitstatus):
    if _TEMPORARY is not None:
        shutil.rmtree(_TEMPORARY, ignore_errors=True)


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
