"""README's sentences under the deployment tables, each number read from the result file: what the speed-ups
support, the runtime's share, the Python wrapper's cost, the targets met and missed."""

from __future__ import annotations

from tutorial_utils import benchmarks, stats

from render_common import t_interval, value_range
from render_deploy import WRAPPER


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
            f"options) each batch-1 call took {value_range(min(added), max(added))} µs more (medians), mostly the "
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


def targets(document: dict) -> str:
    """Another CPU's run (deploy-<cpu>.json) against the targets: what the Python wrapper cost, then the verdict."""
    return "\n".join([*_wrapper(document), _deploy_targets(document)])
