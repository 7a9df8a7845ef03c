"""Notebook hygiene: committed notebooks are executed top to bottom, without errors or machine paths.

nbval (configured in pyproject.toml) re-runs every notebook; these checks catch stale committed outputs,
a .ipynb that disagrees with its paired .py text source, and learning checks that were deleted.
"""

import ast
import json
import pathlib
import re

import jupytext
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
def test_no_path_relative_to_the_notebooks_folder(path):
    """A student edition or an nbgrader course runs the notebooks from another folder: '../results' breaks."""
    for cell in code_cells(path):
        assert "../" not in "".join(cell["source"]), f"{path.name}: use files.results_dir() or files.cache_dir()"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_imports_modules_not_names(path):
    for cell in code_cells(path):
        source = "".join(cell["source"])
        assert "import *" not in source
        for match in re.finditer(r"from tutorial_utils(\.\w+)? import (.+)", source):
            assert match.group(1) is None, f"{path.name}: import modules (from tutorial_utils import x), not names"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_at_least_three_exercises_are_checked_automatically(path):
    sources = "\n".join("".join(c["source"]) for c in code_cells(path))
    checks = set(re.findall(r"exercises(?:_\w+)?\.check_\w+", sources))
    assert len(checks) >= 3, f"{path.name}: exercises need automatic checks (found {sorted(checks)})"


# Minimum (assert statements, exercises.check_* calls) per notebook, measured when the table was written.
# Raise a minimum when a notebook gains checks; lowering one should be a deliberate, reviewed change.
MIN_LEARNING_CHECKS = {
    "01_teacher": (10, 4),
    "02_pruning": (10, 3),
    "03_quantization": (12, 3),
    "04_distillation": (8, 3),
    "05_distill_and_compress": (3, 3),
    "06_deploy": (6, 3),
    "07_beyond_accuracy": (2, 3),
}


def cell_signatures(path: pathlib.Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """Type, stripped source and tags of every cell, read through jupytext (works for .ipynb and .py alike)."""
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in jupytext.read(path).cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_paired_with_its_text_source(path):
    text_path = path.with_suffix(".py")
    assert text_path.exists(), f"{path.name} has no paired {text_path.name}; run python scripts/notebooks.py execute"
    text_cells, ipynb_cells = cell_signatures(text_path), cell_signatures(path)
    for index, (text_cell, ipynb_cell) in enumerate(zip(text_cells, ipynb_cells)):
        assert text_cell == ipynb_cell, (f"{path.stem}: cell {index} differs between the .py and the .ipynb; "
                                         f"run python scripts/notebooks.py execute {path.stem}")
    assert len(text_cells) == len(ipynb_cells), (f"{path.stem}: {len(text_cells)} cells in the .py, "
                                                 f"{len(ipynb_cells)} in the .ipynb")


def test_every_text_source_has_a_notebook():
    orphans = [p.name for p in NOTEBOOKS[0].parent.glob("*.py") if not p.with_suffix(".ipynb").exists()]
    assert not orphans, f"text sources without an executed notebook: {orphans}"


def without_magics(source: str) -> str:
    """The cell's source with IPython magics and shell escapes (lines starting % or !) turned into `pass`."""
    # `pass` at the same indentation, not an empty line, so a magic alone in a block still parses.
    lines = source.splitlines()
    return "\n".join(line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!"))
                     else line for line in lines)


def learning_checks(source: str) -> tuple[int, int]:
    """Count the assert statements and the exercises.check_* calls in one code cell."""
    # The syntax tree, not a regex: the word assert in a string or a comment is not a check.
    nodes = list(ast.walk(ast.parse(without_magics(source))))
    asserts = sum(isinstance(node, ast.Assert) for node in nodes)
    checks = sum(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and isinstance(node.func.value, ast.Name) and node.func.value.id.startswith("exercises")
                 and node.func.attr.startswith("check_") for node in nodes)
    return asserts, checks


def test_learning_checks_counts_syntax_not_words():
    source = """
%matplotlib inline
def helper(x):
    assert x > 0, "assert in a message"
    return exercises.check_masks(x)
# assert this is a comment
text = "assert 1 == 1; exercises.check_fake(1)"
for i in range(2):
    !echo assert
    exercises.check_layer_masks(i)
    assert i < 2
other.check_masks(1)
"""
    assert learning_checks(source) == (2, 2)


def test_every_notebook_has_minimum_counts():
    assert sorted(MIN_LEARNING_CHECKS) == sorted(p.stem for p in NOTEBOOKS), \
        "MIN_LEARNING_CHECKS must list exactly the notebooks in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_learning_checks_are_kept(path):
    counts = [learning_checks("".join(cell["source"])) for cell in code_cells(path)]
    asserts, checks = sum(a for a, _ in counts), sum(c for _, c in counts)
    min_asserts, min_checks = MIN_LEARNING_CHECKS.get(path.stem, (0, 0))
    assert asserts >= min_asserts, f"{path.stem}: {asserts} assert statements, at least {min_asserts} expected"
    assert checks >= min_checks, f"{path.stem}: {checks} exercises.check_* calls, at least {min_checks} expected"


# The article's bugs, each by its literal code: (notebook, the article's line as the pitfall runs it, what the
# executed cell must show). Issue 16 lists seven groups; each must stay a pitfall reproduced from that line.
ARTICLE_BUGS = {
    "a 'distillation' term that does not depend on the student": (
        "04_distillation", "F.cross_entropy(big_teacher(x), y)", "gradient of the teacher term w.r.t. the student's weights: (None"),
    "binary cross-entropy for ten classes (section 3.4.1)": (
        "04_distillation", "torch.nn.BCELoss()(torch.sigmoid(logits), y)", "ValueError"),
    "torch.ones_like of a parameters() generator": (
        "04_distillation", "torch.ones_like(teacher_model.parameters())", "TypeError"),
    "a student_model that is never created": (
        "04_distillation", "student_model(x)", "NameError: name 'student_model' is not defined"),
    "the 4-bit quantizer: floor(w / 2^(bits-1)) * 2": (
        "03_quantization", "2 * (w // 2 ** (4 - 1))", "the first layer's weights become [-2.0, 0.0]"),
    "int32 codes as a trainable nn.Parameter": (
        "03_quantization", "torch.nn.Parameter(codes.to(torch.int32))", "RuntimeError: Only Tensors of floating point"),
    "setattr with a dotted parameter name": (
        "03_quantization", 'setattr(broken, "0.weight", torch.nn.Parameter(codes))', "KeyError"),
}


@pytest.mark.parametrize("bug", sorted(ARTICLE_BUGS))
def test_every_article_bug_is_reproduced_from_its_line(bug):
    name, line, shown = ARTICLE_BUGS[bug]
    path = pathlib.Path(__file__).parents[1] / "notebooks" / f"{name}.ipynb"
    cells = [c for c in code_cells(path) if line in "".join(c["source"])]
    assert cells, f"{name}: no cell runs the article's line {line!r} ({bug})"
    outputs = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))
    assert shown in outputs, f"{name}: the cell running {line!r} does not show {shown!r} ({bug})"
