"""Deployment benchmark: the compressed student in ONNX Runtime against the float32 teacher in PyTorch eager.

For each seed: the 784-128-10 reference teacher, the big teacher (cached), a distilled 784-64-10 student,
then two chains with distillation in every stage: the pipeline's final model (90% magnitude pruning, 4-bit
QAT) and a narrow one (structured pruning to 784-32-10, `recipes.narrow`, then 4-bit QAT). Each is
exported as float32, int8 (dynamic, static), 4-bit and int8-pixels (raw uint8 image in, the QAT codes in
one MatMulIntegerToFloat) ONNX files and scored on the test split. Latency is
measured for seed 0's models at batch 1 and 256, at 1 and 2 threads, all candidates side by side in
rounds (`deploy.compare_latency`); ratios are per round against the teacher in PyTorch eager float32. The
teacher also runs in ONNX Runtime float32, so that the runtime's share of a ratio can be told from the
compression's. ONNX Runtime is timed by its own call (`ort_session.bound_call`, call="direct"); the two
int8-pixels files are timed through onnxruntime's Python method as well ("..., Python wrapper" rows), so
that what the wrapper adds per call is in the table, not hidden.
The whole measurement is repeated in --passes independent passes (default 3): a burst of load on a
shared machine spoils one pass, not the result; the file keeps each pass's ratio and their medians.

With --check MODEL ("narrow" or "final") the script ends by checking that model's int8-pixels deployment
against the targets (benchmarks.deploy_targets: at least 5x the teacher in every pass at batch 1 and 256,
1 and 2 threads; within 0.5 points; ONNX file at most 1.5x the .dcmp file) and exits 1 if it misses any:
the one command to run on another CPU (an AVX2-only one, say).

Usage: python scripts/bench_deploy.py [--seeds 0 1 2] [--passes 3] [--json results/deploy.json] [--check narrow]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import sys
import tempfile
import warnings

import numpy as np
import torch

from tutorial_utils import (benchmarks, data, deploy, distillation, files, int8, machine, measure, quantization,
                            recipes, storage, training, validate)

SPARSITY, BITS, NARROW = 0.9, 4, 0.5
ROUNDS = 9   # latency rounds: the median of nine shrugs off a burst of load on a shared machine


def chains(splits: data.Splits, seed: int) -> dict[str, torch.nn.Module]:
    """The teacher, the distilled student and the two compressed chains of one seed (training at 2 threads)."""
    training.setup(seed, threads=2)
    reference = training.load_or_train_teacher(splits, epochs=15, seed=seed)
    teacher = training.load_or_train_teacher(splits, **distillation.BIG_TEACHER_RECIPE, seed=seed)
    student = distillation.train_student(splits, teacher=teacher, seed=seed, epochs=15)
    final = recipes.compress(student, splits, sparsity=SPARSITY, quant=BITS, teacher=teacher, seed=seed)
    narrow = recipes.narrow(student, splits, amount=NARROW, teacher=teacher, seed=seed)
    narrow = recipes.quantize_aware(narrow, splits, quant=BITS, teacher=teacher, seed=seed)
    return {"teacher": reference, "student": student, "final": final, "narrow": narrow}


def latency_pass(first: dict, splits: data.Splits, scratch: str, number: int) -> dict[str, dict]:
    """One pass of every candidate at batch 1 and 256, 1 and 2 threads (deploy.compare_latency, ROUNDS rounds)."""
    latency = {}
    for threads in (1, 2):
        teacher_file = pathlib.Path(scratch) / f"teacher-t{threads}.onnx"
        deploy.export(first["teacher"], teacher_file, "float32")
        candidates = {"teacher, PyTorch eager float32": first["teacher"],
                      # the same teacher in the same runtime as the compressed models: what the runtime alone buys
                      "teacher, ONNX Runtime float32": deploy.runtime_model(teacher_file, threads=threads),
                      "student 784-64-10, PyTorch eager float32": first["student"],
                      "final, PyTorch legacy int8": int8.to_backend(quantization.dequantize_model(first["final"]), "legacy")}
        for name in ("final", "narrow"):
            for kind, entry in deploy.export_all(first[name], scratch, stem=f"{name}-t{threads}", threads=threads,
                                                 calibration=splits.x_train[:1000]).items():
                candidates[f"{name}, ONNX Runtime {kind}"] = entry["model"]
            # the same file called through onnxruntime's Python method: what the wrapper adds per call
            candidates[f"{name}, ONNX Runtime int8-pixels, Python wrapper"] = deploy.runtime_model(
                candidates[f"{name}, ONNX Runtime int8-pixels"].path, threads=threads, call="wrapper")
        for batch in (1, 256):
            setting = f"threads {threads}, batch {batch}"
            latency[setting] = deploy.compare_latency(candidates, batch, threads=threads, rounds=ROUNDS)
            print(f"pass {number + 1}, {setting}")
            for name, row in latency[setting].items():
                print(f"  {name:52} {row['latency_ms'] * 1e3:9.1f} us  {row['speedup']:5.1f}x")
    return latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=validate.cli(validate.nonnegative_int), nargs="+", default=[0, 1, 2])
    parser.add_argument("--passes", type=validate.cli(validate.positive_int), default=3,
                        help="independent latency passes; the table shows their medians, the summary their range")
    parser.add_argument("--json", default=None, help="also write the results with the command and machine record")
    parser.add_argument("--check", choices=("narrow", "final"), default=None,
                        help="exit 1 unless this model's int8-pixels deployment meets every target")
    args = parser.parse_args()
    # the file records ort_call "direct": a silent fallback to the Python method would make that false
    warnings.filterwarnings("error", message="this onnxruntime's C\\+\\+ session cannot be called directly")
    splits = data.load("mnist-5k")
    accuracy: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            built = chains(splits, seed)
            for name, label in (("teacher", "teacher, PyTorch eager float32"),
                                ("student", "student 784-64-10, PyTorch eager float32")):
                accuracy.setdefault(label, []).append(training.evaluate(built[name], splits.x_test, splits.y_test))
            teacher_file = pathlib.Path(scratch) / f"teacher-{seed}.onnx"
            deploy.export(built["teacher"], teacher_file, "float32")
            accuracy.setdefault("teacher, ONNX Runtime float32", []).append(
                training.evaluate(deploy.runtime_model(teacher_file), splits.x_test, splits.y_test))
            legacy = int8.to_backend(quantization.dequantize_model(built["final"]), "legacy")
            accuracy.setdefault("final, PyTorch legacy int8", []).append(
                training.evaluate(legacy, splits.x_test, splits.y_test))
            for name in ("final", "narrow"):
                accuracy.setdefault(f"{name}, PyTorch (QAT codes)", []).append(
                    training.evaluate(built[name], splits.x_test, splits.y_test))
                deployed = deploy.export_all(built[name], scratch, stem=f"{name}-{seed}", calibration=splits.x_train[:1000])
                for kind, entry in deployed.items():
                    accuracy.setdefault(f"{name}, ONNX Runtime {kind}", []).append(
                        training.evaluate(entry["model"], splits.x_test, splits.y_test))
                    if seed == args.seeds[0]:
                        sizes[f"{name}, ONNX Runtime {kind}"] = entry["bytes"]
            if seed == args.seeds[0]:
                first = built
                sizes["final, .dcmp file"] = storage.save(first["final"], pathlib.Path(scratch) / "final.dcmp", compress="auto")
                sizes["narrow, .dcmp file"] = storage.save(first["narrow"], pathlib.Path(scratch) / "narrow.dcmp", compress="auto")
                sizes["teacher, torch.save state_dict"] = measure.storage_bytes(first["teacher"])
        passes, answered = [], []   # answered: CPUIDs the mask answered during each pass (none when unmasked)
        for number in range(args.passes):
            before = machine.cpuid_answered()
            passes.append(latency_pass(first, splits, scratch, number))
            answered.append(None if before is None else machine.cpuid_answered() - before)
    latency = {setting: {name: {"latency_ms": float(np.median([p[setting][name]["latency_ms"] for p in passes])),
                                "speedup": float(np.median([p[setting][name]["speedup"] for p in passes])),
                                "speedups": [p[setting][name]["speedup"] for p in passes]}
                         for name in passes[0][setting]} for setting in passes[0]}
    for name, values in accuracy.items():
        print(f"{name:45} {sum(values) / len(values):.2%}  {[f'{v:.2%}' for v in values]}")
    print(sizes)
    under = "python scripts/masked_avx2.py -- " if os.environ.get("DC_CPUID_MASK") else ""   # how to repeat it
    document = {"command": under + "python scripts/bench_deploy.py " + shlex.join(sys.argv[1:]), "seeds": args.seeds,
                "machine": machine.record(threads=2), "accuracy": accuracy, "bytes": sizes, "passes": args.passes,
                "ort_call": "direct", "latency": latency,
                **({"cpuid_answered_per_pass": answered} if answered[0] is not None else {})}
    if args.json:
        files.atomic_write(args.json, lambda f: f.write((json.dumps(document, indent=2) + "\n").encode()))
    if args.check:
        check = benchmarks.deploy_targets(document, args.check)
        print(f"{args.check}, int8-pixels, on {machine.describe(document['machine'])}: "
              + (f"misses {', '.join(check['misses'])}" if check["misses"] else "meets every target"))
        sys.exit(1 if check["misses"] else 0)


if __name__ == "__main__":
    main()
