"""Check the classroom path for every notebook, as a teacher would meet it: release, then autograde twice.

For each notebook: `nbgrader generate_assignment` (the release must hold no solution), `nbgrader autograde`
of the solution edition (it must score every autograded point, with no error) and of the unanswered
release (it must score 0, and its only errors must be the NotImplementedError of the graded checks and of
the learner's own code stubs, such as notebook 06's measurement in exercise 4: every other cell of the
student edition runs). Prints one line per notebook with the seconds each step took; exits 1
if any notebook fails. CI runs the same on notebook 06, the quickest (tests/test_classroom.py).

    python scripts/classroom_check.py [--notebooks 01_teacher 05_distill_and_compress]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import nbformat

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tutorial_utils import classroom  # noqa: E402


def check(course: pathlib.Path, name: str) -> tuple[list[str], dict[str, float], float]:
    seconds, problems = {}, []
    start = time.perf_counter()
    release = classroom.release(course, name) / f"{name}.ipynb"
    seconds["release"] = time.perf_counter() - start
    if "BEGIN SOLUTION" in release.read_text(encoding="utf-8") or "<details>" in release.read_text(encoding="utf-8"):
        problems.append("the release holds a solution")
    start = time.perf_counter()
    solved = classroom.autograde(course, name, "solutions", [classroom.SOURCE / f"{name}.ipynb"])
    seconds["solutions"] = time.perf_counter() - start
    if solved["score"] != solved["max_score"] or solved["errors"]:
        problems.append(f"solutions scored {solved['score']} of {solved['max_score']}, errors {solved['errors']}")
    start = time.perf_counter()
    blank = classroom.autograde(course, name, "unanswered", [release])
    seconds["unanswered"] = time.perf_counter() - start
    # a graded check, or a code stub the learner writes (a solution cell, graded or not, e.g. a measurement):
    # by their nbgrader metadata, not by their names
    expected = {c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(release, as_version=4).cells
                if c.cell_type == "code" and (c.metadata.get("nbgrader", {}).get("solution")
                                              or c.metadata.get("nbgrader", {}).get("grade"))}
    wrong = [e for e in blank["errors"] if e[2] not in expected or e[3] != "NotImplementedError"]
    if blank["score"] != 0 or wrong or not blank["errors"]:
        problems.append(f"unanswered release scored {blank['score']}; unexpected errors {wrong}")
    return problems, seconds, solved["max_score"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="+", default=[p.stem for p in sorted(classroom.SOURCE.glob("*.ipynb"))])
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        course = pathlib.Path(folder) / "course"
        classroom.make_course(course)
        print("| notebook | autograded points | release, s | autograde solutions, s | autograde unanswered, s | result |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name in args.notebooks:
            problems, seconds, points = check(course, name)
            failed |= bool(problems)
            print(f"| {name} | {points:.0f} | {seconds['release']:.1f} | {seconds['solutions']:.1f} | "
                  f"{seconds['unanswered']:.1f} | {'; '.join(problems) or 'ok'} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
