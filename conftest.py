"""Shared fixtures: the bundled data (loaded once), a fast deterministic setup, a temporary cache, and the
teachers (and the chain's shared models) cached before the first notebook that needs them.

The cache ($DC_CACHE_DIR) points at a fresh temporary folder for the whole session, set before any test
or notebook kernel starts (kernels inherit the environment), so nothing is written into the source tree
or the user's own cache. Set DC_TEST_CACHE_DIR to reuse a folder across runs (faster locally).
Like `python -m tutorial_utils teachers` before a class, the teachers and the chain's shared models are
trained once, with the notebooks' DC_* settings, so each notebook's run time is its lesson's and not a
one-off training. Each notebook is executed once per session: nbval runs them, except notebook 06 when the
autograde test (which executes it with its solutions) runs too.
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


_TEACHERS_CACHED = False


def pytest_configure(config):
    config.addinivalue_line("markers", "teachers: runs notebooks in a kernel of its own (nbgrader), so the "
                                       "teachers are prepared first, as for the notebooks")


def pytest_runtest_setup(item):
    global _TEACHERS_CACHED
    if _TEACHERS_CACHED:
        return
    needs = item.get_closest_marker("teachers") is not None or (
        item.path.suffix == ".ipynb" and "BIG_TEACHER_RECIPE" in item.path.read_text())
    if not needs:
        return
    from tutorial_utils import teachers

    _TEACHERS_CACHED = True
    teachers.prepare_for_notebooks()


# tests/test_classroom.py autogrades this notebook with its solutions in nbgrader's own kernel and asserts
# that no cell fails: the check nbval makes, so nbval does not execute it a second time in that session.
AUTOGRADED_NOTEBOOK, AUTOGRADE_TEST = "06_deploy.ipynb", "test_autograde_gives_full_marks_to_the_solutions_and_none"


@pytest.hookimpl(trylast=True)  # after -k and -m have chosen what runs
def pytest_collection_modifyitems(config, items):
    if not any(item.name.startswith(AUTOGRADE_TEST) for item in items):
        return
    twice = [item for item in items if item.path.name == AUTOGRADED_NOTEBOOK]
    if twice:
        items[:] = [item for item in items if item.path.name != AUTOGRADED_NOTEBOOK]
        config.hook.pytest_deselected(items=twice)


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


@pytest.fixture
def exercise_check(capsys):
    """check(right) passes and prints 'passed'; each wrong answer raises ExerciseError with the case, the
    expected and the returned value and a hint (the contract of every tutorial_utils.exercises* check)."""
    from tutorial_utils.exercises import ExerciseError

    def run(check, right, wrongs) -> None:
        check(right)
        assert "passed" in capsys.readouterr().out
        for wrong in wrongs:
            with pytest.raises(ExerciseError) as caught:
                check(wrong)
            message = str(caught.value)
            assert all(part in message for part in ("wrong on", "expected:", "got:", "hint:")), message
    return run
