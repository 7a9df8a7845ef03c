"""Notebook hygiene: committed notebooks are executed top to bottom, without errors or machine paths.

nbval (configured in pyproject.toml) re-runs every notebook; these checks catch stale committed outputs.
"""

import json
import pathlib
import re

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
ABSOLUTE_PATH = re.compile(r"(/(tmp|root|home|work|Users|usr/local)/[\w.-]+)|([A-Z]:\\\\Users)")


def code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb files"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_in_order(path):
    counts = [c["execution_count"] for c in code_cells(path) if "".join(c["source"]).strip()]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: re-run it top to bottom in a fresh kernel"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_errors_and_no_absolute_paths(path):
    for cell in code_cells(path):
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", f"{path.name}: a committed cell shows {output.get('ename')}"
            text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
            assert not ABSOLUTE_PATH.search(text), f"{path.name}: an output shows a path of this machine: {text[:200]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_skeleton_and_size(path):
    markdown = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "markdown")
    for heading in ("What you will learn", "Prerequisites", "## Pitfalls", "## Exercises", "## Summary",
                    "## Further reading"):
        assert heading in markdown, f"{path.name} lacks '{heading}'"
    assert markdown.count("<details>") >= 2, f"{path.name}: exercises need solutions in <details> blocks"
    assert path.stat().st_size < 2_000_000, f"{path.name} is over 2 MB; lower figure dpi or print less"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_imports_modules_not_names(path):
    for cell in code_cells(path):
        source = "".join(cell["source"])
        assert "import *" not in source
        for match in re.finditer(r"from tutorial_utils(\.\w+)? import (.+)", source):
            assert match.group(1) is None, f"{path.name}: import modules (from tutorial_utils import x), not names"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_at_least_two_exercises_are_checked_automatically(path):
    sources = "\n".join("".join(c["source"]) for c in code_cells(path))
    checks = set(re.findall(r"exercises\.check_\w+", sources))
    assert len(checks) >= 2, f"{path.name}: exercises need automatic checks (found {sorted(checks)})"
