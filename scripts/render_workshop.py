"""The notebooks' times (README and WORKSHOP) and WORKSHOP's self-paced workload, counted from the notebooks."""

from __future__ import annotations

import json
import pathlib
import re

from render_common import machine_line


def times_table(document: dict) -> str:
    lines = ["| notebook | first run: teachers and shared models cached, the rest trained | second run |",
             "| --- | --- | --- |"]
    lines += [f"| `{stem}.ipynb` | {document['first_run_seconds'][stem]:.0f} s | {seconds:.0f} s |"
              for stem, seconds in document["seconds"].items()]
    note = (f"Each notebook executed in order in a fresh kernel on a fresh cache; the teachers and the chain's "
            f"shared models were trained first, in {document['teachers_seconds']:.0f} s "
            f"(`python -m tutorial_utils teachers`).")
    return "\n".join(lines + ["", note, "", machine_line(document)])


def workshop_times_table(document: dict) -> str:
    """WORKSHOP's timing table: the two columns of README's, and the empty-cache round with no preparation."""
    lines = ["| notebook | first run after `python -m tutorial_utils teachers` | second run | empty cache, no "
             "preparation, in order |", "| --- | --- | --- | --- |"]
    lines += [f"| {stem[:2]} · {stem[3:].replace('_', ' ')} | {document['first_run_seconds'][stem]:.0f} s | "
              f"{seconds:.0f} s | {document['empty_cache_seconds'][stem]:.0f} s |"
              for stem, seconds in document["seconds"].items()]
    note = (f"The preparation took {document['teachers_seconds']:.0f} s. The empty-cache round ran first, each "
            f"notebook finding what the earlier ones had cached.")
    return "\n".join(lines + ["", note, "", machine_line(document)])


# A learner's pace, for WORKSHOP's agendas: technical prose with formulas, and per exercise the time to write
# it, run the check, read its message once and fix (graded), or to change a cell, run it and answer (experiment).
WORDS_PER_MINUTE, MINUTES_PER_GRADED, MINUTES_PER_EXPERIMENT = 150, 8, 10


EXERCISE = re.compile(r"^\*\*Exercise (\d+)\b", re.MULTILINE)


def workload(notebook_path: pathlib.Path) -> dict:
    """What a notebook asks of a learner: the words of its markdown before the Exercises heading, and its
    exercises split into graded ones (a locked cell that calls a check) and experiments (the others)."""
    cells = json.loads(notebook_path.read_text(encoding="utf-8"))["cells"]
    text = ["".join(c["source"]) for c in cells]
    start = next(i for i, (c, t) in enumerate(zip(cells, text))
                 if c["cell_type"] == "markdown" and re.search(r"^## Exercises", t, re.MULTILINE))
    words = sum(len(t.split()) for c, t in zip(cells[:start], text) if c["cell_type"] == "markdown")
    numbers = [int(n) for c, t in zip(cells[start:], text[start:]) if c["cell_type"] == "markdown"
               for n in EXERCISE.findall(t)]
    graded = {int(m.group(1)) for c in cells if c["cell_type"] == "code"
              and (meta := c["metadata"].get("nbgrader", {})).get("grade") and meta.get("locked")
              and (m := re.match(r"ex(\d+)-", meta.get("grade_id", "")))}
    return {"words": words, "graded": sorted(graded), "experiments": sorted(set(numbers) - graded)}


def workload_table(notebooks: pathlib.Path) -> str:
    """WORKSHOP's self-paced estimate per notebook, from the notebooks themselves (workload)."""
    lines = ["| notebook | words to read | reading | graded exercises | experiments | self-paced total |",
             "| --- | --- | --- | --- | --- | --- |"]
    total = 0
    for path in sorted(notebooks.glob("*.ipynb")):
        w = workload(path)
        reading = -(-w["words"] // WORDS_PER_MINUTE)
        graded, experiments = len(w["graded"]), len(w["experiments"])
        minutes = reading + MINUTES_PER_GRADED * graded + MINUTES_PER_EXPERIMENT * experiments
        total += minutes
        lines.append(f"| {path.stem[:2]} · {path.stem[3:].replace('_', ' ')} | about {round(w['words'], -2):,} | {reading} min | "
                     f"{graded} ({MINUTES_PER_GRADED * graded} min) | {experiments} "
                     f"({MINUTES_PER_EXPERIMENT * experiments} min) | about {5 * round(minutes / 5)} min |")
    note = (f"Words: the markdown before each notebook's Exercises heading, read at {WORDS_PER_MINUTE} words a "
            f"minute; {MINUTES_PER_GRADED} minutes per graded exercise, {MINUTES_PER_EXPERIMENT} per experiment; "
            f"{total / 60:.1f} hours for all seven. Counted from the notebooks by `python scripts/render_results.py`.")
    return "\n".join(lines + ["", note])
