"""What machine a measurement was made on: CPU, the instruction sets that decide int8 speed, threads, load.

A latency means little without its machine: int8 kernels run fast with AVX-512 VNNI or AMX and barely
faster than float32 with AVX2 alone, and a machine busy with another job can be 10-50x slower. Every
ledger carries this record, and a latency measured while the load average exceeded what the machine can
run at once (the larger of the threads in use and the cores) is flagged.

Example:
    >>> record()["isa"]
    ['avx2', 'avx512f', 'avx512_vnni']
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import platform
from importlib import metadata

import torch

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")  # what int8 kernels can use, slowest first


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module reports."""
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def isa() -> list[str]:
    """The instruction-set features of ISA_FLAGS that this CPU has (from /proc/cpuinfo's flags on Linux)."""
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    flags = set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return [flag for flag in ISA_FLAGS if flag in flags]


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def record(threads: int | None = None) -> dict:
    """The machine record: cpu, isa, cores, threads (torch's now unless given), torch/torchao versions,
    torch's CPU kernel level, Python version and the current load average; and "cpuid_mask" when the
    process runs under scripts/masked_avx2.py (isa is then the hardware's, kernels what torch chose)."""
    mask = os.environ.get("DC_CPUID_MASK")
    return {**float_path(), "cores": usable_cores(),
            "threads": threads if threads is not None else torch.get_num_threads(),
            "torch": torch.__version__.split("+")[0], "torchao": _version("torchao"),
            "python": platform.python_version(), "load": load_average(), **({"cpuid_mask": mask, "cpuid_seen": cpuid_seen()} if mask else {})}


def float_path() -> dict:
    """What besides the thread count decides the order of a CPU's float sums, so the bits of trained weights:
    the CPU model, its instruction set and the kernel level torch dispatches to. Part of every cache key
    of a trained model: another kind of CPU trains other weights, so it trains its own."""
    return {"cpu": cpu_model(), "isa": isa(), "kernels": torch.backends.cpu.get_cpu_capability()}


def cpuid_answered() -> int | None:
    """How many CPUID instructions scripts/cpuid_mask.c has answered in this process (None when it is not
    loaded): a count that grows while a model is timed means a CPUID, a signal and two system calls each,
    on the timed path."""
    try:
        counter = ctypes.CDLL(None).cpuid_mask_answered
    except AttributeError:
        return None
    counter.restype = ctypes.c_ulong
    return int(counter())


def cpuid_seen() -> dict[str, bool]:
    """What this process's CPUID answered (numpy reads it at import), against /proc/cpuinfo's hardware flags:
    under scripts/masked_avx2.py, AVX2 yes and every AVX-512 / VNNI feature no."""
    from numpy._core._multiarray_umath import __cpu_features__ as seen
    return {name: bool(seen.get(name, False)) for name in ("AVX2", "AVX512F", "AVX512VNNI", "AVX512FP16")}


def usable_cores() -> int | None:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):   # not on macOS or Windows
        return os.cpu_count()


def busy(load: float | None, threads: int, cores: int | None = None) -> bool:
    """True when runnable processes outnumber what the machine can run at once (the larger of the threads in
    use and the cores) by more than half a process: then other work competes with the timed threads."""
    capacity = max(threads, cores if cores is not None else usable_cores() or threads)
    return load is not None and load > capacity + 0.5


def describe(machine: dict) -> str:
    """One line for a ledger's header: 'AMD EPYC (avx2, avx512f), 2 cores, 2 threads, torch 2.14.1'."""
    isa_text = ", ".join(machine.get("isa") or []) or "no AVX2"
    if machine.get("cpuid_mask"):   # the hardware's flags, but the libraries were shown less
        isa_text += f"; CPUID masked to {machine['cpuid_mask']}, torch kernels {machine.get('kernels')}"
    return (f"{machine.get('cpu')} ({isa_text}), {machine.get('cores')} cores, {machine.get('threads')} threads, "
            f"torch {machine.get('torch')}")
