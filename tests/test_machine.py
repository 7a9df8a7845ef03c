"""The machine record that travels with every latency."""

import os

from tutorial_utils import machine


def test_record_has_what_decides_int8_speed():
    record = machine.record(threads=3)
    assert record["threads"] == 3 and record["cores"] == machine.usable_cores() <= os.cpu_count()
    assert set(record["isa"]) <= set(machine.ISA_FLAGS)
    assert isinstance(record["cpu"], str) and record["cpu"]
    assert record["kernels"]  # torch's CPU kernel level, e.g. AVX512 or AVX2


def test_isa_agrees_with_proc_cpuinfo():
    if os.path.exists("/proc/cpuinfo"):
        text = open("/proc/cpuinfo").read()
        for flag in machine.ISA_FLAGS:
            assert (flag in machine.isa()) == (f" {flag}" in text)


def test_busy_means_more_load_than_the_machine_can_run():
    assert machine.busy(3.2, 2, cores=2) and not machine.busy(2.4, 2, cores=2) and not machine.busy(None, 1)
    assert not machine.busy(3.0, 2, cores=64)  # other cores are free: nothing competes with 2 threads
    assert machine.busy(9.0, 8, cores=2)
    assert "threads" in machine.describe(machine.record())


def test_a_masked_cpuid_is_recorded_and_described(monkeypatch):
    """Guards: a result made under scripts/masked_avx2.py says so; one made without it carries no such key."""
    monkeypatch.delenv("DC_CPUID_MASK", raising=False)
    assert "cpuid_mask" not in machine.record(threads=1)
    monkeypatch.setenv("DC_CPUID_MASK", "avx2")
    record = machine.record(threads=1)
    assert record["cpuid_mask"] == "avx2" and set(record["cpuid_seen"]) == {"AVX2", "AVX512F", "AVX512VNNI", "AVX512FP16"}
    if "avx512f" in machine.isa():   # not masked here, only said to be: what the process saw is the hardware
        assert record["cpuid_seen"]["AVX512F"]
    assert f"CPUID masked to avx2, torch kernels {record['kernels']}" in machine.describe(record)


def test_no_cpuid_is_counted_without_the_mask():
    assert machine.cpuid_answered() is None      # scripts/cpuid_mask.c is not loaded in this process


def test_the_float_path_is_the_records_cpu_isa_and_kernels():
    record, path = machine.record(), machine.float_path()
    assert path == {key: record[key] for key in ("cpu", "isa", "kernels")}


def test_usable_cores_follow_the_affinity_mask(monkeypatch):
    # a container limited to 2 CPUs of a 64-core host: os.cpu_count() says 64, the process can use 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert machine.usable_cores() == 2 and machine.busy(3.0, 1) and not machine.busy(2.4, 1)
