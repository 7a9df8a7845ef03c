"""Render README's result tables from the committed result files in results/, so no number is typed by hand.

Each table sits between `<!-- results:NAME -->` and `<!-- end results -->` in README.md (and README.zh-CN.md,
WORKSHOP.md) and is made from results/NAME.json (a ledger written by the pipeline, or the int8 benchmark's
table), which records the `command` that produced it and the `machine` it ran on. Two blocks come from
files that are not measurements: the glossary (data/glossary.csv) and WORKSHOP's workload (the notebooks).

    python scripts/render_results.py           # rewrite the documents' tables
    python scripts/render_results.py --check   # exit 1 if a document differs from results/ and notebooks/

The renderers live beside this script, one file per kind of result: render_pipeline (the pipeline's ledgers
and the recipe studies), render_deploy and render_deploy_text (deployment), render_studies (beyond accuracy,
Fashion-MNIST), render_workshop (times, workload), render_answers (glossary, the article's questions), and
render_common (what they share).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

if str(pathlib.Path(__file__).resolve().parent) not in sys.path:   # the render_* modules beside this script,
    sys.path.append(str(pathlib.Path(__file__).resolve().parent))  # found last: nothing else is shadowed

import render_answers  # noqa: E402
import render_deploy  # noqa: E402
import render_deploy_text  # noqa: E402
import render_pipeline  # noqa: E402
import render_studies  # noqa: E402
import render_workshop  # noqa: E402
from render_common import ROOT# noqa: E402

from tutorial_utils import files  # noqa: E402

DOCUMENTS = ("README.md", "README.zh-CN.md", "WORKSHOP.md")
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end results -->)", re.DOTALL)


RENDERERS = {  # a block's kind (the longest known prefix of its name) and the function that renders its file
    "deploy-avx2-emulated": render_deploy.emulated_table, "deploy-avx2-masked": render_deploy.emulated_table,
    "deploy": render_deploy.deploy_table, "notebook-times": render_workshop.times_table,
    "fashion-recipe": render_studies.fashion_recipe_table, "fashion-deep-compression": render_studies.fashion_table,
    "beyond-accuracy": render_studies.beyond_table, "pipeline": render_pipeline.pipeline_table,
    "pipeline-seeds": render_pipeline.seeds_table, "pipeline-narrow": render_pipeline.ledger_over_seeds_table,
    "int8": render_pipeline.int8_table, "kd-sweep": render_pipeline.kd_sweep_table,
    "final-recipe": render_pipeline.final_recipe_table, "hint-sweep": render_pipeline.hint_sweep_table}


def render(readme: str, results: pathlib.Path) -> str:
    """README text with every results block re-made from its file."""
    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name == "glossary":   # not a measurement: the glossary's data file
            return match.group(1) + render_answers.glossary_table() + "\n" + match.group(4)
        if name == "workload":   # not a measurement: counted from the notebooks
            return match.group(1) + render_workshop.workload_table(results.parent / "notebooks") + "\n" + match.group(4)
        if name in ("article-answers", "article-answers-zh"):   # several result files at once
            language = "zh" if name.endswith("-zh") else "en"
            return match.group(1) + render_answers.article_answers_table(results, language) + "\n" + match.group(4)
        if name == "pipeline-notes":   # the bullets under the pipeline table
            document = json.loads((results / "pipeline.json").read_text())
            return match.group(1) + render_pipeline.pipeline_notes(document) + "\n" + match.group(4)
        if name == "workshop-times":   # WORKSHOP's three columns, from README's result file
            document = json.loads((results / "notebook-times.json").read_text())
            return match.group(1) + render_workshop.workshop_times_table(document) + "\n" + match.group(4)
        if name == "deploy-verdicts":   # every deployment run against the targets, one row per run and call
            return match.group(1) + render_deploy.deploy_verdicts(results) + "\n" + match.group(4)
        if name == "deploy-summary":   # the bullets under the deployment table
            document = json.loads((results / "deploy.json").read_text())
            return match.group(1) + render_deploy_text.deploy_summary(document) + "\n" + match.group(4)
        if name.startswith("deploy-isa-"):   # deploy-isa-<cpu>: deploy-<cpu>.json against deploy-<cpu>-avx2-masked.json
            cpu = name.removeprefix("deploy-isa-")
            native, masked = (json.loads((results / f"deploy-{cpu}{suffix}.json").read_text())
                              for suffix in ("", "-avx2-masked"))
            return match.group(1) + render_deploy.isa_comparison(native, masked) + "\n" + match.group(4)
        if name.startswith("deploy-targets-"):   # another CPU's run (deploy-<that CPU>.json): its call, its targets
            document = json.loads((results / f"deploy-{name.removeprefix('deploy-targets-')}.json").read_text())
            return match.group(1) + render_deploy_text.targets(document) + "\n" + match.group(4)
        kind = next((key for key in sorted(RENDERERS, key=len, reverse=True) if name.startswith(key)), None)
        if kind is None:  # a block is rendered by the longest known prefix of its name (pipeline-seeds-threads1)
            raise ValueError(f"README names results block {name!r}; known kinds: {sorted(RENDERERS)}")
        document = json.loads((results / f"{name}.json").read_text())
        return match.group(1) + RENDERERS[kind](document) + "\n" + match.group(4)

    return BLOCK.sub(replace, readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md differs from results/")
    args = parser.parse_args()
    stale = []
    for name in DOCUMENTS:
        readme_path = ROOT / name
        readme = readme_path.read_text(encoding="utf-8")
        rendered = render(readme, ROOT / "results")
        if args.check:
            if rendered != readme:
                stale.append(name)
        else:
            files.atomic_write(readme_path, lambda f, text=rendered: f.write(text.encode("utf-8")))
    if stale:
        print(f"{', '.join(stale)}: tables differ from results/ (or data/glossary.csv): run python "
              f"scripts/render_results.py", file=sys.stderr)
        return 1
    print("README tables match results/" if args.check else "tables re-made from results/ (and notebooks/, data/glossary.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
