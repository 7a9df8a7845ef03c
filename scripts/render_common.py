"""What every results renderer shares: where the repository is, a result file's CPU and machine line, and
how an interval or a ratio is written."""

from __future__ import annotations

import pathlib

from tutorial_utils import stats


ROOT = pathlib.Path(__file__).resolve().parents[1]


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


def energy(nj: float) -> str:
    return f"{nj / 1e6:.1f} mJ" if nj >= 1e6 else f"{nj / 1e3:.1f} µJ" if nj >= 1e3 else f"{nj:.0f} nJ"


def versus(ratio: float) -> str:
    if abs(ratio - 1) < 1e-9:
        return "1x"
    return f"{ratio:.1f}x lower" if ratio >= 1 else f"{1 / ratio:.{1 if ratio > 0.1 else 0}f}x higher"


def t_interval(mean: float, low: float, high: float) -> str:
    """A paired difference's 95% t interval in points, and whether it includes zero (stats.paired_interval)."""
    return f"{100 * low:+.2f} to {100 * high:+.2f}: {'includes' if low <= 0 <= high else 'excludes'} zero"


def value_range(low: float, high: float) -> str:
    """'0.6 to 0.8', or 'about 0.8' when both round alike."""
    return f"about {low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f} to {high:.1f}"
