"""The package is layered: a module imports only from layers below its own, so the import graph has no circle.

Lowest first (a new module must be placed here, or this test fails):
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).parents[1] / "tutorial_utils"
LAYERS = [
    {"__init__", "validate"},                                                   # argument checks, under everything
    {"files", "models", "encoding", "masks", "timing", "qtensor", "idx", "fileheader", "student_t", "machine",
     "energy", "calibration", "mcnemar"},       # leaves
    {"data", "checkpoints", "qat", "kmeans", "evaluation", "fileformat", "classroom", "footprint", "stats"},                                    # built on the leaves
    {"training", "robustness", "privacy"},                                      # the one loop; attacks, membership
    {"pruning", "quantization", "distillation", "int8"},                        # the stages
    {"serialize", "measure", "benchmarks", "compaction", "centroids",
     "hints", "nbits"},            # files, measurements
    {"storage", "onnx_export", "onnx_int8", "ort_session"},                     # the model file, the ONNX graphs, sessions
    {"plots", "exercises", "recipes", "deploy"},                                # teaching, recipes, the runtime
    {"workflow", "chain", "exercises_compress", "exercises_chain", "exercises_deploy", "exercises_beyond"},  # the story; checks
    {"pipeline", "teachers"},                                                   # the command lines: a run, the cache
    {"__main__"},                                                               # the command line's entry
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def package_imports(source: str) -> set[str]:
    """Names of tutorial_utils modules that `source` imports, at any depth (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "tutorial_utils":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tutorial_utils."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("tutorial_utils.")}
    return found


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def test_every_module_has_a_layer():
    assert set(MODULES) == set(RANK), f"place these modules in LAYERS: {sorted(set(MODULES) ^ set(RANK))}"


@pytest.mark.parametrize("module", MODULES)
def test_imports_only_from_lower_layers(module):
    imported = package_imports((PACKAGE / f"{module}.py").read_text())
    upward = sorted(name for name in imported if RANK.get(name, 99) >= RANK[module])
    assert not upward, (f"{module} (layer {RANK[module]}) imports {upward} from its own layer or above; "
                        f"move the shared piece down a layer")


def test_the_parser_sees_every_import_form():
    source = ("from tutorial_utils import data, masks as m\nimport tutorial_utils.training\n"
              "from tutorial_utils.qtensor import QTensor\ndef f():\n    from tutorial_utils import storage\n"
              "x = 'from tutorial_utils import pipeline'  # a string is not an import\n")
    assert package_imports(source) == {"data", "masks", "training", "qtensor", "storage"}


def test_modules_stay_small():
    """About 200 lines each (footprint took the counting out of measure, so no module needs an exception)."""
    for module in MODULES:
        lines = len((PACKAGE / f"{module}.py").read_text().splitlines())
        assert lines <= 235, f"{module}.py has {lines} lines; split it along a seam"


def test_readme_table_of_modules_matches_the_layers():
    """README's package table lists every module with the layer this test enforces."""
    import re
    readme = (PACKAGE.parent / "README.md").read_text()
    listed = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\| (\d+) \| `(\w+)` \|", readme, re.MULTILINE)}
    expected = {name: rank for name, rank in RANK.items() if name not in ("__init__", "__main__")}
    assert listed == expected
