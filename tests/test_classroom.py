"""The classroom kit: the notebooks are valid nbgrader source notebooks, the student edition holds no
solution, nbgrader releases every notebook, and autograding notebook 06 gives full marks to the solutions
and none to an unanswered release (whose only errors are the exercises' NotImplementedError)."""

import json
import re
import subprocess
import sys
import zipfile

import nbformat
import pytest
from jupytext.config import find_jupytext_configuration_file, load_jupytext_configuration_file

from tutorial_utils import __main__ as cli
from tutorial_utils import classroom

nbgrader = pytest.importorskip("nbgrader", reason="the classroom extra (nbgrader) is not installed")
from nbgrader.nbgraderformat import MetadataValidator  # noqa: E402

NOTEBOOKS = sorted(classroom.SOURCE.glob("*.ipynb"))
CHECK = re.compile(r"\bexercises(?:_\w+)?\.check_\w+\(")


def meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_an_nbgrader_source_notebook(path):
    notebook = nbformat.read(path, as_version=4)
    MetadataValidator().validate_nb(notebook)          # what generate_assignment checks first
    cells = notebook.cells
    graded = [i for i, c in enumerate(cells) if c.cell_type == "code" and meta(c).get("grade")]
    assert len(graded) >= 3, f"{path.stem}: {len(graded)} graded exercises, at least 3 expected"
    for i in graded:
        assert CHECK.search(cells[i].source), f"{path.stem}: graded cell {meta(cells[i])['grade_id']} calls no check"
        assert meta(cells[i]).get("locked") and meta(cells[i])["points"] > 0
        solution = cells[i - 1]
        assert meta(solution).get("solution") and "### BEGIN SOLUTION" in solution.source \
            and "### END SOLUTION" in solution.source, f"{path.stem}: the cell before {meta(cells[i])['grade_id']} " \
                                                        f"must be the exercise's stub with a marked solution"
    for cell in cells:
        if cell.cell_type == "markdown" and "<details>" in cell.source:
            assert meta(cell).get("solution") and meta(cell).get("grade"), \
                f"{path.stem}: a <details> answer is not an nbgrader answer cell, so students would see it"
        if "### BEGIN SOLUTION" in cell.source:
            assert meta(cell).get("solution"), f"{path.stem}: a solution region outside a solution cell"


def test_student_edition_holds_no_solution(tmp_path):
    written = classroom.student_edition(out=tmp_path / "mine")
    assert sorted(p.name for p in written) == [p.name for p in NOTEBOOKS]
    for path in written:
        notebook = nbformat.read(path, as_version=4)
        text = json.dumps([c.source for c in notebook.cells])
        assert "BEGIN SOLUTION" not in text and "<details>" not in text, path.name
        assert "raise NotImplementedError()" in text and "YOUR ANSWER HERE" in text
        assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), f"{path.name} keeps outputs"
    first = nbformat.read(tmp_path / "mine" / "01_teacher.ipynb", as_version=4)
    stub = next(c.source for c in first.cells if c.source.startswith("def my_macs"))
    assert "zip(sizes" not in stub and stub.splitlines()[0] == "def my_macs(sizes):"


def test_student_edition_never_overwrites_work(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "01_teacher.ipynb").write_text("my answers")
    with pytest.raises(FileExistsError, match="01_teacher.ipynb"):
        classroom.student_edition(out=out)
    assert (out / "01_teacher.ipynb").read_text() == "my answers"
    assert sorted(p.name for p in out.iterdir()) == ["01_teacher.ipynb"]        # nothing written at all
    assert cli.main(["student-edition", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(["student-edition", str(out), "--force"]) == 0
    assert (out / "01_teacher.ipynb").read_text() != "my answers"
    # inside a clone the repository's jupytext.toml would pair each saved notebook with a .py file
    config = load_jupytext_configuration_file(find_jupytext_configuration_file(str(out)))
    assert config.default_formats(str(out / "01_teacher.ipynb")) == "ipynb"
    with pytest.raises(ValueError, match="source folder"):
        classroom.student_edition(classroom.SOURCE, classroom.SOURCE)
    with pytest.raises(FileNotFoundError, match="no .ipynb"):
        classroom.student_edition(tmp_path / "empty", out)


def test_make_course_keeps_a_course_in_use(tmp_path, capsys):
    names = classroom.make_course(tmp_path / "course")
    assert names == [p.stem for p in NOTEBOOKS]
    assert (tmp_path / "course" / "source" / "01_teacher" / "01_teacher.ipynb").read_bytes() == NOTEBOOKS[0].read_bytes()
    config = load_jupytext_configuration_file(find_jupytext_configuration_file(str(tmp_path / "course" / "source")))
    assert config.default_formats(str(tmp_path / "course" / "source" / "x.ipynb")) == "ipynb"   # submissions unpaired
    with pytest.raises(FileExistsError, match="already holds a course"):
        classroom.make_course(tmp_path / "course")
    assert cli.main(["course", str(tmp_path / "course")]) == 2
    assert "already holds a course" in capsys.readouterr().err


def test_a_bad_notebook_in_the_source_leaves_nothing_half_written(tmp_path, capsys):
    # a broken second notebook used to leave the first written, and the retry then refused without --force
    source = tmp_path / "source"
    source.mkdir()
    (source / "01_teacher.ipynb").write_bytes(NOTEBOOKS[0].read_bytes())
    (source / "02_broken.ipynb").write_text("{ not json")
    for command in ("student-edition", "course"):
        assert cli.main([command, str(tmp_path / command), "--source", str(source)]) == 2
        assert capsys.readouterr().err.startswith("error:")
        assert not list((tmp_path / command).rglob("*.ipynb"))
    (source / "02_broken.ipynb").unlink()
    assert cli.main(["student-edition", str(tmp_path / "student-edition"), "--source", str(source)]) == 0
    assert cli.main(["course", str(tmp_path / "course"), "--source", str(source)]) == 0
    (tmp_path / "a-file").write_text("")
    assert cli.main(["course", str(tmp_path / "a-file")]) == 2             # one line, not a traceback
    assert capsys.readouterr().err.count("\n") <= 2


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    folder = tmp_path_factory.mktemp("course")
    classroom.make_course(folder)
    return folder


def test_nbgrader_releases_every_notebook_without_solutions(course):
    for path in NOTEBOOKS:
        released = classroom.release(course, path.stem) / path.name
        text = released.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "<details>" not in text and "NotImplementedError" in text, path.stem


def test_zip_collect_files_an_lms_download_under_each_student(course):
    """Guards: the course's nbgrader_config.py names the convention classroom/README.md documents
    (STUDENT_01_teacher.ipynb in downloaded/01_teacher/archive/, also inside a zip), and zip_collect files it."""
    name = "01_teacher"
    classroom.release(course, name)
    archive = course / "downloaded" / name / "archive"
    archive.mkdir(parents=True)
    notebook = (course / "release" / name / f"{name}.ipynb").read_bytes()
    (archive / f"alice_{name}.ipynb").write_bytes(notebook)
    with zipfile.ZipFile(archive / "bob.zip", "w") as bundle:
        bundle.writestr(f"bob-2_{name}.ipynb", notebook)
    subprocess.run([sys.executable, "-m", "nbgrader", "zip_collect", name], cwd=course, check=True,
                   capture_output=True)
    for student in ("alice", "bob-2"):
        assert (course / "submitted" / student / name / f"{name}.ipynb").read_bytes() == notebook, student


@pytest.mark.teachers
def test_autograde_gives_full_marks_to_the_solutions_and_none_to_an_empty_release(course):
    # Notebook 06, the quickest to execute (two runs here, and so none by nbval in the same session: conftest.py);
    # scripts/classroom_check.py does all seven.
    # The marker prepares the teachers first, as a class does: without it the first run trains them.
    name = "06_deploy"
    release = classroom.release(course, name)
    solved = classroom.autograde(course, name, "solutions", [classroom.SOURCE / f"{name}.ipynb"])
    assert solved["max_score"] == 12 and solved["score"] == solved["max_score"], solved   # classroom/README.md: 12 of 12
    assert solved["errors"] == [], solved["errors"]
    blank = classroom.autograde(course, name, "unanswered", [release / f"{name}.ipynb"])
    assert blank["score"] == 0 and blank["max_score"] == solved["max_score"]
    # The student edition runs top to bottom: every cell but the graded checks and the learner's own stubs
    # (a measurement exercise 4 asks for, graded by hand) succeeds, and those fail only because the
    # exercise is not written yet.
    assert blank["errors"], "an unanswered release must fail its graded cells"
    cells = nbformat.read(release / f"{name}.ipynb", as_version=4).cells
    graded = {m["grade_id"] for c in cells if (m := meta(c)).get("grade") and c.cell_type == "code"}
    stubs = {"ex4-measure"}                     # the one measurement the learner writes (exercise 4)
    assert stubs <= {m["grade_id"] for c in cells if (m := meta(c)).get("solution") and c.cell_type == "code"}
    for notebook, cell, grade_id, ename in blank["errors"]:
        assert ename == "NotImplementedError" and (grade_id in graded or grade_id in stubs), (notebook, cell, grade_id, ename)
    assert graded <= {grade_id for _, _, grade_id, _ in blank["errors"]}
