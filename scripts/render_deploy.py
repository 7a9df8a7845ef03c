"""README's deployment tables (scripts/bench_deploy.py's result files): latencies and bytes, the verdict of
every run against the targets, one CPU against its AVX2 code paths, the emulated AVX2-only CPU's logits."""

from __future__ import annotations

import json
import pathlib

from tutorial_utils import benchmarks, stats

from render_common import cpu_name, machine_line


WRAPPER = ", Python wrapper"   # bench_deploy's rows timed through onnxruntime's Python method


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
