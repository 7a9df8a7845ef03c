"""scripts/masked_avx2.py: a process that sees an AVX2-only CPU at native speed, or a clear refusal."""

import functools
import importlib.util
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
spec = importlib.util.spec_from_file_location("masked_avx2", ROOT / "scripts" / "masked_avx2.py")
masked_avx2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(masked_avx2)

CPUINFO = pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() else ""
PROBE = ("import torch; from numpy._core._multiarray_umath import __cpu_features__ as f; "
         "from tutorial_utils import machine; r = machine.record(threads=1); "
         "print(torch.backends.cpu.get_cpu_capability(), f['AVX2'], f['AVX512F'], f['AVX512VNNI'], "
         "r['cpuid_mask'], r['kernels'], r['cpuid_seen']['AVX512F'], machine.cpuid_answered() > 0)")
# torch's kernels, numpy's AVX2 / AVX512F / AVX512VNNI, the record's mask, kernels and AVX512F, CPUIDs answered
MASKED = ["AVX2", "True", "False", "False", "avx2", "AVX2", "False", "True"]   # the record says what the process saw


def test_it_says_why_it_cannot_run():
    no_fault = "processor : 0\nflags : fpu avx2 avx512f\n"
    assert "no 'cpuid_fault' flag" in masked_avx2.unavailable(no_fault, "/usr/bin/gcc")
    assert "emulated_avx2.py" in masked_avx2.unavailable(no_fault, "/usr/bin/gcc")
    assert "apt install gcc" in masked_avx2.unavailable("flags : avx2 cpuid_fault\n", None)
    assert masked_avx2.unavailable("flags : avx2 cpuid_fault\n", "/usr/bin/gcc") is None


def test_it_needs_a_command(capsys):
    with pytest.raises(SystemExit):
        masked_avx2.main([])
    assert "give the command to run after --" in capsys.readouterr().err


COMPILER = shutil.which("gcc") or shutil.which("cc")
needs_mask = pytest.mark.skipif(masked_avx2.unavailable(CPUINFO, COMPILER) is not None,
                                reason="needs CPUID faulting (/proc/cpuinfo 'cpuid_fault') and a C compiler")
# CPUID leaf 7 EBX bit 16 (AVX512F) and bit 5 (AVX2), read by the instruction itself: in the main thread, in
# a thread started later, and in a child that fork + exec started (which the preload library masks again)
PROBE_C = r"""
#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
static unsigned leaf7(void) { unsigned a, b, c, d; __cpuid_count(7, 0, a, b, c, d); return b; }
static void *in_thread(void *out) { *(unsigned *)out = leaf7(); return 0; }
static void show(const char *where, unsigned b) { printf("%s avx2=%u avx512f=%u\n", where, (b >> 5) & 1, (b >> 16) & 1); }
int main(int argc, char **argv) {
    if (argc > 1) { show("exec", leaf7()); return 0; }
    unsigned from_thread; pthread_t thread;
    pthread_create(&thread, 0, in_thread, &from_thread); pthread_join(thread, 0);
    show("main", leaf7()); show("thread", from_thread); fflush(stdout);
    pid_t child = fork();
    if (child == 0) { execl(argv[0], argv[0], "child", (char *)0); _exit(9); }
    int status; waitpid(child, &status, 0);
    return WEXITSTATUS(status);
}
"""


def _masked(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "masked_avx2.py"), "--", *command],
                          capture_output=True, text=True, timeout=120)


@functools.cache
def _mask_refusal() -> str | None:
    """The mask's own message if it cannot start here although cpuid_fault is listed (a sandbox refusing
    arch_prctl, say): those tests then skip with it instead of failing."""
    trial = _masked(sys.executable, "-c", "")
    return trial.stderr.strip() if trial.returncode == 2 and "could not be set up" in trial.stderr else None


def _require_mask() -> None:
    if _mask_refusal():
        pytest.skip(f"the CPUID mask cannot start here: {_mask_refusal()}")


@needs_mask
def test_every_thread_and_exec_child_sees_the_mask(tmp_path):
    _require_mask()
    probe = tmp_path / "probe"
    subprocess.run([COMPILER, "-O2", "-pthread", "-o", str(probe), "-x", "c", "-"], input=PROBE_C, text=True,
                   check=True)
    native = subprocess.run([str(probe)], capture_output=True, text=True, timeout=60).stdout
    masked = _masked(str(probe))
    assert masked.returncode == 0, masked.stderr
    assert masked.stdout.splitlines() == [f"{where} avx2=1 avx512f=0" for where in ("main", "thread", "exec")]
    if "avx512f" in CPUINFO:   # the same probe without the mask sees the hardware
        assert native.splitlines()[0] == "main avx2=1 avx512f=1"


@needs_mask
def test_a_program_with_its_own_segfault_handler_keeps_both():
    """Python's faulthandler installs a SIGSEGV handler after the mask's: CPUID is still masked (numpy reads it
    after), and a real crash still reaches faulthandler's report."""
    _require_mask()
    seen = _masked(sys.executable, "-X", "faulthandler", "-c", PROBE)
    assert seen.returncode == 0 and seen.stdout.split() == MASKED, seen.stderr
    crashed = _masked(sys.executable, "-X", "faulthandler", "-c", "import ctypes; ctypes.string_at(0)")
    assert crashed.returncode == 128 + 11 and "Fatal Python error: Segmentation fault" in crashed.stderr


def test_glibc_is_told_the_same():
    """GLIBC_MASK takes away what glibc needs for its AVX-512 string functions (x86-64-v4)."""
    loader = pathlib.Path("/lib64/ld-linux-x86-64.so.2")
    native = subprocess.run([str(loader), "--help"], capture_output=True, text=True).stdout if loader.exists() else ""
    if "x86-64-v4 (supported" not in native:
        pytest.skip("needs glibc >= 2.33 on a CPU with x86-64-v4 (AVX-512)")
    masked = subprocess.run([str(loader), "--help"], capture_output=True, text=True,
                            env={"GLIBC_TUNABLES": masked_avx2.GLIBC_MASK}).stdout
    assert "x86-64-v4 (supported" not in masked and "x86-64-v3 (supported" in masked


@needs_mask
def test_the_masked_process_sees_avx2_and_no_avx512_at_all():
    _require_mask()
    masked = _masked(sys.executable, "-c", PROBE)
    assert masked.returncode == 0, masked.stderr
    assert masked.stdout.split() == MASKED
    crashed = _masked(sys.executable, "-c", "import ctypes; ctypes.string_at(0)")
    assert crashed.returncode == 128 + 11   # a real segmentation fault still crashes (SIGSEGV), as without the mask
