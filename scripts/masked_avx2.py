"""Run a command as if on an AVX2-only CPU, at this CPU's own speed: CPUID masked, nothing emulated.

    python scripts/masked_avx2.py -- python scripts/bench_deploy.py --json results/deploy-xeon-avx2-masked.json

ONNX Runtime, oneDNN, MKL, PyTorch and numpy choose their kernels by what CPUID reports, so on a CPU with
AVX-512 VNNI their AVX2 kernels never run. scripts/emulated_avx2.py runs them under QEMU, which checks
what they compute but not how fast. This script compiles scripts/cpuid_mask.c (gcc) into a preload
library that makes every CPUID instruction of the command's process answer without AVX-512, AVX-VNNI,
AMX or GFNI/VAES (Linux's CPUID faulting, on CPUs whose /proc/cpuinfo lists "cpuid_fault"; its comment
says what it cannot mask), and tells glibc the same (GLIBC_TUNABLES), so that every library runs its
AVX2 code at native speed. What it measures is the AVX2 code path on *this* CPU, not an AVX2-only CPU:
clocks, caches and execution ports stay this one's.

The command's environment gets DC_CPUID_MASK=avx2; scripts/bench_deploy.py records it, with what its own
process saw (numpy's CPU features, PyTorch's CPU capability), so a result file says how it was made.
Exit status: the command's (128 + n if a signal n killed it, as a shell reports it), or 2 if the mask
cannot be set up here (no gcc, no CPUID faulting; checked by a trial run before the command).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

SOURCE = pathlib.Path(__file__).with_name("cpuid_mask.c")
# glibc picks its own string functions (memcpy, ...) by CPUID before any preload runs: tell it too
GLIBC_MASK = "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX512ER,-AVX512PF"


def unavailable(cpuinfo: str, compiler: str | None) -> str | None:
    """Why the mask cannot run here (None if it can): `cpuinfo` is /proc/cpuinfo's text."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    if "cpuid_fault" not in flags:
        return ("this CPU (or its hypervisor) cannot make CPUID fault: /proc/cpuinfo has no 'cpuid_fault' flag, so "
                "CPUID cannot be masked; scripts/emulated_avx2.py checks the AVX2 paths under QEMU instead (no speed)")
    if compiler is None:
        return "no C compiler: the mask is a small C library built at run time (Debian/Ubuntu: apt install gcc)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --, e.g. -- python scripts/bench_deploy.py --check narrow")
    compiler = shutil.which("gcc") or shutil.which("cc")
    reason = unavailable(pathlib.Path("/proc/cpuinfo").read_text(), compiler)
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cpuid-mask-") as scratch:
        library = pathlib.Path(scratch) / "cpuid_mask.so"
        built = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-Wl,-z,initfirst", "-o", str(library),
                                str(SOURCE)], capture_output=True, text=True)
        if built.returncode != 0:
            print(f"error: {compiler} could not build {SOURCE.name}:\n{built.stderr}", file=sys.stderr)
            return 2
        preload = " ".join(filter(None, [str(library), os.environ.get("LD_PRELOAD", "")]))
        tunables = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES", ""), GLIBC_MASK]))
        env = dict(os.environ, LD_PRELOAD=preload, GLIBC_TUNABLES=tunables, DC_CPUID_MASK="avx2")
        # a trial run first: the library's own refusal (status 3) must not pass for the command's status
        if subprocess.run([sys.executable, "-c", ""], env=env).returncode != 0:
            print("error: the CPUID mask could not be set up (its message is above)", file=sys.stderr)
            return 2
        code = subprocess.run(command, env=env).returncode
    return 128 - code if code < 0 else code   # killed by signal n: 128 + n, as a shell reports it


if __name__ == "__main__":
    sys.exit(main())
