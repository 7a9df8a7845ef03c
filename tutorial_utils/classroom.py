"""The student edition: the notebooks with every solution replaced by a stub, made by nbgrader's own preprocessors.

The committed notebooks are nbgrader *source* notebooks (the solution edition that CI executes):

    code between `### BEGIN SOLUTION` and `### END SOLUTION`  -> `# YOUR CODE HERE` + `raise NotImplementedError()`
    a markdown answer cell (nbgrader solution + grade)         -> "YOUR ANSWER HERE"
    a graded test cell (nbgrader grade, locked, with points)   -> kept: it calls a `check_*` on hidden cases
    every output                                               -> cleared

A classroom uses nbgrader itself (`nbgrader generate_assignment`, see classroom/README.md); a self-paced
learner, who has no course database, runs `python -m tutorial_utils student-edition OUT/`, which
applies the same preprocessors (ClearSolutions, ClearOutput, LockCells, ClearHiddenTests,
ClearMarkScheme) to each notebook and writes it to OUT/. Existing notebooks in OUT/ (a learner's own
work) are never overwritten unless `force=True`; each file is written whole or not at all.

Example:
    >>> student_edition("notebooks", "my-work")        # [Path('my-work/01_teacher.ipynb'), ...]
"""

from __future__ import annotations

import argparse
import copy
import os
import pathlib
import shutil
import sys

from tutorial_utils import files

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "notebooks"                          # the solution edition, in a source checkout
COURSE_CONFIG = ROOT / "classroom" / "nbgrader_config.py"


def _preprocessors() -> list:
    try:
        from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, ClearOutput, ClearSolutions, LockCells
    except ImportError as exc:   # an optional extra: say how to get it
        raise ImportError('the student edition needs nbgrader: pip install -e ".[classroom]"') from exc
    return [ClearSolutions(), ClearOutput(), LockCells(), ClearHiddenTests(), ClearMarkScheme()]


def strip(notebook: object) -> object:
    """A copy of an nbformat notebook as students get it: solutions stubbed, outputs cleared, graded cells locked."""
    stripped = copy.deepcopy(notebook)
    resources: dict = {}
    for preprocessor in _preprocessors():
        stripped, resources = preprocessor.preprocess(stripped, resources)
    return stripped


def student_edition(source: str | os.PathLike = SOURCE, out: str | os.PathLike = "student-edition", *,
                    force: bool = False) -> list[pathlib.Path]:
    """Write the student edition of every notebook in `source` to `out`; return the written paths.

    Side effects: creates `out`; writes one .ipynb per source notebook, and out/jupytext.toml (notebooks
    only) unless one is there. Raises FileNotFoundError when
    `source` holds no notebook and FileExistsError (before writing anything) when `out` already holds
    one of them and force is False.
    """
    import nbformat

    source, out = pathlib.Path(source), pathlib.Path(out)
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"source={str(source)!r} holds no .ipynb notebooks (the solution edition is the "
                                f"repository's notebooks/ folder)")
    if out.resolve() == source.resolve():
        raise ValueError(f"out={str(out)!r} is the source folder: the solutions would be overwritten")
    existing = [out / p.name for p in notebooks if (out / p.name).exists()]
    if existing and not force:
        raise FileExistsError(f"out={str(out)!r} already holds {', '.join(p.name for p in existing)}; your work there "
                              f"is kept: choose another folder, or pass --force to overwrite")
    # every notebook read and stripped before the first is written: a bad one leaves `out` as it was
    editions = {out / path.name: nbformat.writes(strip(nbformat.read(path, as_version=4))) for path in notebooks}
    for target, text in editions.items():
        files.atomic_write(target, lambda f, text=text: f.write(text.encode("utf-8")))
    written = list(editions)
    _unpaired(out)
    return written


def _unpaired(folder: pathlib.Path) -> None:
    """folder/jupytext.toml saying 'notebooks only', unless one is there: inside a clone, the repository's
    jupytext.toml would pair every saved notebook with a .py file, and a notebook rewritten by --force
    would then be older than its pair (JupyterLab refuses to open it)."""
    if not (folder / "jupytext.toml").exists():
        text = "# Notebooks only: not paired with .py sources as in the repository's notebooks/.\nformats = \"ipynb\"\n"
        files.atomic_write(folder / "jupytext.toml", lambda f: f.write(text.encode()))


def make_course(out: str | os.PathLike, *, source: str | os.PathLike = SOURCE,
                config: str | os.PathLike = COURSE_CONFIG) -> list[str]:
    """Lay out an nbgrader course folder: out/nbgrader_config.py and one assignment per notebook,
    out/source/NAME/NAME.ipynb (the solution edition); return the assignment names.

    Side effects: creates `out` and out/jupytext.toml (notebooks only). Raises FileExistsError, before
    writing anything, if `out` already holds a source/ folder or a config (a course in use is never
    overwritten), FileNotFoundError without notebooks, ValueError for one nbformat cannot read (nothing
    written in either case).
    """
    source, out = pathlib.Path(source), pathlib.Path(out)
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"source={str(source)!r} holds no .ipynb notebooks")
    if (out / "source").exists() or (out / "nbgrader_config.py").exists():
        raise FileExistsError(f"out={str(out)!r} already holds a course (source/ or nbgrader_config.py); it is kept: "
                              f"choose an empty folder")
    contents = {path: _notebook_bytes(path) for path in notebooks}   # all read and checked before any write
    files.atomic_write(out / "nbgrader_config.py", lambda f: f.write(pathlib.Path(config).read_bytes()))
    for path, content in contents.items():
        files.atomic_write(out / "source" / path.stem / path.name, lambda f, c=content: f.write(c))
    _unpaired(out)
    return [path.stem for path in notebooks]


def _notebook_bytes(path: pathlib.Path) -> bytes:
    """The file's bytes, once nbformat has read them as a notebook (ValueError naming the file if not)."""
    import nbformat
    content = path.read_bytes()
    try:
        nbformat.reads(content.decode("utf-8"), as_version=4)
    except Exception as exc:   # nbformat raises JSON, Unicode and validation errors of several kinds
        raise ValueError(f"{path.name} is not a readable notebook ({type(exc).__name__})") from None
    return content


def _api(course: pathlib.Path):
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    config.CourseDirectory.root = str(course.resolve())
    return NbGraderAPI(config=config)


def release(course: str | os.PathLike, assignment: str) -> pathlib.Path:
    """`nbgrader generate_assignment` for one assignment of a make_course folder; the release folder.
    A failure raises RuntimeError with nbgrader's log (for example: invalid cell metadata)."""
    course = pathlib.Path(course)
    result = _api(course).generate_assignment(assignment, force=True, create=True)
    if not result["success"]:
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{result['log']}\n{result['error']}")
    return course / "release" / assignment


def autograde(course: str | os.PathLike, assignment: str, student: str, notebooks: list[pathlib.Path]) -> dict:
    """Submit `notebooks` as `student`'s work, run `nbgrader autograde` on it, and report what happened:
    {"score": autograded points, "max_score": autogradable points, "errors": [(notebook, cell, grade_id, ename)]}.

    Only code test cells are counted: markdown answers wait for a person (formgrader). Side effects: writes
    submitted/, autograded/ and gradebook.db in `course`."""
    import nbformat
    from nbgrader.api import Gradebook

    course = pathlib.Path(course)
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for path in notebooks:
        shutil.copyfile(path, folder / pathlib.Path(path).name)
    api = _api(course)
    result = api.autograde(assignment, student, force=True, create=True)
    if not result["success"]:
        raise RuntimeError(f"nbgrader autograde {assignment} {student} failed:\n{result['log']}\n{result['error']}")
    with Gradebook(api.coursedir.db_url) as gradebook:
        grades = [g for nb in gradebook.find_submission(assignment, student).notebooks for g in nb.grades
                  if g.cell.cell_type == "code"]
        score, max_score = sum(g.score for g in grades), sum(g.max_score for g in grades)
    errors = []
    for path in notebooks:
        graded = nbformat.read(course / "autograded" / student / assignment / pathlib.Path(path).name, as_version=4)
        for index, cell in enumerate(graded.cells):
            for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
                if output.output_type == "error":
                    errors.append((pathlib.Path(path).stem, index, cell.metadata.get("nbgrader", {}).get("grade_id"),
                                   output.ename))
    return {"score": score, "max_score": max_score, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_utils student-edition",
                                     description="Write the notebooks with solutions replaced by stubs, to work in.")
    parser.add_argument("out", help="folder to write the student notebooks to (created if missing)")
    parser.add_argument("--source", default=str(SOURCE), help="folder of the solution notebooks (default: notebooks/)")
    parser.add_argument("--force", action="store_true", help="overwrite notebooks already in OUT (your work there)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        written = student_edition(args.source, args.out, force=args.force)
    except (OSError, ValueError, ImportError) as exc:   # OSError: a missing or unwritable folder, a file in the way
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} student notebooks to {args.out}: open them with `jupyter lab {args.out}`; each "
          f"exercise cell raises NotImplementedError until you write it, and the cell after it checks your answer")
    return 0


def course_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_utils course",
                                     description="Lay out an nbgrader course folder, one assignment per notebook.")
    parser.add_argument("out", help="an empty or new folder for the course")
    parser.add_argument("--source", default=str(SOURCE), help="folder of the solution notebooks (default: notebooks/)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        names = make_course(args.out, source=args.source)
    except (OSError, ValueError) as exc:   # a course in use, a missing folder, a file in the way, a bad notebook
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"course in {args.out} with assignments {', '.join(names)}; next: cd {args.out} && nbgrader "
          f"generate_assignment {names[0]} (classroom/README.md walks through release, collect and autograde)")
    return 0
