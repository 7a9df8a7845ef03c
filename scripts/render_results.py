"""Render README's result tables from the committed result files in results/, so no number is typed by hand.

Each table sits between `<!-- results:NAME -->` and `<!-- end results -->` in README.md (and README.zh-CN.md,
WORKSHOP.md) and is made from results/NAME.json (a ledger written by the pipeline, or the int8 benchmark's
table), which records the `command` that produced it and the `machine` it ran on. Two blocks come from
files that are not measurements: the glossary (data/glossary.csv) and WORKSHOP's workload (the notebooks).

    python scripts/render_results.py           # rewrite the documents' tables
    python scripts/render_results.py --check   # exit 1 if a document differs from results/ and notebooks/
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import re
import sys

from tutorial_utils import benchmarks, files, stats, student_t

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "README.zh-CN.md", "WORKSHOP.md")
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end results -->)", re.DOTALL)


WRAPPER = ", Python wrapper"   # bench_deploy's rows timed through onnxruntime's Python method


def cpu_name(document: dict, language: str = "en") -> str:
    """The CPU of a result file's machine record, short: "Intel Xeon" for "Intel(R) Xeon(R) Processor"; with
    its CPUID masked (scripts/masked_avx2.py), the code paths it ran."""
    name = document["machine"]["cpu"].replace("(R)", "").replace(" Processor", "")
    mask = (document["machine"].get("cpuid_mask") or "").upper()
    if not mask:
        return name
    return f"{name}，CPUID 屏蔽为 {mask} 的代码路径" if language == "zh" else f"{name}, its {mask} code paths (CPUID masked)"


def machine_line(document: dict) -> str:
    m = document["machine"]
    isa = ", ".join(m.get("isa") or []) or "no AVX2"
    if m.get("cpuid_mask"):   # scripts/masked_avx2.py: the hardware's flags, but the libraries were shown less
        isa += f"; CPUID masked to {m['cpuid_mask'].upper()} by `scripts/masked_avx2.py`, torch kernels {m.get('kernels')}"
    peak = f", float32 peak {m['peak_gflops']:.0f} GFLOP/s" if m.get("peak_gflops") else ""
    return (f"*Measured with `{document['command']}` on {m['cpu']} ({isa}), {m['cores']} cores, "
            f"{m['threads']} thread{'' if m['threads'] == 1 else 's'}, torch {m['torch']}{peak}.*")


def _energy(nj: float) -> str:
    return f"{nj / 1e6:.1f} mJ" if nj >= 1e6 else f"{nj / 1e3:.1f} µJ" if nj >= 1e3 else f"{nj:.0f} nJ"


def pipeline_table(document: dict) -> str:
    rows = document["rows"]
    reference = rows[0]["bytes"]
    batch = document.get("latency_batch_size", 256)
    lines = ["| stage | test accuracy | non-zeros | bytes on disk | vs reference file | latency | of float32 peak | "
             f"energy per image, batch 1 (estimate) | at batch {batch} |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, row in enumerate(rows):
        ratio = reference / row["bytes"]
        size = "1x" if i == 0 else f"({1 / ratio:.0f}x larger)" if ratio < 1 else f"{ratio:.{0 if ratio < 10 else 1}f}x"
        latency = f"{row['latency_ms']:.3f} ms" if row["latency_ms"] < 1 else f"{row['latency_ms']:.1f} ms"
        of_peak = f"{row['of_peak']:.1%}" if row.get("of_peak") is not None else ""
        lines.append(f"| {row['stage']} | {row['accuracy']:.2%} | {row['nonzeros']:,} | {row['bytes']:,} | {size} | "
                     f"{latency} | {of_peak} | {_energy(row['energy_nj'])} | {_energy(row['energy_nj_batch'])} |")
    return "\n".join(lines + ["", machine_line(document)])


def seeds_table(document: dict) -> str:
    seeds = document["rows"][0]["seeds"]
    lines = ["| stage | test accuracy, mean ± std | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "| --- | --- | " + " | ".join("---" for _ in seeds) + " |"]
    for row in document["rows"]:
        per_seed = " | ".join(f"{a:.2%}" for a in row["accuracies"])
        lines.append(f"| {row['stage']} | {row['accuracy']:.2%} ± {row['accuracy_std']:.2%} | {per_seed} |")
    return "\n".join(lines + ["", machine_line(document)])


def _versus(ratio: float) -> str:
    if abs(ratio - 1) < 1e-9:
        return "1x"
    return f"{ratio:.1f}x lower" if ratio >= 1 else f"{1 / ratio:.{1 if ratio > 0.1 else 0}f}x higher"


def ledger_over_seeds_table(document: dict) -> str:
    """A pipeline ledger over seeds with its costs: accuracy mean ± std, MACs, bytes and the first seed's latency."""
    rows, batch = document["rows"], document.get("latency_batch_size", 256)
    reference = rows[0]["latency_ms"]
    lines = [f"| stage | test accuracy, mean ± std over {len(rows[0]['seeds'])} seeds | MACs per image | bytes on disk | "
             f"latency at batch {batch} (seed 0) | vs the reference teacher's |", "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['stage']} | {row['accuracy']:.2%} ± {row['accuracy_std']:.2%} | {row['macs']:,} | "
                     f"{row['bytes']:,} | {row['latency_ms']:.3f} ms | {_versus(reference / row['latency_ms'])} |")
    return "\n".join(lines + ["", machine_line(document)])


def int8_table(document: dict) -> str:
    backends = document["backends"]
    names = {"torchao": "torchao (eager)", "torchao+compile": "torchao + `torch.compile`",
             "legacy": "legacy `quantize_dynamic` (deprecated)"}
    lines = ["| batch | float32 | " + " | ".join(names.get(b, b) for b in backends) + " |",
             "| --- | --- | " + " | ".join("---" for _ in backends) + " |"]
    for row in document["rows"]:
        cells = [row[b] if isinstance(row[b], str) else f"{row['fp32'] / row[b]:.2f}x" for b in backends]
        lines.append(f"| {row['batch_size']} | {row['fp32']:.3f} ms | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", machine_line(document)])


def kd_sweep_table(document: dict) -> str:
    rows = document["rows"]
    baseline = rows[0]["accuracies"]
    lines = [f"| recipe | held-out accuracy ({document['holdout_images']} images), mean ± std | "
             "vs no teacher, paired by seed (points, mean ± std) | seeds higher | 95% t interval of the difference "
             "(points) |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        recipe = ("no teacher" if row["teacher"] == "none"
                  else f"{row['teacher']}, T = {row['temperature']:g}, α = {row['alpha']:g}")
        mean, std = stats.mean_std(row["accuracies"])
        differences = [100 * (a - b) for a, b in zip(row["accuracies"], baseline)]
        d_mean, d_std = stats.mean_std(differences)
        higher = sum(d > 0 for d in differences)
        interval = "" if row is rows[0] else t_interval(*stats.paired_interval(row["accuracies"], baseline))
        lines.append(f"| {recipe} | {mean:.2%} ± {std:.2%} | {d_mean:+.2f} ± {d_std:.2f} | "
                     f"{'' if row is rows[0] else f'{higher} of {len(differences)}'} | {interval} |")
    return "\n".join(lines + ["", machine_line(document)])


def t_interval(mean: float, low: float, high: float) -> str:
    """A paired difference's 95% t interval in points, and whether it includes zero (stats.paired_interval)."""
    return f"{100 * low:+.2f} to {100 * high:+.2f}: {'includes' if low <= 0 <= high else 'excludes'} zero"


def hint_sweep_table(document: dict) -> str:
    rows = document["rows"]
    logit = next(row for row in rows if row["recipe"] == "logit distillation")["accuracies"]
    lines = [f"| recipe (T = {document['temperature']:g}, α = {document['alpha']:g}) | held-out accuracy "
             f"({document['holdout_images']} images), mean ± std | vs logit distillation, paired by seed (points, mean ± std) | "
             "95% t interval of the difference (points) |", "| --- | --- | --- | --- |"]
    for row in rows:
        mean, std = stats.mean_std(row["accuracies"])
        if row["accuracies"] is logit:
            lines.append(f"| {row['recipe']} | {mean:.2%} ± {std:.2%} |  |  |")
            continue
        d_mean, d_std = stats.mean_std([100 * (a - b) for a, b in zip(row["accuracies"], logit)])
        lines.append(f"| {row['recipe']} | {mean:.2%} ± {std:.2%} | {d_mean:+.2f} ± {d_std:.2f} | "
                     f"{t_interval(*stats.paired_interval(row['accuracies'], logit))} |")
    return "\n".join(lines + ["", machine_line(document)])


def final_recipe_table(document: dict) -> str:
    """Compression recipes of the final model on held-out data (scripts/final_recipe.py), paired by seed."""
    rows = document["rows"]
    n = len(rows[0]["seeds"])
    lines = [f"| recipe | held-out accuracy ({document['holdout_images']} images), mean ± std over {n} seeds | "
             "vs the pipeline's recipe (points, mean ± standard error; 95% t interval) | vs the 784-128-10 teacher "
             "(points, mean ± standard error; 95% t interval) |", "| --- | --- | --- | --- |"]

    t_q = student_t.quantile(0.95, n - 1)

    def paired(difference: list[float] | None) -> str:
        if difference is None:
            return ""
        mean, se = difference
        return f"{100 * mean:+.2f} ± {100 * se:.2f}; {t_interval(mean, mean - t_q * se, mean + t_q * se)}"

    for row in rows:
        mean, std = stats.mean_std(row["accuracies"])
        lines.append(f"| {row['recipe']} | {mean:.2%} ± {std:.2%} | {paired(row['vs_pipeline'])} | "
                     f"{paired(row['vs_teacher'])} |")
    chosen = document["chosen"] or "none; the pipeline's recipe stays"
    return "\n".join(lines + ["", f"Chosen (a gain over the pipeline's recipe whose 95% t interval lies above zero): {chosen}.",
                              "", machine_line(document)])


def deploy_table(document: dict) -> str:
    settings = list(document["latency"])                        # "threads 1, batch 1", ...
    names = list(document["latency"][settings[0]])
    seeds = len(document["seeds"])
    lines = [f"| model, runtime | test accuracy, mean ± std over {seeds} seeds | bytes on disk | "
             + " | ".join(f"{s}: latency (vs teacher)" for s in settings) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in settings) + " |"]
    for name in names:
        values = document["accuracy"].get(name)
        accuracy = "—" if not values else "{:.2%} ± {:.2%}".format(*stats.mean_std(values))
        size = document["bytes"].get(name)
        cells = [f"{document['latency'][s][name]['latency_ms'] * 1e3:.1f} µs "
                 f"({document['latency'][s][name]['speedup']:.1f}x)" for s in settings]
        lines.append(f"| {name} | {accuracy} | {'—' if size is None else f'{size:,}'} | " + " | ".join(cells) + " |")
    files = ", ".join(f"{k}: {v:,}" for k, v in document["bytes"].items() if "ONNX" not in k)
    passes = document.get("passes", 1)
    timing = (f" Latencies: medians over rounds, then over {passes} independent passes; ratios: medians of the "
              f"per-round ratios to the teacher, then over the passes, so a ratio can differ from the quotient of "
              f"the latencies shown (a round in which the shared machine slowed down weighs differently)."
              if passes > 1 else "")
    # files from before ort_session.bound_call recorded no "ort_call": they timed through the Python method
    call = (" ONNX Runtime timed by its own call (the session's C++ object, `ort_session.bound_call`); the "
            "\"Python wrapper\" rows time the same files through onnxruntime's `run_with_iobinding`."
            if document.get("ort_call") == "direct" else
            " ONNX Runtime timed through onnxruntime's Python method (`run_with_iobinding`).")
    answered = document.get("cpuid_answered_per_pass")   # scripts/masked_avx2.py: CPUIDs while timing, per pass
    answered = ("" if answered is None else f" CPUID instructions the mask answered during each timing pass: "
                f"{', '.join(map(str, answered))} (each one a signal and two system calls; "
                + ("none: no CPUID on a timed path)." if not any(answered) else
                   "none in the last pass, when every model had run before: no CPUID on a timed path)." if answered[-1] == 0
                   else "some in the last pass too: a CPUID may sit on a timed path, and the times are suspect)."))
    return "\n".join(lines + ["", f"Other files: {files} bytes.{timing}{call}{answered}", "", machine_line(document)])


def pipeline_notes(document: dict) -> str:
    """What one pipeline ledger says, with its numbers (the bullets under README's pipeline table)."""
    rows = document["rows"]
    reference = rows[0]
    final = next(r for r in rows if r["stage"].endswith("+ entropy coding"))
    backend = next(r for r in rows if r["stage"].startswith("deployed"))
    runtime = [r for r in rows if r["stage"].startswith("ONNX Runtime")]
    fastest = min(rows, key=lambda r: r["latency_ms"])
    images = round(abs(backend["accuracy"] - final["accuracy"]) * 1000)
    lines = [
        f"- In this run the final model is {100 * (reference['accuracy'] - final['accuracy']):.1f} points below the "
        f"reference teacher with a file {reference['bytes'] / final['bytes']:.1f}x smaller. On PyTorch's int8 backend "
        f"it scores {100 * (backend['accuracy'] - final['accuracy']):+.1f} points ({images} of 1,000 images) and takes "
        f"{backend['latency_ms']:.3f} ms at batch 256 against the reference's {reference['latency_ms']:.3f} ms "
        f"({reference['latency_ms'] / backend['latency_ms']:.1f}x lower; the pipeline also prints a side-by-side ratio)."]
    paired = document.get("notes", {}).get("final_vs_teacher")
    if paired:   # stats.PairedTest as a dict: one run's image-by-image comparison
        verdict = ("one run cannot tell the two apart" if paired["low"] <= 0 <= paired["high"] else
                   "this run's gap is larger than its noise")
        lines.append(
            f"- Paired image by image with the reference (the pipeline's last lines): {paired['diff']:+.2%}, "
            f"{paired['confidence']:.0%} interval {paired['low']:+.2%} to {paired['high']:+.2%}, "
            f"p = {paired['p_value']:.2g}, decided by the {paired['only_a'] + paired['only_b']} images where they "
            f"disagree ({paired['only_a']} right only for the final model, {paired['only_b']} only for the reference): "
            f"{verdict}, and the seeds below say how far the final model can fall.")
    if runtime:
        pixels = next((r for r in runtime if "int8-pixels" in r["stage"]), None)
        lines.append(
            f"- The {len(runtime)} ONNX Runtime rows (`--deploy onnx`) run the same model from files of "
            + ", ".join(f"{r['bytes']:,}" for r in runtime) + " bytes (dense kernels: each zero weight is stored)"
            + (f"; the int8-pixels file, the codes meeting the raw uint8 image, scores {pixels['accuracy']:.2%}"
               + (" like the .dcmp file's model" if pixels["accuracy"] == final["accuracy"] else
                  f" against the .dcmp file's model's {final['accuracy']:.2%}") if pixels else "")
            + f". The fastest row of this ledger is \"{fastest['stage']}\", {fastest['latency_ms']:.3f} ms "
            f"({reference['latency_ms'] / fastest['latency_ms']:.1f}x lower than the reference's); the energy columns "
            f"of these rows are those of the PyTorch model doing the same arithmetic, with the 4-bit row's weights read "
            f"packed, as MatMulNBits holds them.")
    lines.append(
        f"- \"Of float32 peak\" divides each model's achieved 2 x MACs x 256 / latency by the machine's measured "
        f"matrix-product peak: integer kernels can pass 100% (up to {100 * max(r['of_peak'] for r in rows):.0f}% here), "
        f"since an int8 multiply-add is cheaper than a float32 one.")
    return "\n".join(lines)


def deploy_summary(document: dict) -> str:
    """What the deployment table supports, with its numbers (the bullets under it in README)."""
    latency = document["latency"]

    def at(name: str, batch: int, key: str = "speedup") -> tuple[float, float]:
        return tuple(latency[f"threads {t}, batch {batch}"][name][key] * (1 if key == "speedup" else 1e3) for t in (1, 2))

    def spread(name: str, batch: int) -> str:   # the range over passes, when there are several
        ranges = [latency[f"threads {t}, batch {batch}"][name].get("speedups", []) for t in (1, 2)]
        if min(len(r) for r in ranges) < 2:
            return ""
        def one(r: list[float]) -> str:
            low, high = f"{min(r):.1f}", f"{max(r):.1f}"
            return f"{low}x in every pass" if low == high else f"{low}x to {high}x"
        return f" (over {len(ranges[0])} passes: {one(ranges[0])}; {one(ranges[1])})"

    # the compressed models in ONNX Runtime (the teacher there is the same-runtime baseline, _same_runtime)
    runtime = [name for name in latency["threads 1, batch 1"] if "ONNX Runtime" in name
               and not name.startswith("teacher") and not name.endswith(WRAPPER)]
    best = [max(runtime, key=lambda n: latency[f"threads {t}, batch 1"][n]["speedup"]) for t in (1, 2)]
    calls = [latency[s][n]["latency_ms"] * 1e3 for s in latency if s.endswith("batch 1") for n in runtime]
    narrow, final = at("narrow, ONNX Runtime int8-pixels", 256), at("final, ONNX Runtime int8-pixels", 256)
    narrow_1 = at("narrow, ONNX Runtime int8-pixels", 1)
    narrow_us, teacher_us = at("narrow, ONNX Runtime int8-pixels", 256, "latency_ms"), \
        at("teacher, PyTorch eager float32", 256, "latency_ms")
    ratios = [latency[f"threads {t}, batch 1"][name]["speedup"] for t, name in zip((1, 2), best)]
    narrow_time, teacher_time = "the narrow int8-pixels model's time", "the PyTorch teacher's"
    best_text = (f"the row \"{best[0]}\": {ratios[0]:.1f}x at 1 thread, {ratios[1]:.1f}x at 2{spread(best[0], 1)}"
                 if best[0] == best[1] else
                 f"\"{best[0]}\" at 1 thread ({ratios[0]:.1f}x) and \"{best[1]}\" at 2 ({ratios[1]:.1f}x)")
    return "\n".join([
        f"- At batch 256 the narrow student with its first layer on the raw pixels (int8-pixels) is {narrow[0]:.1f}x "
        f"faster than the teacher at 1 thread and {narrow[1]:.1f}x at 2{spread('narrow, ONNX Runtime int8-pixels', 256)}; "
        f"the 90%-sparse final model in the same form {final[0]:.1f}x and {final[1]:.1f}x"
        f"{spread('final, ONNX Runtime int8-pixels', 256)}. No pass over the input turns it into int8 (it already is: 8-bit "
        f"pixels), and the product of codes and pixels is exact. The teacher is timed on float32 input already "
        f"normalised, so the comparison favours it.",
        f"- In the medians a second thread {_thread_change(*narrow_us, narrow_time)} "
        f"({narrow_us[0]:.1f} µs at 1, {narrow_us[1]:.1f} µs at 2) and {_thread_change(*teacher_us, teacher_time)} "
        f"float32 GEMM's ({teacher_us[0]:.1f} µs, {teacher_us[1]:.1f} µs): ratios measured at one "
        f"thread count do not carry over to another.",
        f"- At batch 1 the best is {best_text}; the narrow int8-pixels model, fastest at batch 256, is "
        f"{narrow_1[0]:.1f}x and {narrow_1[1]:.1f}x{spread('narrow, ONNX Runtime int8-pixels', 1)}. Every ONNX "
        f"Runtime call of these models takes {min(calls):.1f} to {max(calls):.1f} µs, a good part of it the "
        f"runtime's fixed cost per call rather than arithmetic (notebook 06, exercise 4, measures a "
        f"call that does almost nothing), so the gain at batch 1 is set by that cost more than by the number format.",
        *_wrapper(document), _same_runtime(document), _deploy_files_and_accuracy(document), _deploy_targets(document)])


def _range(low: float, high: float) -> str:
    """'0.6 to 0.8', or 'about 0.8' when both round alike."""
    return f"about {low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f} to {high:.1f}"


def _wrapper(document: dict) -> list[str]:
    """The bullet on what onnxruntime's Python method adds per call (none for a run without those rows)."""
    latency, name = document["latency"], "narrow, ONNX Runtime int8-pixels"
    if f"{name}{WRAPPER}" not in latency["threads 1, batch 1"]:
        return []
    rows = [latency[f"threads {t}, batch 1"] for t in (1, 2)]
    added = [1e3 * (r[f"{m}{WRAPPER}"]["latency_ms"] - r[m]["latency_ms"]) for r in rows
             for m in (name, "final, ONNX Runtime int8-pixels")]
    own, through = ([min(r[n]["speedups"]) for r in rows] for n in (name, f"{name}{WRAPPER}"))
    return [f"- Those times are the runtime's own call, made on the session's C++ object from Python. Through "
            f"onnxruntime's Python `run_with_iobinding` (the \"Python wrapper\" rows: the same files, bindings and "
            f"options) each batch-1 call took {_range(min(added), max(added))} µs more (medians), mostly the "
            f"wrapper's checks for WebGPU graph capture, which it makes on every call, a CPU session's too. At batch 1 the narrow int8-pixels model's slowest pass is "
            f"{_speed(own[0])} and {_speed(own[1])} the teacher's speed by its own call (1 and 2 threads), "
            f"{_speed(through[0])} and {_speed(through[1])} through the wrapper, as a Python service calling it would see."]


def _speed(value: float) -> str:
    """A speed-up to one decimal, but a miss of the target never printed as reaching it (benchmarks.miss_text)."""
    target = benchmarks.TARGET_SPEEDUP
    return f"{benchmarks.miss_text(value, target) if value < target else f'{value:.1f}'}x"


def _same_runtime(document: dict) -> str:
    """The runtime's share of the ratios: the teacher itself in ONNX Runtime float32, and the models against it."""
    latency = document["latency"]

    def ratio(over: str, under: str, batch: int) -> str:   # at 1 and 2 threads, one figure if they agree
        # the ratio of the two speed-ups over the PyTorch teacher, each a median of per-round ratios
        speedups = [latency[f"threads {t}, batch {batch}"] for t in (1, 2)]
        values = [f'{s[under]["speedup"] / s[over]["speedup"]:.1f}x' for s in speedups]
        return values[0] if values[0] == values[1] else f"{values[0]} and {values[1]}"

    eager, runtime = "teacher, PyTorch eager float32", "teacher, ONNX Runtime float32"
    narrow, final = "narrow, ONNX Runtime int8-pixels", "final, ONNX Runtime int8-pixels"
    return (f"- Part of every ratio above is the runtime, not the compression: the teacher itself, unchanged, runs "
            f"{ratio(eager, runtime, 1)} faster in ONNX Runtime float32 than in PyTorch eager at batch 1 (1 and 2 "
            f"threads; medians) and {ratio(eager, runtime, 256)} at batch 256. Against that teacher in the same "
            f"runtime, what compression buys: the narrow int8-pixels model {ratio(runtime, narrow, 1)} at batch 1 "
            f"and {ratio(runtime, narrow, 256)} at batch 256; the 90%-sparse final model "
            f"{ratio(runtime, final, 1)} at batch 1 and {ratio(runtime, final, 256)} at batch 256. At batch 1 the "
            f"compression's share is modest, held down by the call's fixed cost, and most of the gain over PyTorch "
            f"is the runtime's; at batch 256 most is the compression's.")


def _thread_change(one: float, two: float, what: str) -> str:
    """What a second thread did to `what`, a latency (one thread: `one`, two: `two`), in words."""
    change = two / one - 1
    if abs(change) < 0.05:
        return f"changes {what} by less than 5%"
    return f"takes {-change:.0%} off {what}" if change < 0 else f"adds {change:.0%} to {what}"


def _deploy_targets(document: dict) -> str:
    """The deployment targets (benchmarks.deploy_targets), checked for each model's int8-pixels file."""
    verdicts = []
    for model, label in (("narrow", "the narrow 784-32-10 model"), ("final", "the 90%-sparse final model")):
        check = benchmarks.deploy_targets(document, model)
        met = (f"meets every one (slowest pass {min(check['slowest'].values()):.1f}x, {check['gap_points']:+.2f} "
               f"points, {check['bytes_ratio']:.2f}x its .dcmp file)") if not check["misses"] else \
            f"misses {', '.join(check['misses'])}"
        verdicts.append(f"{label} {met}")
    if f"narrow, ONNX Runtime int8-pixels{WRAPPER}" in document["latency"]["threads 1, batch 1"]:   # depends on the call
        misses = benchmarks.deploy_targets(document, "narrow", timed=WRAPPER)["misses"]
        verdicts[0] += (" by the runtime's own call; timed through onnxruntime's Python method it " +
                        (f"would miss {', '.join(misses)}" if misses else "meets them too"))
    accuracy, halves = document["accuracy"], {}
    for model in ("narrow", "final"):   # half-widths of the paired t intervals against the teacher, in points
        _, low, high = stats.paired_interval(accuracy[f"{model}, ONNX Runtime int8-pixels"],
                                             accuracy["teacher, PyTorch eager float32"])
        halves[model] = 50 * (high - low)
    caveat = (f"; the paired 95% t intervals of the two models' gaps to the teacher reach {halves['narrow']:.2f} and {halves['final']:.2f} "
              f"points either side of the mean gap, so {len(document['seeds'])} seeds cannot show a gap smaller than "
              f"0.5 points") if min(halves.values()) > 0.5 else ""
    mask = document["machine"].get("cpuid_mask")
    where = f"this CPU's {mask.upper()} code paths (CPUID masked)" if mask else "this CPU"
    return ("- Against the deployment targets (at least 5x the teacher's speed at batch 1 and 256, at 1 and 2 "
            "threads, in every pass; accuracy within 0.5 points of the teacher's as a mean over the seeds; an ONNX "
            f"file at most 1.5x the .dcmp file), in int8-pixels form on {where}: " + "; ".join(verdicts) + ". The "
            f"accuracy target is judged on the mean, as it is stated{caveat}.")


def deploy_runs(results: pathlib.Path) -> dict[pathlib.Path, dict]:
    """The deployment benchmark's result files (those with latencies): deploy.json, then each deploy-<cpu>.json,
    a CPU's run with its CPUID masked after its native one."""
    paths = [results / "deploy.json", *sorted(results.glob("deploy-*.json"))]
    runs = {path: json.loads(path.read_text()) for path in paths}
    runs = {path: document for path, document in runs.items() if "latency" in document}
    return dict(sorted(runs.items(), key=lambda item: (item[0].name != "deploy.json", item[0].name.replace(
        "-avx2-masked", ""), bool(item[1]["machine"].get("cpuid_mask")))))


def deploy_verdicts(results: pathlib.Path) -> str:
    """Every deployment run's verdict on the targets (benchmarks.deploy_targets), one row per run and call path:
    the int8-pixels files of the narrow and the final model, timed by the runtime's own call and, where the
    run has them, through onnxruntime's Python method ("Python wrapper" rows; the same files, so the same
    accuracy and bytes)."""
    lines = ["| run | ONNX Runtime timed | narrow 784-32-10 | 90%-sparse final | file |", "| --- | --- | --- | --- | --- |"]
    for path, document in deploy_runs(results).items():
        calls = [("the runtime's own call" if document.get("ort_call") == "direct" else "through the Python method", "")]
        if f"narrow, ONNX Runtime int8-pixels{WRAPPER}" in document["latency"]["threads 1, batch 1"]:
            calls.append(("through the Python method", WRAPPER))
        for how, timed in calls:
            verdicts = []
            for model in ("narrow", "final"):
                misses = benchmarks.deploy_targets(document, model, timed=timed)["misses"]
                verdicts.append("misses " + ", ".join(misses) if misses else "meets every target")
            lines.append(f"| {cpu_name(document)} | {how} | {verdicts[0]} | {verdicts[1]} | `{path.name}` |")
    return "\n".join(lines)


def isa_comparison(native: dict, masked: dict) -> str:
    """What the AVX2 code paths change (bench_deploy on one CPU, native and with CPUID masked to AVX2).

    Only ratios measured within one run are compared: the two runs were minutes apart on a shared machine.
    """
    if native["machine"]["cpu"] != masked["machine"]["cpu"] or native["machine"].get("cpuid_mask") \
            or not masked["machine"].get("cpuid_mask"):
        raise ValueError(f"isa_comparison needs one CPU's run without a CPUID mask and its run with one; got "
                         f"{native['machine']['cpu']!r} (mask {native['machine'].get('cpuid_mask')!r}) and "
                         f"{masked['machine']['cpu']!r} (mask {masked['machine'].get('cpuid_mask')!r})")
    teacher, narrow = "teacher, PyTorch eager float32", "narrow, ONNX Runtime int8-pixels"
    paths = f"{masked['machine']['cpuid_mask'].upper()} code paths"
    one, many = "threads 1, batch 1", "threads 1, batch 256"

    def slowest(document: dict, setting: str) -> float:   # the narrow int8-pixels model's worst pass
        return min(document["latency"][setting][narrow]["speedups"])

    def median(document: dict, setting: str) -> float:
        return document["latency"][setting][narrow]["speedup"]

    def over_float32(document: dict, model: str, setting: str = many) -> float:   # int8-pixels against float32
        rows = document["latency"][setting]
        return rows[f"{model}, ONNX Runtime float32"]["latency_ms"] / rows[f"{model}, ONNX Runtime int8-pixels"]["latency_ms"]

    two = "threads 2, batch 256"

    return "\n".join([
        f"- Each run's ratios are its own, measured side by side; the two runs' absolute times are not compared "
        f"(minutes apart on a shared machine). At batch 256 and 1 thread the narrow int8-pixels model's speed-up "
        f"over the teacher is {median(native, many):.1f}x natively (PyTorch's kernels {native['machine']['kernels']}; slowest "
        f"pass {slowest(native, many):.1f}x) and {median(masked, many):.1f}x on the {paths} (slowest pass "
        f"{slowest(masked, many):.1f}x). With the compression held fixed and only the number format changed, "
        f"against the same model's float32 file in the same run, int8-pixels is "
        f"{over_float32(native, 'narrow'):.1f}x faster natively and {over_float32(masked, 'narrow'):.1f}x on the "
        f"{paths} (the 90%-sparse final model: {over_float32(native, 'final'):.1f}x and "
        f"{over_float32(masked, 'final'):.1f}x). At 2 threads the gap narrows or closes: "
        f"{over_float32(native, 'narrow', two):.1f}x natively against {over_float32(masked, 'narrow', two):.1f}x "
        f"(final model: {over_float32(native, 'final', two):.1f}x against {over_float32(masked, 'final', two):.1f}x). "
        f"A likely reason for the gap at 1 thread, not profiled here: without VNNI an int8 multiply-add takes "
        f"several AVX2 instructions where one AVX-512 VNNI instruction does 64.",
        f"- At batch 1, where the call's fixed cost sets most of the time, the slowest pass is "
        f"{slowest(native, one):.1f}x natively and {slowest(masked, one):.1f}x on the {paths} (1 thread).",
        f"- This is the {paths.replace(' paths', '')} on this {cpu_name(native)}'s cores, clocks and caches, not an "
        f"AVX2-only CPU: a Haswell or a Zen 2 runs the same instructions at its own speed. It is the closest "
        f"measurement this machine can make; `python scripts/bench_deploy.py --check narrow` on such a CPU "
        f"settles it for the runtime's own call."])


def _deploy_files_and_accuracy(document: dict) -> str:
    """The bullet on bytes (smallest ONNX file against the .dcmp file) and on accuracy against the teacher."""
    size, accuracy = document["bytes"], document["accuracy"]
    ratio = {m: size[f"{m}, ONNX Runtime int8-pixels"] / size[f"{m}, .dcmp file"] for m in ("final", "narrow")}
    mean = {name: 100 * sum(v) / len(v) for name, v in accuracy.items()}
    teacher, narrow = mean["teacher, PyTorch eager float32"], mean["narrow, ONNX Runtime int8-pixels"]
    final = mean["final, ONNX Runtime int8-pixels"]

    def verdict(model: str) -> str:   # paired by seed against the teacher
        return "95% t interval of the paired difference " + t_interval(*stats.paired_interval(
            accuracy[f"{model}, ONNX Runtime int8-pixels"], accuracy["teacher, PyTorch eager float32"]))

    return (f"- The int8-pixels files are the smallest ONNX files (codes two per byte, one scale per row): "
            f"{size['final, ONNX Runtime int8-pixels']:,} bytes for the final model, {ratio['final']:.2f}x its "
            f".dcmp file, whose sparse encoding skips the zeros a dense kernel must store; "
            f"{size['narrow, ONNX Runtime int8-pixels']:,} bytes for the narrow student, {ratio['narrow']:.2f}x its "
            f".dcmp file (few zeros to skip; the rest is mostly the .dcmp file's entropy coding). Over "
            f"{len(document['seeds'])} seeds (trained at 2 threads; README's FAQ has the chain's seeds at 1 thread too, "
            f"where the final model's gap is smaller) the narrow student deployed this way scores {narrow:.2f}% against the "
            f"teacher's {teacher:.2f}% ({narrow - teacher:+.2f} points; {verdict('narrow')}), the 90%-sparse final "
            f"model {final:.2f}% ({final - teacher:+.2f} points; {verdict('final')}).")


def beyond_table(document: dict) -> str:
    epsilons, strong = document["epsilons"], document["strong_pgd"]
    seeds = len(document["seeds"])
    lines = ["| model | test accuracy | " + " | ".join(f"accuracy under PGD, ε = {e:g}" for e in epsilons)
             + f" | the same, ε = {epsilons[-1]:g}, {strong['steps']} steps × {strong['restarts']} starts | ECE "
               "| membership-inference AUC (seeds with p < 0.05) | best threshold's advantage (seeds with p < 0.05) |",
             "| --- | --- | " + " | ".join("---" for _ in epsilons) + " | --- | --- | --- | --- |"]
    beyond_chance = lambda values: sum(p < 0.05 for p in values)   # noqa: E731
    for name, row in document["rows"].items():
        cells = ["{:.1%} ± {:.1%}".format(*stats.mean_std(row[key])) for key in
                 ["accuracy", *[f"pgd_{e}" for e in epsilons], f"pgd_{epsilons[-1]}_strong", "ece"]]
        for statistic in ("auc", "advantage"):
            cells.append("{:.3f} ± {:.3f}".format(*stats.mean_std(row[f"mia_{statistic}"]))
                         + f" ({beyond_chance(row[f'mia_{statistic}_p'])} of {seeds})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    note = (f"Mean ± std over seeds {', '.join(map(str, document['seeds']))}; 1,000 test images, 4,000 training images. "
            "p: a permutation test (1,000 shuffles of which images are members), one-sided, per seed, "
            "uncorrected: 36 tests at 5% each find some by chance (notebook 07 corrects for that, Holm).")
    return "\n".join(lines + ["", note, "", beyond_pairs(document), "", beyond_auc_steps(document), "",
                              machine_line(document)])


BEYOND_PAIRS = (("distilled, pruned 90% (masked float32)", "student distilled (T = 4)"),   # pruned from it
                ("final: pruned 90% + 4-bit QAT", "distilled, 4-bit QAT (dense)"),        # its dense counterpart
                ("student distilled (T = 4)", "student 784-64-10 from scratch"))          # the same student on labels


def beyond_pairs(document: dict) -> str:
    """Accuracy under PGD at the largest epsilon, each compressed or distilled model against its dense or
    label-trained counterpart, paired by seed: mean difference and 95% t interval (stats.paired_interval)."""
    rows, epsilon = document["rows"], document["epsilons"][-1]
    strong = document["strong_pgd"]
    parts = []
    for a, b in BEYOND_PAIRS:
        intervals = []
        for key in (f"pgd_{epsilon}", f"pgd_{epsilon}_strong"):
            mean, low, high = stats.paired_interval(rows[a][key], rows[b][key])
            intervals.append(f"{100 * mean:+.2f} points ({t_interval(mean, low, high)})")
        parts.append(f"*{a}* minus *{b}*: {intervals[0]} with 10 steps, {intervals[1]} with "
                     f"{strong['steps']} steps × {strong['restarts']} starts")
    return (f"Accuracy under PGD at ε = {epsilon:g}, paired by seed (mean difference and its 95% t interval): "
            + "; ".join(parts) + ".")


def beyond_auc_steps(document: dict) -> str:
    """Each compression step's change of the membership-inference AUC, against the model it started from, paired
    over the same images (DeLong's test), per seed, with Holm's correction over all of them."""
    steps = document["auc_steps"]
    kept = iter(stats.holm([p for step in steps for p in step["p_value"]]))
    parts = []
    for step in steps:
        seeds = [f"{d:+.4f} ({lo:+.4f} to {hi:+.4f}){'*' if next(kept) else ''}"
                 for d, lo, hi in zip(step["diff"], step["low"], step["high"])]
        parts.append(f"*{step['model']}* minus *{step['from']}*: " + ", ".join(seeds))
    tests = sum(len(step["p_value"]) for step in steps)
    return ("Membership-inference AUC, each step against the model it started from, paired over the same images "
            f"(DeLong's test; per seed, the difference and its 95% interval; * kept by Holm's correction over these "
            f"{tests} tests): " + "; ".join(parts) + ".")


def emulated_table(document: dict) -> str:
    """The deployments scored natively and on an emulated CPU (scripts/emulated_avx2.py), or on this CPU with
    CPUID masked to AVX2 (its --runner masked): what changed."""
    masked = document.get("runner") == "masked"
    other = "masked" if masked else "emulated"
    lines = [f"| deployment | largest logit difference, {other} vs native | same prediction | accuracy, native / {other} |",
             "| --- | --- | --- | --- |"]
    for name, row in document["rows"].items():
        lines.append(f"| {name} | {row['max_logit_difference']:.2g} | {row['same_prediction']:.1%} | "
                     f"{row['accuracy_native']:.2%} / {row['accuracy_emulated']:.2%} |")
    seen = lambda side: ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in document[side]["cpu_features"].items())  # noqa: E731
    how = ("Masked: this CPU, CPUID masked to AVX2 by `scripts/masked_avx2.py` (native instructions)" if masked else
           f"Emulated: `qemu-x86_64 -cpu {document['emulated_cpu']}` ({document['emulator']})")
    note = (f"{how}; the {other} process "
            f"saw {seen('emulated')} (native: {seen('native')}); PyTorch's CPU kernels "
            f"{document['emulated']['torch_cpu_capability']} (native {document['native']['torch_cpu_capability']}); "
            f"`int8.kernel_saturates()` {document['emulated']['int8_kernel_saturates']} "
            f"(native {document['native']['int8_kernel_saturates']})."
            + ("" if masked else " An emulated run says nothing about speed."))
    return "\n".join(lines + ["", note, "", machine_line(document)])


def fashion_table(document: dict) -> str:
    """Deep Compression's LeNet-300-100 row (from the paper) beside this pipeline's, over seeds."""
    rows = {r["stage"].split(" (")[0]: r for r in document["rows"]}
    dense = next(r for name, r in rows.items() if "from scratch" in name)
    final = next(r for name, r in rows.items() if name.endswith("entropy coding"))
    deployed = next(r for name, r in rows.items() if name.startswith("deployed"))
    error = lambda values: "{:.2%} ± {:.2%}".format(*stats.mean_std([1 - v for v in values]))  # noqa: E731
    seeds = ", ".join(map(str, document["rows"][0]["seeds"]))
    lines = ["| | data | float32 error | compressed error | compression vs own float32 file |",
             "| --- | --- | --- | --- | --- |",
             "| Deep Compression (Han et al., ICLR 2016), LeNet-300-100 | MNIST | 1.64% | 1.58% | 40x (1,070 KB → 27 KB) |",
             f"| this pipeline, LeNet-300-100, 92% pruned with self-distillation, 4-bit QAT, lzma (seeds {seeds}, "
             f"mean ± std) | Fashion-MNIST | {error(dense['accuracies'])} | {error(final['accuracies'])} | "
             f"{dense['bytes'] / final['bytes']:.1f}x ({dense['bytes']:,} → {final['bytes']:,} bytes, first seed) |"]
    per_seed = lambda a, b: ", ".join(f"{100 * (x - y):+.2f}" for x, y in zip(a["accuracies"], b["accuracies"]))  # noqa: E731
    notes = [f"Per seed ({seeds}), compressed minus its own float32 network: {per_seed(final, dense)} points; "
             f"the int8 deployment minus the compressed model: {per_seed(deployed, final)} points. The 784-128-10 "
             f"reference teacher: {error(rows['reference teacher 784-128-10']['accuracies'])} error."]
    return "\n".join(lines + [""] + notes + ["", machine_line(document)])


COSINE, DECAY = "cosine lr", "cosine lr + weight decay 1e-4"
PRUNED_CE, PRUNED_SD = "pruned 92%, fine-tuned with cross-entropy", "pruned 92%, fine-tuned with self-distillation"
RECIPE_COMPARISONS = [  # (what changed, (recipe, stage) with the change, (recipe, stage) without it)
    ("a cosine learning-rate decay, dense network", (COSINE, "dense float32"), ("constant lr", "dense float32")),
    ("weight decay, dense network", (DECAY, "dense float32"), (COSINE, "dense float32")),
    ("weight decay, after pruning with self-distillation", (DECAY, PRUNED_SD), (COSINE, PRUNED_SD)),
    ("weight decay, after pruning with cross-entropy", (DECAY, PRUNED_CE), (COSINE, PRUNED_CE)),
    ("self-distillation instead of cross-entropy (with weight decay)", (DECAY, PRUNED_SD), (DECAY, PRUNED_CE)),
    ("self-distillation instead of cross-entropy (without)", (COSINE, PRUNED_SD), (COSINE, PRUNED_CE)),
    ("4-bit QAT and packing, after pruning with self-distillation", (DECAY, "+ 4-bit QAT with self-distillation, packed"),
     (DECAY, PRUNED_SD)),
    ("60 instead of 30 fine-tuning epochs", (COSINE, "pruned 92%, 60 epochs of cross-entropy fine-tuning"), (COSINE, PRUNED_CE)),
    ("gradual instead of one-shot pruning", (COSINE, "gradual 50 -> 75 -> 87.5 -> 92%, 30 epochs in all, cross-entropy"),
     (COSINE, PRUNED_CE)),
    ("Han et al.'s per-layer ratios instead of one global threshold", (COSINE, "per-layer 92/91/74% (Han et al.), cross-entropy"),
     (COSINE, PRUNED_CE)),
    ("a fine-tuning rate of 2e-3 instead of 1e-3", (COSINE, "pruned 92%, self-distillation at lr 2e-3"), (COSINE, PRUNED_SD)),
    ("the 784-1200-1200-10 teacher instead of the dense network itself", (COSINE, "pruned 92%, distilled from the 784-1200-1200-10 teacher"),
     (COSINE, PRUNED_SD)),
]


def fashion_recipe_table(document: dict) -> str:
    """The recipe ablation on the validation split (scripts/fashion_recipe.py): every row, then the differences."""
    lines = ["| training | stage | validation accuracy | file |", "| --- | --- | --- | --- |"]
    for row in document["rows"]:
        size = f"{row['bytes']:,} bytes ({document['dense_bytes'] / row['bytes']:.1f}x smaller)" if row.get("bytes") else ""
        lines.append(f"| {row['recipe']} | {row['stage']} | {row['accuracy']:.2%} | {size} |")
    accuracy = {(r["recipe"], r["stage"]): r["accuracy"] for r in document["rows"]}
    n = document["validation_images"]
    p = sum(accuracy.values()) / len(accuracy)
    se = 100 * (p * (1 - p) / n) ** 0.5
    lines += ["", f"Differences, in points (one run of each on {n:,} held-out training images; the standard error of "
              f"one accuracy is {se:.1f} points, of a difference between two runs about {se * 2 ** 0.5:.1f}, so two "
              f"standard errors are about {2 * se * 2 ** 0.5:.1f} points):", ""]
    lines += [f"- {label}: {100 * (accuracy[a] - accuracy[b]):+.2f}" for label, a, b in RECIPE_COMPARISONS
              if a in accuracy and b in accuracy]
    return "\n".join(lines + ["", machine_line(document)])


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


RENDERERS = {"deploy-avx2-emulated": emulated_table, "deploy-avx2-masked": emulated_table, "notebook-times": times_table, "fashion-recipe": fashion_recipe_table, "fashion-deep-compression": fashion_table, "beyond-accuracy": beyond_table, "deploy": deploy_table, "pipeline": pipeline_table, "pipeline-seeds": seeds_table, "pipeline-narrow": ledger_over_seeds_table, "int8": int8_table, "kd-sweep": kd_sweep_table, "final-recipe": final_recipe_table, "hint-sweep": hint_sweep_table}


def glossary_table() -> str:
    """The English-Chinese glossary (data/glossary.csv) as a table: term, 中文, note."""
    with (ROOT / "data" / "glossary.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    lines = ["| English | 中文 | 说明 |", "| --- | --- | --- |"]
    cell = lambda text: text.replace("|", "\\|")     # a bare | would end the cell (ECE's |acc - conf|)
    return "\n".join(lines + [f"| {cell(r['english'])} | {cell(r['chinese'])} | {cell(r['note'])} |" for r in rows])


ANSWER_LABELS = {
    "en": {"head": "| what | measured | from |", "smaller": "{r:.1f}x smaller", "against": "against", "bytes": "bytes",
           "faster": "{low:.1f}x to {high:.1f}x faster",
           "distil": "distillation: the 784-64-10 student's file against the reference teacher's",
           "compress": "compression on top: the final file against the distilled student's",
           "both": "both: the final file against the reference teacher's",
           "accuracy": "accuracy, {model} against the reference teacher, {threads} thread{plural}, paired by seed",
           "final_chain": "final model", "narrow_chain": "narrow 784-32-10 model (pipeline --narrow 0.5 --sparsity 0)",
           "paired": "{mean:+.2f} ± {std:.2f} points (mean ± std over {n} seeds; 95% t interval {low:+.2f} to {high:+.2f}: {verdict})",
           "beyond": "excludes zero", "within": "includes zero",
           "final": "final model (784-64-10, 90% sparse, 4 bits)", "narrow": "narrow 784-32-10 model (4 bits)",
           "speed": "speed: {label} in ONNX Runtime int8 (dynamic, static, or on the raw pixels) against the teacher in PyTorch eager, batch 256, 1 and 2 threads",
           "file": "{bytes:,}-byte .dcmp file", "colon": ": ", "open": " (", "close": ")", "comma": ", "},
    "zh": {"head": "| 比较 | 测量结果 | 来源 |", "smaller": "为后者的 1/{r:.1f}", "against": "对比", "bytes": "字节",
           "faster": "速度为教师的 {low:.1f} 到 {high:.1f} 倍",
           "distil": "蒸馏：784-64-10 学生的文件对比参考教师的文件",
           "compress": "在此之上压缩：最终文件对比蒸馏后学生的文件",
           "both": "两者结合：最终文件对比参考教师的文件",
           "accuracy": "准确率：{model}对比参考教师，{threads} 个线程，按种子配对",
           "final_chain": "最终模型", "narrow_chain": "窄模型 784-32-10（pipeline --narrow 0.5 --sparsity 0）",
           "paired": "{mean:+.2f} ± {std:.2f} 个百分点（{n} 个种子的均值 ± 标准差；95% t 区间 {low:+.2f} 到 {high:+.2f}，{verdict}）",
           "beyond": "不含零", "within": "含零，在噪声之内",
           "final": "最终模型（784-64-10，90% 稀疏，4 比特）", "narrow": "窄模型 784-32-10（4 比特）",
           "speed": "速度：{label}在 ONNX Runtime int8（动态、静态或直接输入原始像素）中对比 PyTorch 即时执行（eager）模式下的教师，批大小 256，1 和 2 个线程",
           "file": ".dcmp 文件 {bytes:,} 字节", "colon": "：", "open": "（", "close": "）", "comma": "，"},
}


def article_answers_table(results: pathlib.Path, language: str = "en") -> str:
    """What combining distillation and compression gained, from four result files (both READMEs' FAQ answers)."""
    t = ANSWER_LABELS[language]
    one = json.loads((results / "pipeline.json").read_text())
    def row(document: dict, prefix: str) -> dict:
        return next(r for r in document["rows"] if r["stage"].startswith(prefix))

    reference, student = row(one, "reference teacher"), row(one, "student distilled")
    final = row(one, "4-bit QAT, sparse file + entropy coding")
    lines = [t["head"], "| --- | --- | --- |",
             f"| {t['distil']} | {student['bytes']:,} {t['against']} {reference['bytes']:,} {t['bytes']}{t['open']}"
             f"{t['smaller'].format(r=reference['bytes'] / student['bytes'])}{t['close']} | `pipeline.json` |",
             f"| {t['compress']} | {final['bytes']:,} {t['against']} {student['bytes']:,} {t['bytes']}{t['open']}"
             f"{t['smaller'].format(r=student['bytes'] / final['bytes'])}{t['close']} | `pipeline.json` |",
             f"| {t['both']} | {t['smaller'].format(r=reference['bytes'] / final['bytes'])} | `pipeline.json` |"]
    for model, threads, name in (("final_chain", 2, "pipeline-seeds.json"), ("final_chain", 1, "pipeline-seeds-threads1.json"),
                                 ("final_chain", 2, "pipeline-seeds-xeon.json"),
                                 ("final_chain", 1, "pipeline-seeds-xeon-threads1.json"),
                                 ("narrow_chain", 2, "pipeline-narrow-seeds.json"),
                                 ("narrow_chain", 1, "pipeline-narrow-seeds-threads1.json")):
        document = json.loads((results / name).read_text())
        cpu = cpu_name(document, language)
        ends = [row(document, "4-bit QAT, sparse file + entropy coding"), row(document, "reference teacher")]
        mean, std = stats.mean_std([100 * (a - b) for a, b in zip(ends[0]["accuracies"], ends[1]["accuracies"])])
        _, low, high = stats.paired_interval(ends[0]["accuracies"], ends[1]["accuracies"])
        paired = t["paired"].format(mean=mean, std=std, n=len(ends[0]["accuracies"]), low=100 * low, high=100 * high,
                                    verdict=t["within"] if low <= 0 <= high else t["beyond"])
        plural = "s" if threads > 1 and language == "en" else ""
        lines.append(f"| {t['accuracy'].format(model=t[model], threads=threads, plural=plural)}{t['comma']}{cpu} | "
                     f"{ends[0]['accuracy']:.2%} {t['against']} "
                     f"{ends[1]['accuracy']:.2%}{t['colon']}{paired} | `{name}` |")
    # scripts/bench_deploy.py: "final" is the chain's final model, "narrow" the structurally pruned 784-32-10 one;
    # one row per CPU it was run on (deploy.json, then deploy-<cpu>.json: the files with latencies)
    runs = deploy_runs(results)
    for model in ("final", "narrow"):
        for path, deploy in runs.items():
            speedups = [deploy["latency"][setting][f"{model}, ONNX Runtime int8-{kind}"]["speedup"]
                        for setting in deploy["latency"] if setting.endswith("batch 256")
                        for kind in ("dynamic", "static", "pixels")]
            lines.append(f"| {t['speed'].format(label=t[model])}{t['comma']}{cpu_name(deploy, language)} | "
                         f"{t['faster'].format(low=min(speedups), high=max(speedups))}{t['open']}"
                         f"{t['file'].format(bytes=deploy['bytes'][f'{model}, .dcmp file'])}{t['close']} | `{path.name}` |")
    return "\n".join(lines)


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


def render(readme: str, results: pathlib.Path) -> str:
    """README text with every results block re-made from its file."""
    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name == "glossary":   # not a measurement: the glossary's data file
            return match.group(1) + glossary_table() + "\n" + match.group(4)
        if name == "workload":   # not a measurement: counted from the notebooks
            return match.group(1) + workload_table(results.parent / "notebooks") + "\n" + match.group(4)
        if name in ("article-answers", "article-answers-zh"):   # several result files at once
            language = "zh" if name.endswith("-zh") else "en"
            return match.group(1) + article_answers_table(results, language) + "\n" + match.group(4)
        if name == "pipeline-notes":   # the bullets under the pipeline table
            document = json.loads((results / "pipeline.json").read_text())
            return match.group(1) + pipeline_notes(document) + "\n" + match.group(4)
        if name == "workshop-times":   # WORKSHOP's three columns, from README's result file
            document = json.loads((results / "notebook-times.json").read_text())
            return match.group(1) + workshop_times_table(document) + "\n" + match.group(4)
        if name == "deploy-verdicts":   # every deployment run against the targets, one row per run and call
            return match.group(1) + deploy_verdicts(results) + "\n" + match.group(4)
        if name == "deploy-summary":   # the bullets under the deployment table
            document = json.loads((results / "deploy.json").read_text())
            return match.group(1) + deploy_summary(document) + "\n" + match.group(4)
        if name.startswith("deploy-isa-"):   # deploy-isa-<cpu>: deploy-<cpu>.json against deploy-<cpu>-avx2-masked.json
            cpu = name.removeprefix("deploy-isa-")
            native, masked = (json.loads((results / f"deploy-{cpu}{suffix}.json").read_text())
                              for suffix in ("", "-avx2-masked"))
            return match.group(1) + isa_comparison(native, masked) + "\n" + match.group(4)
        if name.startswith("deploy-targets-"):   # another CPU's run (deploy-<that CPU>.json): its call, its targets
            document = json.loads((results / f"deploy-{name.removeprefix('deploy-targets-')}.json").read_text())
            return match.group(1) + "\n".join([*_wrapper(document), _deploy_targets(document)]) + "\n" + match.group(4)
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
