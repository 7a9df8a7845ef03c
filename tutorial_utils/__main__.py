"""Command line: `python -m tutorial_utils pipeline [options]`, `... teachers [options]`, `... student-edition OUT`
or `... course OUT` (see each one's `--help`)."""

from __future__ import annotations

import sys

from tutorial_utils import classroom, pipeline, teachers

COMMANDS = {"pipeline": pipeline.main, "teachers": teachers.main, "student-edition": classroom.main,
            "course": classroom.course_main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m tutorial_utils {pipeline,teachers,student-edition,course} [--help | options]", file=sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}; choose one of {sorted(COMMANDS)}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
