"""The machine: the caches as the OS reports them (read once, for the kernels and cachesim
alike), the peak probe's result and its assembly, and the roof probes' bounds (checked in a
subprocess: OpenMP aborts on absurd counts)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import cffi
import pytest

from krypton import cachesim, machine, seam

ROOT = Path(__file__).resolve().parent.parent


def test_cachesim_models_the_caches_the_machine_reports():
    caches = machine.cache_sizes()
    l1, l2 = cachesim.default_levels()
    assert (l1.size, l2.size) == (caches.l1d, caches.l2)
    assert l1.line == l2.line == caches.line
    for level, cache in ((1, l1), (2, l2)):
        reported = machine.cache_ways(level)
        sets = cache.size // (cache.line * reported) if reported else 0
        modelled_as_reported = (reported and cache.size % (cache.line * reported) == 0
                                and sets & (sets - 1) == 0)
        if modelled_as_reported:  # else about 8 ways with a power-of-two number of sets
            assert cache.ways == reported


@pytest.mark.parametrize("call, message", [
    ("machine.peak_gflops(threads=2147483648)", "threads must be at most 1024"),
    ("machine.peak_gflops(threads=0)", "threads must be a positive integer, got 0"),
    ("machine.peak(threads=2147483648)", "threads must be at most 1024"),
    ("machine.peak(threads=-1)", "threads must be a positive integer, got -1"),
    ("machine.peak(threads=1.5)", "threads must be a positive integer"),
    ("machine.bandwidth_gbs(threads=10**6, megabytes=1)", "threads must be at most 1024"),
])
def test_the_probes_refuse_thread_counts_before_entering_c(call, message):
    script = (f"from krypton import machine\ntry:\n    {call}\n"
              f"except (TypeError, ValueError) as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert message in result.stdout


@pytest.mark.parametrize("threads", [1, machine.cpu_count()])
def test_the_peak_is_positive_at_a_sane_clock_on_a_whole_number_of_pipes(threads):
    peak = machine.peak(threads, seconds=0.04, repeats=1)
    assert peak.threads == threads and peak.isa == machine.native_isa()
    assert math.isfinite(peak.gflops) and peak.gflops > 0
    assert peak.lanes == machine.VECTOR_WIDTH[peak.isa]
    assert 0.3 < peak.clock_ghz < 8.0
    assert isinstance(peak.fma_pipes, int) and peak.fma_pipes >= 1
    assert str(peak).startswith(f"peak {peak.gflops:.0f} GFLOPS = {threads} core")


def test_the_pipe_count_is_the_rounded_ratio_and_never_zero():
    assert machine.implied_pipes(2 * 3.0 * 16 * 2 * 1, 3.0, 16, 2) == 1
    assert machine.implied_pipes(0.9 * 2 * 3.0 * 8 * 2 * 2, 3.0, 8, 2) == 2
    assert machine.implied_pipes(0.1, 3.0, 16, 2) == 1


# The FMA instruction of each architecture and where its destination is written (AT&T x86:
# last operand; AArch64: first).
_FMA = {"x86": (r"^\s*vfmadd\w*ps\s+(.*)$", -1), "arm": (r"^\s*fmla\s+(.*)$", 0)}


def test_the_probes_chains_are_distinct_in_the_assembly(tmp_path):
    """The compiler must not merge chains: the hot loop writes one register per chain."""
    if machine.native_isa() not in ("avx512", "avx2", "neon"):
        pytest.skip("the assembly is checked for vector ISAs")
    asm = tmp_path / "probe_peak.s"
    command = [*seam.compiler(), "-O3", "-std=gnu11", *seam.native_flags(),
               *seam.openmp_flags(), f"-I{seam.CSRC}", "-S", "-o", str(asm),
               str(seam.CSRC / "probe_peak.c")]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    pattern, which = _FMA["arm" if machine.native_isa() == "neon" else "x86"]
    operands = [re.split(r"#|//", line)[0]  # drop the compiler's trailing comments
                for line in re.findall(pattern, asm.read_text(), flags=re.MULTILINE)]
    destinations = {re.sub(r"\..*", "", ops.split(",")[which].strip()) for ops in operands}
    chains = machine._probes().lib.kr_probe_chains()
    assert chains >= 2 * 4, "fewer chains than 2 pipes x 4 cycles of latency"
    assert len(destinations) == chains, sorted(destinations)


def _peak(isa, lanes, pipes, clock=3.0):
    return machine.Peak(clock * lanes * 2 * pipes, clock, lanes, pipes, 1, isa)


@pytest.mark.parametrize("peaks, says", [
    ({"avx512": _peak("avx512", 16, 2), "avx2": _peak("avx2", 8, 2)}, "twice the FLOPs"),
    ({"avx512": _peak("avx512", 16, 1), "avx2": _peak("avx2", 8, 2)}, "split over 2 256-bit"),
    ({"avx2": _peak("avx2", 8, 2)}, "no AVX-512"),
    ({"neon": _peak("neon", 4, 4)}, "NEON"),
    ({"scalar": _peak("scalar", 1, 2)}, "no vector ISA"),
    ({"neon": _peak("neon", 4, 0, clock=0.0)}, "no clock probe"),
])
def test_the_fma_units_are_explained_from_the_measured_pipes(peaks, says):
    assert says in machine.explain_fma_units(peaks)


def test_the_core_count_follows_the_affinity_within_its_time_to_live(monkeypatch):
    if not hasattr(machine.os, "sched_getaffinity"):
        pytest.skip("this OS does not report an affinity")
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.setattr(machine, "_cpu_count", (1, float("-inf")))  # nothing read yet
    assert machine.cpu_count() == 3
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {5})
    monkeypatch.setattr(machine, "CPU_COUNT_SECONDS", 3600.0)
    assert machine.cpu_count() == 3  # kept: read less than an hour ago
    monkeypatch.setattr(machine, "CPU_COUNT_SECONDS", 0.0)
    assert machine.cpu_count() == 1  # read again: the process may now run on one core


def test_a_peak_short_of_whole_pipes_is_measured_again(monkeypatch):
    # As when the host takes one of two cores for a whole run: the first run reaches 0.55 of a
    # whole pipe on two cores, the second 1.0; the second counts, and no third is made.
    rates = iter([0.55, 1.0])  # after the calibration run, which reaches 1.0
    calls = []

    class Lib:
        def kr_probe_clock_adds(self):
            return 1

        def kr_probe_threads(self, threads):
            return threads

        def kr_probe_vector_width(self):
            return 16

        def kr_probe_peak(self, passes, per_run, clock_passes, threads, repeats, rate, hz):
            calls.append(passes)
            hz[0] = 3e9
            rate[0] = (1.0 if len(calls) == 1 else next(rates)) * 3e9 * 16 * 2 * threads
            return 64_000 * 16 * 2

    class Module:
        lib = Lib()
        ffi = cffi.FFI()  # only for its ffi.new("double *")

    monkeypatch.setattr(machine, "_probes_for", lambda isa: Module)
    monkeypatch.setattr(machine, "available_isas", lambda: ("avx512",))
    peak = machine.peak(2, isa="avx512", seconds=0.01, repeats=1)
    assert len(calls) == 3  # the calibration, the short run, the whole one
    assert peak.fma_pipes == 1 and abs(peak.gflops - 2 * 3.0 * 16 * 2) < 1e-9


def test_a_probe_without_openmp_reports_the_peak_of_the_one_core_it_ran_on(monkeypatch):
    # As under a compiler with no OpenMP (Apple's clang, or clang without libomp): built here
    # with -fno-openmp, the probe runs one thread whatever it is asked.
    isa = machine.native_isa()
    module = seam.compile_c(machine.PROBE_SOURCE, seam.cdef_for(machine.PROBE_FUNCTIONS),
                            name="probes_no_openmp", macros={"KR_ISA": machine.ISA_MACROS[isa]},
                            flags=(*machine.ISA_FLAGS[isa], "-fno-openmp"))
    assert module.lib.kr_probe_threads(2) == 1
    assert machine._probes_for(isa).lib.kr_probe_threads(2) == (2 if seam.openmp_flags() else 1)
    monkeypatch.setattr(machine, "_probes_for", lambda isa: module)
    peak = machine.peak(2, isa=isa, seconds=0.01, repeats=1)
    assert peak.threads == 1 and "= 1 core x" in str(peak)


def test_the_bench_leaves_out_the_peak_of_threads_the_probe_cannot_run(monkeypatch):
    from krypton import bench
    monkeypatch.setattr(machine, "peak", lambda threads: machine.Peak(100.0, 3.0, 16, 1, 1,
                                                                      "avx512"))
    assert list(bench.measured_peaks([1, 2])) == [1]


# --- the topology: cores and shared caches, from a sysfs tree written for the test ----------

def _fake_sysfs(root: Path, cores: list[list[int]], caches: dict[int, list[list[int]]]) -> None:
    """cpuN/topology/core_cpus_list and cpuN/cache/indexI/{level,type,shared_cpu_list}, as
    Linux writes them (plus an instruction cache, which must be skipped)."""
    def text(cpus):
        return ",".join(map(str, cpus)) + "\n"
    for core in cores:
        for cpu in core:
            base = root / f"cpu{cpu}"
            (base / "topology").mkdir(parents=True)
            (base / "topology" / "core_cpus_list").write_text(text(core))
            index = base / "cache" / "index9"
            index.mkdir(parents=True)
            for name, value in (("level", "1\n"), ("type", "Instruction\n"),
                                ("shared_cpu_list", text([cpu]))):
                (index / name).write_text(value)
            for level, groups in caches.items():
                group = next(g for g in groups if cpu in g)
                index = base / "cache" / f"index{level}"
                index.mkdir()
                for name, value in (("level", f"{level}\n"), ("type", "Unified\n"),
                                    ("shared_cpu_list", text(group))):
                    (index / name).write_text(value)


@pytest.fixture
def fake_topology(tmp_path, monkeypatch):
    """Point machine at a fake sysfs tree; returns a function (cores, caches, allowed)."""
    def use(cores, caches, allowed=None):
        root = tmp_path / f"sysfs{len(list(tmp_path.iterdir()))}"
        _fake_sysfs(root, cores, caches)
        cpus = frozenset(allowed if allowed is not None else (c for core in cores for c in core))
        monkeypatch.setattr(machine, "_SYSFS_CPUS", root)
        monkeypatch.setattr(machine, "_allowed_cpus", lambda: cpus)
        monkeypatch.setattr(machine, "_cpu_count", (1, float("-inf")))
        machine._cpu_groups.cache_clear()
        machine._topology_of.cache_clear()
    yield use
    machine._cpu_groups.cache_clear()
    machine._topology_of.cache_clear()


def test_cpu_lists_are_read_as_linux_writes_them():
    assert machine.cpu_list("0-3,8-11\n") == frozenset([0, 1, 2, 3, 8, 9, 10, 11])
    assert machine.cpu_list("5") == frozenset([5])
    assert machine.cpu_list("0,2,4") == frozenset([0, 2, 4])


def test_hardware_threads_of_a_core_count_as_one_core(fake_topology):
    # 4 cores of 2 hardware threads (Linux numbers the second threads 4-7), L1 and L2 per
    # core, one L3: the default thread count is the 4 cores, as MKL's and PyTorch's.
    cores = [[0, 4], [1, 5], [2, 6], [3, 7]]
    fake_topology(cores, {1: cores, 2: cores, 3: [list(range(8))]})
    assert machine.cpu_count() == 4
    topology = machine.topology()
    assert topology.cores == tuple(frozenset(core) for core in cores)
    assert topology.caches[3] == (frozenset(range(8)),)
    assert "4 cores (8 hardware threads)" in machine.describe()
    # One thread per core shares nothing but L3; a second thread per core shares L1 and L2.
    assert [machine.cache_sharers(level, 4) for level in (1, 2, 3)] == [1, 1, 4]
    assert [machine.cache_sharers(level, 8) for level in (1, 2, 3)] == [2, 2, 8]
    assert machine.cache_sharers(1, 16) == 2          # more threads than CPUs take turns
    fake_topology(cores, {1: cores, 2: cores, 3: [list(range(8))]}, allowed=[0, 4])
    assert machine.cpu_count() == 1                   # taskset to the two threads of one core
    assert machine.cache_sharers(1, 2) == 2


def test_cores_that_share_an_l2_share_it_by_thread_count(fake_topology):
    # Two clusters of four cores, an L2 per cluster (as many Arm chips), one L3.
    cores = [[cpu] for cpu in range(8)]
    clusters = [[0, 1, 2, 3], [4, 5, 6, 7]]
    fake_topology(cores, {1: cores, 2: clusters, 3: [list(range(8))]})
    assert machine.cpu_count() == 8
    assert [machine.cache_sharers(2, t) for t in (1, 2, 3, 4, 8)] == [1, 1, 2, 2, 4]
    assert machine.cache_sharers(1, 8) == 1


def test_what_sysfs_does_not_say_counts_as_private(fake_topology):
    fake_topology([[0]], {}, allowed=[0, 1, 2])   # CPUs 1 and 2 have no sysfs entries at all
    topology = machine.topology()
    assert len(topology.cores) == 3
    assert [len(topology.caches[level]) for level in (1, 2, 3)] == [3, 3, 1]
    assert machine.cache_sharers(2, 3) == 1 and machine.cache_sharers(3, 3) == 3
