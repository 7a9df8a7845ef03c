"""scripts/masked_avx2.py: a process that sees an AVX2-only CPU at native speed, or a clear refusal."""

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
PROBE = ("import os, torch; from numpy._core._multiarray_umath import __cpu_features__ as f; "
         "print(torch.backends.cpu.get_cpu_capability(), f['AVX2'], f['AVX512F'], f['AVX512VNNI'], "
         "os.environ['DC_CPUID_MASK'])")


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


@pytest.mark.skipif(masked_avx2.unavailable(CPUINFO, shutil.which("gcc") or shutil.which("cc")) is not None,
                    reason="needs CPUID faulting (/proc/cpuinfo 'cpuid_fault') and a C compiler")
def test_the_masked_process_sees_avx2_and_no_avx512_at_all():
    masked = subprocess.run([sys.executable, str(ROOT / "scripts" / "masked_avx2.py"), "--", sys.executable, "-c",
                             PROBE], capture_output=True, text=True, timeout=120)
    assert masked.returncode == 0, masked.stderr
    assert masked.stdout.split() == ["AVX2", "True", "False", "False", "avx2"]
    crashed = subprocess.run([sys.executable, str(ROOT / "scripts" / "masked_avx2.py"), "--", sys.executable, "-c",
                              "import ctypes; ctypes.string_at(0)"], capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 128 + 11   # a real segmentation fault still crashes (SIGSEGV), as without the mask
