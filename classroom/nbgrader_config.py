"""nbgrader configuration for a distill-and-compress course (copied into the course folder by
`python -m tutorial_utils course COURSE/`). One assignment per notebook: source/01_teacher/01_teacher.ipynb, ..."""

c = get_config()  # noqa: F821  (nbgrader provides get_config when it reads this file)

c.CourseDirectory.course_id = "distill-and-compress"

# Solutions: code between ### BEGIN SOLUTION and ### END SOLUTION becomes this stub; markdown answer cells
# become the text stub. These are nbgrader's defaults, written out so the course says what students see.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# The notebooks train small networks: a cell can take tens of seconds on a laptop (nbgrader's default
# timeout is 30 s). Autograding runs every cell of every submission, so allow ten minutes per cell.
c.Execute.timeout = 600

# `nbgrader zip_collect 01_teacher` reads the files an LMS gives back from downloaded/01_teacher/archive/
# (zip files or notebooks) and needs each student's id and notebook from the file's name: here
# STUDENT_01_teacher.ipynb (a student id without "_" or a slash, then the notebook's own name). Change the
# pattern to your LMS's naming; nbgrader matches it against the file's full path.
c.FileNameCollectorPlugin.named_regexp = r".*[/\\](?P<student_id>[^/\\_]+)_(?P<file_id>\d\d_[a-z_]+\.ipynb)$"
