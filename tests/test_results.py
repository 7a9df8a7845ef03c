"""README's result tables are made from the committed result files, never typed by hand."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).parents[1]
spec = importlib.util.spec_from_file_location("render_results", ROOT / "scripts" / "render_results.py")
render_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render_results)
import render_deploy  # noqa: E402  (beside render_results, which put scripts/ on the path)
import render_deploy_text  # noqa: E402
import render_workshop  # noqa: E402


def test_readme_tables_match_the_result_files():
    for name in render_results.DOCUMENTS:
        readme = (ROOT / name).read_text(encoding="utf-8")
        assert render_results.render(readme, ROOT / "results") == readme, f"{name}: run python scripts/render_results.py"
    assert (ROOT / "README.md").read_text().count("<!-- results:") >= 3


def test_every_result_file_says_how_and_where_it_was_made():
    for path in sorted((ROOT / "results").glob("*.json")):
        document = json.loads(path.read_text())
        assert document["command"].startswith("python "), path.name
        for key in ("cpu", "isa", "cores", "threads", "torch"):
            assert key in document["machine"], (path.name, key)


def test_a_changed_number_is_caught(tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = readme.index("<!-- results:pipeline -->")
    start = readme.index("| reference teacher", block)          # the first number of the first generated row
    end = readme.index("|", readme.index("|", start + 1) + 1)
    cell = readme[readme.index("|", start + 1):end + 1]         # "| 94.50% |"
    tampered = readme[:block] + readme[block:].replace(cell, cell.replace("%", "1%"), 1)
    assert tampered != readme
    assert render_results.render(tampered, ROOT / "results") != tampered


def test_another_cpus_deployment_verdict_comes_from_its_own_file(tmp_path):
    """Guards: a deploy-targets-<cpu> block reads results/deploy-<cpu>.json, not deploy.json, and a block naming
    a CPU without a result file fails by that file's name instead of rendering another machine's verdict."""
    document = json.loads((ROOT / "results" / "deploy-xeon.json").read_text())
    size = document["bytes"]
    size["narrow, ONNX Runtime int8-pixels"] = 10 * size["narrow, .dcmp file"]   # a miss only this copy has
    (tmp_path / "deploy-xeon.json").write_text(json.dumps(document))
    block = "<!-- results:deploy-targets-xeon -->\n<!-- end results -->"
    verdict = render_results.render(block, tmp_path)
    narrow = verdict.split("the narrow 784-32-10 model", 1)[1].split(";", 1)[0]
    assert "bytes (10.00x its .dcmp file)" in narrow, verdict
    assert "10.00x" not in render_results.render(block, ROOT / "results")
    try:
        render_results.render(block.replace("xeon", "arm"), ROOT / "results")
    except FileNotFoundError as exc:
        assert "deploy-arm.json" in str(exc)
    else:
        raise AssertionError("a block without its result file rendered")


def test_a_deployment_verdict_says_how_the_runtime_was_called():
    """Guards: with "Python wrapper" rows the verdict names the call it is judged by and what the wrapper would
    give; a file without them (from before bound_call) says it timed through the Python method."""
    document = json.loads((ROOT / "results" / "deploy-xeon.json").read_text())
    wrapped = "narrow, ONNX Runtime int8-pixels, Python wrapper"
    for rows in document["latency"].values():
        rows[wrapped]["speedups"] = [6.0, 4.97, 6.0]          # one slow pass through the wrapper: a miss
    verdict = render_deploy_text._deploy_targets(document)
    assert "by the runtime's own call; timed through onnxruntime's Python method it would miss" in verdict
    assert "threads 2, batch 256 (4.97x)" in verdict and "the Python wrapper" not in verdict
    assert "by its own call (1 and 2 threads), 4.97x and 4.97x through the wrapper" in render_deploy_text._wrapper(document)[0]
    assert "timed by its own call" in render_deploy.deploy_table(document)
    old = json.loads((ROOT / "results" / "deploy.json").read_text())
    assert "ort_call" not in old and render_deploy_text._wrapper(old) == []
    assert "timed through onnxruntime's Python method" in render_deploy.deploy_table(old)
    assert "own call" not in render_deploy_text._deploy_targets(old)


def test_the_chinese_readmes_typed_deployment_numbers_match_the_xeon_file():
    """README.zh-CN's paragraph on the Xeon's verdict is prose, not a rendered block: its numbers are checked here."""
    document = json.loads((ROOT / "results" / "deploy-xeon.json").read_text())
    own = min(min(rows["narrow, ONNX Runtime int8-pixels"]["speedups"]) for rows in document["latency"].values())
    at_1 = document["latency"]["threads 2, batch 1"]
    through = min(at_1["narrow, ONNX Runtime int8-pixels, Python wrapper"]["speedups"])
    added = 1e3 * (at_1["narrow, ONNX Runtime int8-pixels, Python wrapper"]["latency_ms"]
                   - at_1["narrow, ONNX Runtime int8-pixels"]["latency_ms"])
    text = (ROOT / "README.zh-CN.md").read_text().replace("\n", "")
    assert f"最慢的一遍为教师的 {own:.1f} 倍" in text and f"只有教师的 {through:.1f} 倍" in text
    assert f"多出约 {added:.1f} 微秒" in text
    masked = json.loads((ROOT / "results" / "deploy-xeon-avx2-masked.json").read_text())
    assert masked["machine"]["cpuid_mask"] == "avx2" and masked["machine"]["kernels"] == "AVX2"
    assert "窄模型的 int8-pixels 形式（按运行时自身的调用计时）仍达到全部部署目标（批大小 1 时余量很小；通过 Python 方法调用则达不到）" in text
    check = render_deploy_text.benchmarks.deploy_targets(masked, "narrow")
    assert check["misses"] == [] and min(check["slowest"].values()) < 5.5        # met, by a thin margin
    wrapped = "narrow, ONNX Runtime int8-pixels, Python wrapper"                  # and not through the wrapper
    assert min(min(rows[wrapped]["speedups"]) for rows in masked["latency"].values()) < 5


def test_both_readmes_answer_the_articles_faq_from_the_result_files(tmp_path):
    # The byte ratio of the chain is computed from pipeline.json, in English and in Chinese.
    rows = {r["stage"]: r for r in json.loads((ROOT / "results" / "pipeline.json").read_text())["rows"]}
    reference = rows["reference teacher 784-128-10 (float32)"]["bytes"]
    final = rows["4-bit QAT, sparse file + entropy coding"]["bytes"]
    for name, block, text in (("README.md", "article-answers", f"{reference / final:.1f}x smaller"),
                              ("README.zh-CN.md", "article-answers-zh", f"1/{reference / final:.1f}")):
        readme = (ROOT / name).read_text(encoding="utf-8")
        answers = readme.split(f"<!-- results:{block} -->", 1)[1].split("<!-- end results -->", 1)[0]
        assert text in answers and "deploy.json" in answers and "pipeline-seeds-threads1.json" in answers, name


def test_the_committed_notebook_times_keep_the_budget():
    """Each notebook within 45 s on the machine of the record, on its first run (teachers cached, the rest
    trained, as in CI's test session) as well as with everything cached."""
    document = json.loads((ROOT / "results" / "notebook-times.json").read_text())
    stems = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    for run in ("first_run_seconds", "seconds"):
        assert sorted(document[run]) == stems, run
        assert all(0 < seconds <= 45 for seconds in document[run].values()), (run, document[run])
    # without the preparation a notebook also trains the teachers: longer, and WORKSHOP says so from this round
    assert sorted(document["empty_cache_seconds"]) == stems
    assert "<!-- results:workshop-times -->" in (ROOT / "WORKSHOP.md").read_text()


def test_workshop_workload_is_counted_from_the_notebooks(tmp_path):
    """Guards: WORKSHOP's agenda table counts the prose before the Exercises heading (not after) and splits
    the exercises into graded ones (a locked grade cell ex<N>-...) and experiments (the rest)."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    graded = nbformat.v4.new_code_cell("exercises.check_x(f)")
    graded.metadata["nbgrader"] = {"grade": True, "locked": True, "grade_id": "ex2-x-check", "points": 2}
    notebook.cells = [nbformat.v4.new_markdown_cell("# Title\n\none two three"),
                      nbformat.v4.new_code_cell("x = 1  # code is not reading"),
                      nbformat.v4.new_markdown_cell("## Pitfalls\n\nfour five"),
                      nbformat.v4.new_markdown_cell("## Exercises\n\n**Exercise 1 (try).** many words here"),
                      nbformat.v4.new_markdown_cell("**Exercise 2 (write).** more"), graded,
                      nbformat.v4.new_markdown_cell("**Exercise 3 (look).** and Exercise 4 is not a heading")]
    path = tmp_path / "01_teacher.ipynb"
    nbformat.write(notebook, path)
    assert render_workshop.workload(path) == {"words": 9, "graded": [2], "experiments": [1, 3]}
    table = render_workshop.workload_table(tmp_path)
    assert "| 01 · teacher | about 0 | 1 min | 1 (8 min) | 2 (20 min) | about 30 min |" in table
    assert "<!-- results:workload -->" in (ROOT / "WORKSHOP.md").read_text()


def test_the_emulated_cpu_check_needs_qemu_and_says_where_to_get_it(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("emulated_avx2", ROOT / "scripts" / "emulated_avx2.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script.shutil, "which", lambda name: None)
    monkeypatch.setattr(script.sys, "argv", ["emulated_avx2.py"])
    assert script.main() == 2
    error = capsys.readouterr().err
    assert "qemu-x86_64 not found" in error and "apt install qemu-user" in error


def test_the_emulated_table_shows_a_drifting_deployment_as_it_is():
    document = json.loads((ROOT / "results" / "deploy-avx2-emulated.json").read_text())
    table = render_deploy.emulated_table(document)
    control = next(line for line in table.splitlines() if "8bit-weights" in line)
    assert "| 100.0% |" not in control                                   # the control's predictions moved
    assert all("| 0 | 100.0% |" in line for line in table.splitlines()
               if line.startswith("| ONNX Runtime") and "8bit-weights" not in line)


def test_the_masked_run_computes_what_the_emulated_one_does_and_is_labelled_masked():
    """Guards: the CPUID mask puts the libraries on the AVX2 paths QEMU's Haswell does (the control drifts the
    same), and its table says masked, not emulated."""
    emulated, masked = (json.loads((ROOT / "results" / f"deploy-avx2-{kind}.json").read_text())
                        for kind in ("emulated", "masked"))
    assert masked["runner"] == "masked" and masked["emulated"]["cpu_features"] == emulated["emulated"]["cpu_features"]
    assert masked["rows"] == emulated["rows"]
    table = render_deploy.emulated_table(masked)
    header, note = table.splitlines()[0], table.split("\n\n")[1]
    assert "masked vs native" in header and "emulated" not in header + note and "scripts/masked_avx2.py" in note


def test_the_isa_comparison_needs_one_cpus_native_and_masked_runs():
    native, masked = (json.loads((ROOT / "results" / f"deploy-xeon{suffix}.json").read_text())
                      for suffix in ("", "-avx2-masked"))
    text = render_deploy.isa_comparison(native, masked)
    assert "absolute times are not compared" in text and "on the AVX2 code paths" in text
    for wrong in ((masked, native), (json.loads((ROOT / "results" / "deploy.json").read_text()), masked)):
        try:
            render_deploy.isa_comparison(*wrong)
        except ValueError as exc:
            assert "without a CPUID mask" in str(exc)
        else:
            raise AssertionError("compared runs that are not one CPU's native and masked runs")


def test_the_verdicts_table_has_every_run_and_call(tmp_path):
    """One row per deployment run and call path, a masked run after its CPU's native one; the wrapper's verdict is
    judged on the wrapper's rows (a miss only they have shows only in that row)."""
    table = render_deploy.deploy_verdicts(ROOT / "results").splitlines()[2:]
    assert [row.split(" | ")[:2] for row in table] == [
        ["| AMD EPYC", "through the Python method"], ["| Intel Xeon", "the runtime's own call"],
        ["| Intel Xeon", "through the Python method"],
        ["| Intel Xeon, its AVX2 code paths (CPUID masked)", "the runtime's own call"],
        ["| Intel Xeon, its AVX2 code paths (CPUID masked)", "through the Python method"]]
    document = json.loads((ROOT / "results" / "deploy-xeon.json").read_text())
    for rows in document["latency"].values():
        rows["narrow, ONNX Runtime int8-pixels, Python wrapper"]["speedups"] = [9.0, 9.0, 9.0]   # the wrapper passes
        rows["narrow, ONNX Runtime int8-pixels"]["speedups"] = [4.0, 9.0, 9.0]                   # its own call misses
    (tmp_path / "deploy.json").write_text(json.dumps(document))
    own, wrapped = render_deploy.deploy_verdicts(tmp_path).splitlines()[2:]
    assert "| the runtime's own call | misses threads 1, batch 1 (4.0x)" in own
    assert "| through the Python method | meets every target |" in wrapped
