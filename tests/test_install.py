"""The package works when installed, not only from the source tree: a wheel carries the bundled data and
the committed measurements (so students can run the notebooks without the clone's solution notebooks).

Builds a wheel from a copy of the sources (so nothing is written into the checkout), installs it with
`pip install --target` into a fresh folder, and runs it from elsewhere with that folder first on the path.
"""

import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]
SCRIPT = """
import pathlib, sys
import tutorial_utils
from tutorial_utils import data, files, models, training
assert pathlib.Path(tutorial_utils.__file__).is_relative_to(sys.argv[1]), tutorial_utils.__file__
assert files.results_dir().is_relative_to(sys.argv[1]) and (files.results_dir() / "kd-sweep.json").is_file()
splits = data.load("mnist-5k")
assert data.DATA_DIR.is_relative_to(sys.argv[1]), data.DATA_DIR
small = data.Splits(splits.x_train[:256], splits.y_train[:256], splits.x_test[:64], splits.y_test[:64])
training.setup(0, threads=1)
model = models.student()
training.fit(model, small, epochs=1, progress=False)
print("ok", len(splits.x_train), len(splits.x_test), round(training.evaluate(model, small.x_test, small.y_test), 2))
"""


def test_wheel_installs_and_loads_the_bundled_data(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "tutorial_utils", source / "tutorial_utils", ignore=shutil.ignore_patterns("__pycache__"))
    (source / "data").mkdir()
    shutil.copy(ROOT / "data" / "README.md", source / "data" / "README.md")
    shutil.copytree(ROOT / "data" / "mnist-5k", source / "data" / "mnist-5k")
    shutil.copytree(ROOT / "results", source / "results")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheels")],
                   check=True, cwd=tmp_path, timeout=300)
    wheel = next((tmp_path / "wheels").glob("distill_and_compress-*.whl"))
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                   check=True, cwd=tmp_path, timeout=300)
    assert (target / "tutorial_utils" / "_data" / "mnist-5k" / "train-images-idx3-ubyte.gz").is_file()
    env = {**os.environ, "PYTHONPATH": str(target), "DC_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(target.resolve())], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok 4000 1000")


def test_tests_write_nothing_into_the_source_tree():
    """conftest points the cache at a temporary folder; the old in-tree cache location stays unused."""
    from tutorial_utils import files
    assert not files.cache_dir().resolve().is_relative_to(ROOT.resolve())
