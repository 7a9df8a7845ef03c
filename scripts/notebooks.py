"""Keep each notebook's text source (notebooks/NN_name.py, jupytext percent format) and its executed .ipynb paired.

The .py is what maintainers edit and review; the .ipynb is what learners open and nbval re-runs.

Usage:
  python scripts/notebooks.py execute [NAMES...]   run each .py top to bottom in a fresh kernel, then
                                                   write the executed .ipynb and re-write the .py
                                                   (no NAMES: every notebook)
  python scripts/notebooks.py check                exit 1, listing the notebooks whose .py and .ipynb disagree
  python scripts/notebooks.py times [--json F]      execute every notebook in order in fresh kernels on an empty
                                                   temporary cache; then on another, train the teachers and the
                                                   chain's shared models (as `python -m tutorial_utils teachers`)
                                                   and execute them all twice (the first round trains what else
                                                   each needs, the second finds it cached); writes nothing into
                                                   notebooks/; optionally a result file F (about 10 minutes)
  python scripts/notebooks.py variants             run every notebook under nbval as CI does, once with
                                                   DC_THREADS=1 and once with DC_SEED=1 (about 4 minutes
                                                   each): their asserts must hold on other seeds and threads

NAMES are notebook stems such as 03_quantization (a path or a suffix is accepted too).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import jupytext
import nbformat
from jupytext.config import load_jupytext_config
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tutorial_utils import files  # noqa: E402

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
TEXT_FORMAT = "py:percent"
CELL_TIMEOUT_S = 600
KERNEL = "python3"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": KERNEL}


def cell_signature(cell: nbformat.NotebookNode) -> tuple[str, str, tuple[str, ...]]:
    """What must agree between the two files for one cell: its type, its stripped source and its tags."""
    # Tags steer nbval (e.g. raises-exception), so a tag added in the .py but not executed is a disagreement.
    return cell.cell_type, cell.source.strip(), tuple(cell.metadata.get("tags", ()))


def disagreement(stem: str) -> str | None:
    """Why notebooks/<stem>.py and notebooks/<stem>.ipynb are not paired, or None when they agree."""
    text_path, ipynb_path = NOTEBOOKS / f"{stem}.py", NOTEBOOKS / f"{stem}.ipynb"
    for path in (text_path, ipynb_path):
        if not path.exists():
            return f"{path.name} is missing"
    text_cells = [cell_signature(c) for c in jupytext.read(text_path).cells]
    ipynb_cells = [cell_signature(c) for c in jupytext.read(ipynb_path).cells]
    for index, (text_cell, ipynb_cell) in enumerate(zip(text_cells, ipynb_cells)):
        if text_cell != ipynb_cell:
            parts = [part for part, a, b in zip(("type", "source", "tags"), text_cell, ipynb_cell) if a != b]
            return f"cell {index} differs ({', '.join(parts)})"
    if len(text_cells) != len(ipynb_cells):
        return f"{len(text_cells)} cells in the .py, {len(ipynb_cells)} in the .ipynb"
    return None


def all_stems() -> list[str]:
    """Stems of every notebook that has a .py or an .ipynb, so that an orphan of either kind is seen."""
    return sorted({p.stem for p in NOTEBOOKS.glob("*.py")} | {p.stem for p in NOTEBOOKS.glob("*.ipynb")})


def matching_old_cells(cells: list, old_cells: list) -> list[int | None]:
    """For each cell, the index of the old cell it continues, or None for a new cell."""
    free = list(range(len(old_cells)))
    matches: list[int | None] = []
    # An unchanged cell: the first free old cell with the same type and source.
    for cell in cells:
        j = next((j for j in free if (old_cells[j].cell_type, old_cells[j].source) == (cell.cell_type, cell.source)),
                 None)
        if j is not None:
            free.remove(j)
        matches.append(j)
    # An edited cell: the free old cell of the same type right after the old cell its predecessor continues.
    previous = -1
    for i, cell in enumerate(cells):
        if matches[i] is None and previous + 1 in free and old_cells[previous + 1].cell_type == cell.cell_type:
            matches[i] = previous + 1
            free.remove(previous + 1)
        if matches[i] is not None:
            previous = matches[i]
    return matches


def reuse_cell_ids(notebook: nbformat.NotebookNode, previous: nbformat.NotebookNode) -> None:
    """Give each unchanged or edited cell the id it had in the previous .ipynb; new cells keep a fresh one."""
    # jupytext invents random ids for cells read from text; reusing the old ones keeps .ipynb diffs to real changes.
    matches = matching_old_cells(notebook.cells, previous.cells)
    reused = {previous.cells[j].id for j in matches if j is not None}
    for cell, j in zip(notebook.cells, matches):
        if j is not None:
            cell.id = previous.cells[j].id
        else:
            # A random new id equal to a reused one is unlikely, but nbformat would reject the notebook.
            while cell.id in reused:
                cell.id = nbformat.v4.new_code_cell().id


def notebook_from_text(stem: str) -> nbformat.NotebookNode:
    """Read notebooks/<stem>.py as a notebook ready to execute: no outputs, no jupytext metadata."""
    notebook = jupytext.read(NOTEBOOKS / f"{stem}.py", fmt=TEXT_FORMAT)
    previous_path = NOTEBOOKS / f"{stem}.ipynb"
    if previous_path.exists():
        reuse_cell_ids(notebook, nbformat.read(previous_path, as_version=4))
    # The pairing lives in jupytext.toml, so the .ipynb carries no jupytext section.
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook


def write_atomically(path: pathlib.Path, text: str) -> None:
    """Write text to path whole or not at all (files.atomic_write), so an interrupted run never leaves half a
    notebook."""
    files.atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def execute(stem: str) -> float:
    """Execute notebooks/<stem>.py in a fresh kernel, write <stem>.ipynb and re-write <stem>.py; return seconds."""
    notebook = notebook_from_text(stem)
    # Timestamps per cell would change on every run and bury the real changes in the .ipynb diff.
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL, record_timing=False,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    ipynb_path, text_path = NOTEBOOKS / f"{stem}.ipynb", NOTEBOOKS / f"{stem}.py"
    write_atomically(ipynb_path, nbformat.writes(notebook) + "\n")
    # Re-writing the .py through the same config as `jupytext --sync` keeps its header and layout canonical.
    config = load_jupytext_config(str(text_path))
    write_atomically(text_path, jupytext.writes(notebook, fmt=TEXT_FORMAT, config=config))
    return seconds


def stem_of(name: str) -> str:
    """The notebook stem named by a NAMES argument: 03_quantization, notebooks/03_quantization.py, ..."""
    stem = pathlib.Path(name).stem
    if not (NOTEBOOKS / f"{stem}.py").exists():
        known = ", ".join(p.stem for p in sorted(NOTEBOOKS.glob("*.py")))
        raise SystemExit(f"no notebooks/{stem}.py; the text sources are: {known}")
    return stem


def run_execute(names: list[str]) -> int:
    """The execute command: run the named notebooks (all by default) and print each one's wall time."""
    stems = [stem_of(name) for name in names] or [p.stem for p in sorted(NOTEBOOKS.glob("*.py"))]
    overrides = sorted(key for key in os.environ if key.startswith("DC_"))
    if overrides:
        # Notebooks read DC_* settings; committed outputs are meant to show the defaults.
        print(f"warning: {', '.join(overrides)} set; the committed outputs will reflect them", file=sys.stderr)
    for stem in stems:
        try:
            seconds = execute(stem)
        except CellExecutionError as error:
            # The old .ipynb stays as it was: a committed notebook must not show an error.
            print(f"{stem}: failed, .ipynb left unchanged\n{error}", file=sys.stderr)
            return 1
        print(f"{stem}: executed in {seconds:.1f} s")
    return 0


def run_check() -> int:
    """The check command: list the notebooks whose .py and .ipynb disagree; 1 if any do."""
    problems = {stem: reason for stem in all_stems() if (reason := disagreement(stem))}
    for stem, reason in problems.items():
        print(f"{stem}: {reason}")
    if problems:
        print("re-pair with: python scripts/notebooks.py execute " + " ".join(problems), file=sys.stderr)
        return 1
    print(f"{len(all_stems())} notebooks paired")
    return 0


def _run_all(stems: list[str], seconds: dict[str, float], label: str) -> None:
    """Execute every notebook in order in a fresh kernel each, recording its wall-clock seconds."""
    for stem in stems:
        client = NotebookClient(notebook_from_text(stem), timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
                                resources={"metadata": {"path": str(NOTEBOOKS)}})
        start = time.perf_counter()
        client.execute()
        seconds[stem] = round(time.perf_counter() - start, 1)
        print(f"{label}: {stem} {seconds[stem]:.1f} s", flush=True)


def run_times(json_path: str | None) -> int:
    """The times command, three rounds of every notebook in order. First on an empty cache with no
    preparation (what a learner who skips `python -m tutorial_utils teachers` waits: each notebook trains
    what the earlier ones have not cached). Then on a fresh cache whose teachers and shared chain models are
    trained first (as CI's test session and a workshop's preparation do), twice: the first of these trains
    everything else a notebook needs (notebook 05's comparisons, the sweep); the second finds it cached."""
    stems = [p.stem for p in sorted(NOTEBOOKS.glob("*.py"))]
    seconds: dict[int, dict[str, float]] = {0: {}, 1: {}, 2: {}}
    with tempfile.TemporaryDirectory(prefix="dc-times-empty-") as empty:
        os.environ["DC_CACHE_DIR"] = empty
        _run_all(stems, seconds[0], "empty cache")
    with tempfile.TemporaryDirectory(prefix="dc-times-cache-") as cache:
        os.environ["DC_CACHE_DIR"] = cache          # read by this process and inherited by every kernel
        from tutorial_utils import machine, teachers
        start = time.perf_counter()
        threads = teachers.prepare_for_notebooks()["threads"]
        teacher_seconds = round(time.perf_counter() - start, 1)
        print(f"teachers and the chain's models: {teacher_seconds:.1f} s", flush=True)
        for round_ in (1, 2):
            _run_all(stems, seconds[round_], f"round {round_}")
    if json_path:
        document = {"command": "python scripts/notebooks.py times --json " + json_path,
                    "machine": machine.record(threads=threads), "teachers_seconds": teacher_seconds,
                    "empty_cache_seconds": seconds[0], "first_run_seconds": seconds[1], "seconds": seconds[2]}
        files.atomic_write(json_path, lambda f: f.write((json.dumps(document, indent=2) + "\n").encode()))
    return 0


VARIANTS = ({"DC_THREADS": "1"}, {"DC_SEED": "1"})


def run_variants() -> int:
    """The variants command: nbval over every notebook per variant environment; 1 if any variant fails."""
    failed = []
    for variant in VARIANTS:
        env = {**os.environ, **variant}
        label = " ".join(f"{k}={v}" for k, v in variant.items())
        start = time.perf_counter()
        # A fresh temporary cache per variant (conftest.py): teachers are trained for this seed or thread count.
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "--durations=0", str(NOTEBOOKS)], env=env,
                               cwd=NOTEBOOKS.parent)
        print(f"{label}: {'passed' if code == 0 else 'FAILED'} in {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(label)
    return 1 if failed else 0


def main() -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    execute_parser = commands.add_parser("execute", help="execute .py sources, write the .ipynb, re-pair")
    execute_parser.add_argument("names", nargs="*", metavar="NAME", help="notebook stem, e.g. 03_quantization")
    commands.add_parser("check", help="exit 1 if any .py and .ipynb disagree")
    commands.add_parser("variants", help="nbval with DC_THREADS=1, then with DC_SEED=1")
    times_parser = commands.add_parser("times", help="three rounds: an empty cache, then after the preparation twice")
    times_parser.add_argument("--json", default=None, help="also write the times with the machine record here")
    args = parser.parse_args()
    if args.command == "variants":
        return run_variants()
    if args.command == "times":
        return run_times(args.json)
    return run_execute(args.names) if args.command == "execute" else run_check()


if __name__ == "__main__":
    sys.exit(main())
