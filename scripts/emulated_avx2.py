"""Do the deployments compute the same logits on an AVX2-only CPU? Checked under an emulated one.

(--runner masked runs the same check on this CPU with CPUID masked to AVX2, scripts/masked_avx2.py:
the AVX2 kernels at native speed. Both should agree; the masked run is what scripts/bench_deploy.py's
timings under the mask compute.)

ONNX Runtime, oneDNN and PyTorch choose their kernels by what the CPU's CPUID reports: on a CPU with
AVX-512 VNNI, the AVX2 code paths never run. QEMU's user-mode emulator (`qemu-x86_64 -cpu Haswell`,
package qemu-user) runs this same Python with the CPUID of an AVX2-only Haswell, so every library takes
the path it would take there; the instructions are QEMU's software implementation of them, so the
emulated run says nothing about speed, only about what is computed.

The script builds seed 0's final model (90% pruned, 4-bit QAT: the chain's, cached) and the narrow
784-32-10 one (scripts/bench_deploy.py's recipe), exports every ONNX deployment of both, and scores them
on the 1,000 test images here and in the emulated process, with PyTorch's legacy int8 backend and the
int8 probe (int8.kernel_saturates) there too. A control is scored beside them: the final model's dynamic
int8 file quantized with full 8-bit weights (reduce_range off), which the package never writes because
pairs of products can overflow 16 bits without VNNI (onnx_int8). It records, per deployment, the largest
logit difference between the emulated and the native run, the share of images with the same prediction,
and the accuracy; and which instruction sets the emulated process saw.

Usage: python scripts/emulated_avx2.py [--json results/deploy-avx2-emulated.json] [--cpu Haswell] [--runner masked]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

from tutorial_utils import (chain, data, deploy, distillation, files, int8, machine, quantization, recipes, storage,
                            training)

FEATURES = ("AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512VNNI")   # as numpy reads them from CPUID
CONTROL = "int8-dynamic-8bit-weights"   # what onnx_int8 avoids: full-range weights


def outputs(folder: pathlib.Path, splits: data.Splits, label: str) -> dict:
    """Logits of every deployment in `folder` and of the legacy int8 backend, saved as logits-<label>.npz in
    `folder`, and what this CPU offers."""
    from numpy._core._multiarray_umath import __cpu_features__

    torch.set_num_threads(1)
    logits = {}
    for path in sorted(folder.glob("*.onnx")):
        logits[f"ONNX Runtime {path.stem}"] = deploy.runtime_model(path, threads=1)(splits.x_test).numpy()
    for name in ("final", "narrow"):
        float_model = quantization.dequantize_model(storage.load(folder / f"{name}.dcmp"))
        with torch.no_grad():
            logits[f"PyTorch legacy int8 {name}"] = int8.to_backend(float_model, "legacy")(splits.x_test).numpy()
    np.savez(folder / f"logits-{label}.npz", **logits)
    return {"cpu_features": {f: bool(__cpu_features__.get(f, False)) for f in FEATURES},
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "int8_kernel_saturates": int8.kernel_saturates()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=None, help="also write the results with the command and machine record")
    parser.add_argument("--cpu", default="Haswell", help="QEMU CPU model to emulate (default Haswell: AVX2, no AVX-512)")
    parser.add_argument("--runner", choices=("qemu", "masked"), default="qemu",
                        help="qemu: emulate the CPU (default); masked: this CPU with CPUID masked to AVX2 "
                             "(scripts/masked_avx2.py), native instructions")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)   # the emulated run, given the folder
    args = parser.parse_args()
    splits = data.load("mnist-5k")
    if args.child:
        print(json.dumps(outputs(pathlib.Path(args.child), splits, "emulated")))
        return 0
    qemu = shutil.which("qemu-x86_64")
    if args.runner == "qemu" and qemu is None:
        print("error: qemu-x86_64 not found; install QEMU's user-mode emulator (Debian/Ubuntu: apt install qemu-user)",
              file=sys.stderr)
        return 2
    masker = [sys.executable, str(pathlib.Path(__file__).with_name("masked_avx2.py")), "--"]
    if args.runner == "masked" and subprocess.run([*masker, sys.executable, "-c", ""]).returncode != 0:
        return 2   # masked_avx2 said why
    training.setup(0, threads=2)
    teacher = training.load_or_train_teacher(splits, **distillation.BIG_TEACHER_RECIPE, seed=0)
    built = chain.build(splits, teacher, seed=0, epochs=15, stages=("distilled", "final"))
    narrow = recipes.narrow(built["distilled"], splits, amount=0.5, teacher=teacher, seed=0)
    models = {"final": built["final"], "narrow": recipes.quantize_aware(narrow, splits, quant=4, teacher=teacher, seed=0)}
    with tempfile.TemporaryDirectory() as scratch:
        folder = pathlib.Path(scratch)
        for name, model in models.items():
            deploy.export_all(model, folder, stem=name, calibration=splits.x_train[:1000])
            storage.save(model, folder / f"{name}.dcmp", compress="auto")
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(folder / "final-float32.onnx", folder / f"final-{CONTROL}.onnx", weight_type=QuantType.QInt8,
                         per_channel=True, reduce_range=False)   # the control: 8-bit weights
        native = outputs(folder, splits, "native")
        runner = [qemu, "-cpu", args.cpu] if args.runner == "qemu" else masker
        child = subprocess.run([*runner, sys.executable, __file__, "--child", scratch],
                               capture_output=True, text=True, timeout=1800)
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            return 1
        emulated = json.loads(child.stdout.strip().splitlines()[-1])
        here, there = np.load(folder / "logits-native.npz"), np.load(folder / "logits-emulated.npz")
        rows = {}
        for name in here.files:
            a, b = here[name], there[name]
            rows[name] = {"max_logit_difference": float(np.abs(a - b).max()),
                          "same_prediction": float((a.argmax(1) == b.argmax(1)).mean()),
                          "accuracy_native": float((a.argmax(1) == splits.y_test.numpy()).mean()),
                          "accuracy_emulated": float((b.argmax(1) == splits.y_test.numpy()).mean())}
            print(f"{name:>36}: largest logit difference {rows[name]['max_logit_difference']:.2e}, same prediction "
                  f"on {rows[name]['same_prediction']:.1%}", flush=True)
    print(f"{args.runner} run:", emulated, "| native:", native)
    if args.json:
        # "emulated" names the other run's side in either case; "runner" says what it was
        how = ({"emulator": subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()[0],
                "emulated_cpu": args.cpu} if args.runner == "qemu" else {})
        document = {"command": "python scripts/emulated_avx2.py " + shlex.join(sys.argv[1:]), "runner": args.runner,
                    **how, "emulated": emulated, "native": native, "machine": machine.record(threads=1), "rows": rows}
        files.atomic_write(args.json, lambda f: f.write((json.dumps(document, indent=2) + "\n").encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
