"""The machine: what CPU this is, its caches and vector ISA, and its measured roofs.

Everything a benchmark needs to say *where* it ran, and everything the kernels need to pick
their default block sizes. The two roofs of the roofline come from the probes in csrc/:
the peak rate of fused multiply-adds (``peak``, with the clock and the pipe count it implies)
and the memory bandwidth of a STREAM triad (``bandwidth_gbs``).
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from krypton import seam
from krypton.checks import positive_int

@dataclass(frozen=True)
class IsaInfo:
    """One vector ISA as csrc/kr_simd.h and csrc/kr_microtile.h define it."""

    name: str
    macro: int              # the value of KR_ISA that selects it
    vector_width: int       # float32 lanes per vector register
    vector_registers: int   # architectural vector registers (scalar: a typical float count)
    microtile: tuple[int, int]  # the default MR x NR of the micro-kernel


@functools.lru_cache(maxsize=None)
def isa_table() -> dict[str, IsaInfo]:
    """Every ISA the kernels know, widest first, read from C (csrc/isa.c, compiled once)."""
    lib, ffi = _isa_module().lib, _isa_module().ffi
    table = []
    info = ffi.new("kr_isa_info *")
    macro = 0
    while lib.kr_describe_isa(macro, info) == lib.KR_OK:
        table.append(IsaInfo(ffi.string(info.name).decode(), macro, info.vector_width,
                             info.vector_registers, (info.mr, info.nr)))
        macro += 1
    return {isa.name: isa for isa in sorted(table, key=lambda isa: -isa.macro)}


def isa_info(isa: str) -> IsaInfo:
    """What C says about ``isa``; KeyError naming the known ones for any other name."""
    table = isa_table()
    if isa not in table:
        raise KeyError(f"unknown ISA {isa!r}; the kernels know {', '.join(table)}")
    return table[isa]


def registers_needed(mr: int, nr: int, isa: str) -> int:
    """Vector registers an ``mr x nr`` micro-kernel needs on ``isa``: accumulators, B, A."""
    return int(_isa_module().lib.kr_registers_needed(mr, nr // isa_info(isa).vector_width))


@functools.lru_cache(maxsize=None)
def _isa_module() -> seam.CompiledModule:
    return seam.compile_c((seam.CSRC / "isa.c").read_text(),
                          seam.cdef_for(["kr_describe_isa", "kr_registers_needed"]), name="isa")


class _IsaColumn(Mapping):
    """One column of the ISA table as a read-only mapping (ISA name -> value), read from C on
    first use, so importing krypton compiles nothing."""

    def __init__(self, field: str):
        self._field = field

    def __getitem__(self, isa: str) -> Any:
        return getattr(isa_info(isa), self._field)

    def __iter__(self) -> Iterator[str]:
        return iter(isa_table())

    def __len__(self) -> int:
        return len(isa_table())

    def __repr__(self) -> str:
        return repr(dict(self))


ISA_MACROS: Mapping[str, int] = _IsaColumn("macro")
"""ISA names, widest first, and the value of ``KR_ISA`` that selects each in kr_simd.h."""

VECTOR_WIDTH: Mapping[str, int] = _IsaColumn("vector_width")
"""float32 lanes per vector register."""

VECTOR_REGISTERS: Mapping[str, int] = _IsaColumn("vector_registers")
"""Architectural vector registers (for scalar code: a typical count of float registers)."""

# Flags that make the compiler target exactly one ISA, so that a forced narrower ISA is
# honest: with AVX-512 switched off, nothing in the module can use it behind our back.
ISA_FLAGS = {
    "avx512": (),
    "avx2": ("-mno-avx512f",),
    "neon": (),
    # Plain C stays plain: at -O3 -march=native gcc would vectorize the scalar fallback (and
    # the 12 scalar chains of the peak probe) by itself, and "scalar" would measure vectors.
    "scalar": ("-fno-tree-vectorize", "-fno-tree-slp-vectorize"),
}


@dataclass(frozen=True)
class CacheSizes:
    """Per-core data cache sizes in bytes (L3 is shared), and the cache line size."""

    l1d: int
    l2: int
    l3: int
    line: int


_SYSFS_CPUS = Path("/sys/devices/system/cpu")
_LEVEL_NAMES = {1: "l1d", 2: "l2", 3: "l3"}


@dataclass(frozen=True)
class _ReportedCache:
    """One data (or unified) cache as Linux sysfs describes it."""

    level: int
    size: int
    line: int
    ways: int | None


def _data_cache_dirs(cpu: int) -> Iterator[tuple[int, Path]]:
    """(level, directory) of each data or unified cache of ``cpu`` in sysfs
    (``/sys/devices/system/cpu/cpuN/cache/index*``); instruction caches are skipped."""
    for index in sorted((_SYSFS_CPUS / f"cpu{cpu}" / "cache").glob("index*")):
        try:
            if (index / "type").read_text().strip() in ("Data", "Unified"):
                yield int((index / "level").read_text()), index
        except (OSError, ValueError):
            continue


@functools.lru_cache(maxsize=None)
def _reported_caches() -> tuple[_ReportedCache, ...]:
    """The data and unified caches of cpu0, with their sizes, lines and ways."""
    found = []
    for level, index in _data_cache_dirs(0):
        try:
            size = _parse_size((index / "size").read_text().strip())
            line = int((index / "coherency_line_size").read_text())
        except (OSError, ValueError):
            continue
        try:
            ways: int | None = int((index / "ways_of_associativity").read_text())
        except (OSError, ValueError):
            ways = None
        found.append(_ReportedCache(level, size, line, ways or None))
    return tuple(found)


@functools.lru_cache(maxsize=None)
def cache_sizes() -> CacheSizes:
    """Cache sizes as the OS reports them (Linux sysfs, macOS sysctl), with safe fallbacks."""
    reported = _reported_caches()
    found = {_LEVEL_NAMES[c.level]: c.size for c in reported if c.level in _LEVEL_NAMES}
    if sys.platform == "darwin" and not found:
        found = _darwin_cache_sizes()
    return CacheSizes(
        l1d=found.get("l1d", 32 * 1024),
        l2=found.get("l2", 1024 * 1024),
        l3=found.get("l3", 8 * 1024 * 1024),
        line=reported[0].line if reported else 64,
    )


def cache_ways(level: int) -> int | None:
    """The associativity (lines per set) of the level-``level`` data cache, if the OS says."""
    return next((c.ways for c in _reported_caches() if c.level == level), None)


def _parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def _darwin_cache_sizes() -> dict[str, int]:
    import subprocess

    names = {"l1d": "hw.l1dcachesize", "l2": "hw.l2cachesize", "l3": "hw.l3cachesize"}
    sizes = {}
    for key, name in names.items():
        result = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip().isdigit():
            sizes[key] = int(result.stdout.strip())
    return sizes


MAX_THREADS = 1024
"""The most threads a kernel or probe is asked to run: past that, OpenMP aborts the whole
process (it cannot make the threads) instead of raising an error Python could catch."""


def check_threads(name: str, threads: Any) -> int:
    """``threads`` as an int in [1, MAX_THREADS], or an error naming ``name`` and the fix."""
    threads = positive_int(name, threads)
    if threads > MAX_THREADS:
        raise ValueError(f"{name} must be at most {MAX_THREADS}, got {threads}: pass at most "
                         f"the core count ({cpu_count()} here)")
    return threads


def cpu_count() -> int:
    """Cores this process may run on: physical cores, not hardware threads (respects
    taskset/cgroup affinity where the OS tells). The default thread count of every threaded
    kernel, probe and training run.

    Two hardware threads of one core (Intel's Hyper-Threading, AMD's SMT) share its FMA pipes
    and its L1 and L2: a second thread adds no FLOPs to a product whose thread already keeps
    the pipes busy, and its packed blocks take half the caches the first one's were sized for.
    So the default is one thread per core, as MKL's and PyTorch's are; ask for more with
    ``threads=`` (the blocks then shrink to each thread's share, ``cache_sharers``). Where the
    OS says nothing of cores (not Linux), each CPU counts as one.

    Every product with the default thread count asks this, and asking the OS is a system call
    that costs as much as the Python around a small product, so the answer is kept for
    ``CPU_COUNT_SECONDS``: a change of affinity shows within that long."""
    global _cpu_count
    now = time.monotonic()
    if now - _cpu_count[1] > CPU_COUNT_SECONDS:
        _cpu_count = len(topology().cores), now
    return _cpu_count[0]


CPU_COUNT_SECONDS = 0.1
"""How long ``cpu_count`` keeps the count it read."""
_cpu_count = (1, float("-inf"))  # the count read last, and when (time.monotonic)


def _allowed_cpus() -> frozenset[int]:
    try:
        return frozenset(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity to ask for
        return frozenset(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class Topology:
    """Which of the CPUs this process may run on share a core, and which share each cache.

    ``cores``: the hardware threads of each physical core (one set per core); ``caches``: for
    each data cache level (1, 2, 3), one set per instance of that cache, the CPUs that share
    it. Only CPUs of ``cpus`` (the affinity) appear. Linux's sysfs says all of it
    (``/sys/devices/system/cpu/cpuN/topology/core_cpus_list`` and
    ``cache/index*/shared_cpu_list``); what it does not say counts as private: a core per CPU,
    an L1 and L2 per core, one L3 for all.
    """

    cpus: frozenset[int]
    cores: tuple[frozenset[int], ...]
    caches: Mapping[int, tuple[frozenset[int], ...]]


def topology() -> Topology:
    """This process's ``Topology``: its allowed CPUs grouped by core and by cache instance."""
    return _topology_of(_allowed_cpus())


@functools.lru_cache(maxsize=16)
def _topology_of(cpus: frozenset[int]) -> Topology:
    """``topology`` for one set of allowed CPUs (built once per set: a machine with hundreds
    of CPUs would otherwise group them again every ``CPU_COUNT_SECONDS``)."""
    reported = {cpu: _cpu_groups(cpu) for cpu in cpus}
    cores = _groups(reported[cpu].get(0, frozenset({cpu})) & cpus for cpu in cpus)
    core_of = {cpu: core for core in cores for cpu in core}
    # A cache the OS does not describe is taken to be the core's own (L1, L2) or everyone's (L3).
    caches = {level: _groups(reported[cpu].get(level, cpus if level == 3 else core_of[cpu])
                             & cpus for cpu in cpus)
              for level in (1, 2, 3)}
    return Topology(cpus, cores, caches)


def _groups(sets: Iterable[frozenset[int]]) -> tuple[frozenset[int], ...]:
    """The distinct sets, in the order of their lowest CPU."""
    return tuple(sorted(set(sets), key=min))


@functools.lru_cache(maxsize=None)
def _cpu_groups(cpu: int) -> dict[int, frozenset[int]]:
    """What sysfs says of one CPU: the CPUs of its core (key 0) and those sharing its data
    cache of each level (keys 1-3). Read once per CPU: they do not change while it runs."""
    base = _SYSFS_CPUS / f"cpu{cpu}"
    found: dict[int, frozenset[int]] = {}
    for name in ("core_cpus_list", "thread_siblings_list"):   # the second on kernels < 5.7
        try:
            found[0] = cpu_list((base / "topology" / name).read_text())
            break
        except (OSError, ValueError):
            continue
    for level, index in _data_cache_dirs(cpu):
        try:
            found[level] = cpu_list((index / "shared_cpu_list").read_text())
        except (OSError, ValueError):
            continue
    return found


def cpu_list(text: str) -> frozenset[int]:
    """Linux's CPU list syntax, e.g. ``"0-3,8-11"``, as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if "-" in part:
            first, last = part.split("-")
            cpus.update(range(int(first), int(last) + 1))
        elif part:
            cpus.add(int(part))
    return frozenset(cpus)


def cache_sharers(level: int, threads: int) -> int:
    """How many of ``threads`` threads share one level-``level`` data cache, when the OS spreads
    them evenly over the caches this process may use (as Linux does on an idle machine: a
    core's second hardware thread is used only when every core has one): the threads per
    instance, rounded up, and at most the CPUs of one instance (more threads than CPUs take
    turns, they do not share it at the same moment). 1 for a cache of each core's own while
    ``threads`` is at most the core count; 2 for L1 and L2 with two threads per core; up to 4
    for the L2 of a cluster of 4 cores that share one (many Arm chips)."""
    instances = topology().caches[level]
    widest = max(len(instance) for instance in instances)
    return max(1, min(widest, -(-threads // len(instances))))


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's marketing name, e.g. ``AMD EPYC 9R45``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_isas() -> tuple[str, ...]:
    """The vector ISAs kernels can be compiled for on this machine, widest first."""
    macros = seam.predefined_macros()
    isas = []
    if "__AVX512F__" in macros:
        isas.append("avx512")
    if "__AVX2__" in macros and "__FMA__" in macros:
        isas.append("avx2")
    if "__ARM_NEON" in macros and "__aarch64__" in macros:
        isas.append("neon")
    isas.append("scalar")
    return tuple(isas)


def native_isa() -> str:
    """The widest vector ISA of this machine (what kernels use unless told otherwise)."""
    return available_isas()[0]


def _probes() -> seam.CompiledModule:
    return _probes_for(native_isa())


PROBE_SOURCE = '#include "probe_peak.c"\n#include "probe_bandwidth.c"\n'
PROBE_FUNCTIONS = ("kr_probe_fma", "kr_probe_peak", "kr_probe_clock_adds", "kr_probe_threads",
                   "kr_probe_triad", "kr_probe_vector_width", "kr_probe_chains")
"""The probes' module: its source and the functions Python calls (declared in krypton.h)."""


@functools.lru_cache(maxsize=None)
def _probes_for(isa: str) -> seam.CompiledModule:
    return seam.compile_c(PROBE_SOURCE, seam.cdef_for(PROBE_FUNCTIONS), name="probes",
                          macros={"KR_ISA": ISA_MACROS[isa]}, flags=ISA_FLAGS[isa])


@dataclass(frozen=True)
class Peak:
    """The measured FMA peak of ``threads`` cores, with the clock and the pipe count it implies.

    ``gflops`` and ``clock_ghz`` are measured independently, on all ``threads`` at once and
    each thread by its own CPU time (FMA chains; a chain of dependent integer adds, one per
    cycle, beside the FMAs); ``fma_pipes`` is what they imply:
    gflops / (clock_ghz x lanes x 2 flops x threads), rounded to the nearest integer and at
    least 1. It counts FMAs of the full vector width per cycle per core, so a core that
    splits a 512-bit FMA over two 256-bit pipes (Zen 4) has 1. ``clock_ghz`` is 0 and
    ``fma_pipes`` 0 where no clock probe exists (neither x86-64 nor AArch64).
    """

    gflops: float
    clock_ghz: float
    lanes: int
    fma_pipes: int
    threads: int
    isa: str

    def __str__(self) -> str:
        if not self.clock_ghz:
            return f"peak {self.gflops:.0f} GFLOPS on {self.threads} {_cores(self.threads)}"
        return (f"peak {self.gflops:.0f} GFLOPS = {self.threads} {_cores(self.threads)} x "
                f"{self.clock_ghz:.2f} GHz x {self.lanes} lane{'s' * (self.lanes != 1)} x "
                f"2 flops x {self.fma_pipes} pipe{'s' * (self.fma_pipes != 1)}")


def _cores(threads: int) -> str:
    return "core" if threads == 1 else "cores"


def implied_pipes(gflops: float, clock_ghz: float, lanes: int, threads: int) -> int:
    """FMA pipes per core that ``gflops`` implies at ``clock_ghz``: rounded, at least 1."""
    return max(1, round(gflops / _gflops_per_pipe(clock_ghz, lanes, threads)))


def _gflops_per_pipe(clock_ghz: float, lanes: int, threads: int) -> float:
    """What one FMA pipe on each of ``threads`` cores does: a vector FMA (2 flops a lane) a cycle."""
    return clock_ghz * lanes * 2 * threads


def peak(threads: int | None = None, isa: str | None = None, seconds: float = 0.3,
         repeats: int = 20) -> Peak:
    """Measure the FMA peak of ``threads`` cores (default: all) with ``isa``'s vectors.

    Every thread runs enough independent FMA chains to keep every pipe busy (csrc/probe_peak.c):
    a warm-up of about ``seconds`` / 3, then ``repeats`` runs started on all threads together,
    each followed by a clock run (a chain of dependent integer adds beside the FMAs). Each
    thread times its share by its own CPU time, so the time other processes take its core
    counts neither as slow FMAs nor as a slow clock; the threads' rates add up, and the
    fastest run of each kind counts. All of it takes about ``seconds``.

    A virtual machine's core can also be taken by the host, and then its CPU time runs on
    while its FMAs wait: a rate below ``WHOLE_PIPES`` of the whole number of pipes it implies
    is measured again, up to ``PEAK_ATTEMPTS`` times, and the fastest counts.

    Built without OpenMP (a compiler that has none, such as Apple's clang), the probe runs on
    one thread whatever it is asked, and the Peak is that of one core (``threads`` 1), as the
    kernels then compute on one.
    """
    threads = cpu_count() if threads is None else check_threads("threads", threads)
    repeats = positive_int("repeats", repeats)
    isa = isa or native_isa()
    if isa not in available_isas():
        raise ValueError(f"isa {isa!r} is not available here; choose from {available_isas()}")
    lib, ffi = _probes_for(isa).lib, _probes_for(isa).ffi
    threads = int(lib.kr_probe_threads(threads))
    rate, hz = ffi.new("double *"), ffi.new("double *")
    adds_per_pass = lib.kr_probe_clock_adds()
    # Learn how many passes make a run of per_run seconds (CPU time: load does not skew it).
    passes = 64_000
    flops = lib.kr_probe_peak(passes, passes, passes if adds_per_pass else 0, threads, 3,
                              rate, hz)
    per_run = seconds / (3 * repeats)  # warm-up, FMA runs and clock runs: a third each
    fma_passes = max(1, int(per_run * rate[0] / flops * passes))
    clock_passes = int(per_run * hz[0] / adds_per_pass) if adds_per_pass else 0
    lanes = int(lib.kr_probe_vector_width())
    best = None
    for _ in range(PEAK_ATTEMPTS):
        lib.kr_probe_peak(fma_passes * repeats, fma_passes, clock_passes, threads, repeats,
                          rate, hz)
        gflops, clock_ghz = rate[0] / 1e9, hz[0] / 1e9
        pipes = implied_pipes(gflops, clock_ghz, lanes, threads) if clock_ghz else 0
        if best is None or gflops > best.gflops:
            best = Peak(gflops, clock_ghz, lanes, pipes, threads, isa)
        whole = pipes * _gflops_per_pipe(clock_ghz, lanes, threads)  # those pipes, all busy
        if not clock_ghz or gflops >= WHOLE_PIPES * whole:
            break
    return best


PEAK_ATTEMPTS = 3
"""How many times ``peak`` measures, at most, while a run falls short of whole pipes."""
WHOLE_PIPES = 0.9
"""The share of a whole number of FMA pipes a run must reach to be taken at once: on an idle
core the probe's runs come within a few percent of a whole number (measure: ``peak`` on an idle
machine, gflops / (clock_ghz x lanes x 2 x threads x fma_pipes))."""


def explain_fma_units(peaks: Mapping[str, Peak]) -> str:
    """Say in words what ``peaks`` (one ``Peak`` per ISA, from ``peak(1, isa)``) imply.

    The pipe counts are measured (``Peak.fma_pipes``), so the text follows the learner's CPU:
    two 512-bit pipes (Intel Xeon server cores), 512-bit FMAs split over 256-bit units (AMD
    Zen 4: one full-width FMA per cycle), AVX2 only, or NEON. Notebooks 03, 04 and 06 print
    it again where the pipe count sets a limit.
    """
    vector = [name for name in ("avx512", "avx2", "neon") if name in peaks]
    if not vector:
        return "no vector ISA: every FMA does one multiply-add"
    widest = peaks[vector[0]]
    if not widest.clock_ghz:
        return (f"{widest.isa}: {widest.lanes} lanes; no clock probe on this architecture, so "
                "the peak cannot be split into clock x pipes")
    pipes = widest.fma_pipes
    line = f"{widest.isa}: {widest.lanes} float32 lanes, {pipes} full-width FMA per cycle"
    if widest.isa == "avx512" and "avx2" in peaks:
        narrow = peaks["avx2"].fma_pipes
        if pipes >= narrow:
            return (f"{line}; avx2: {narrow}. Each 512-bit FMA pipe is a real one (as on Intel "
                    "Xeon server cores with two): AVX-512 does twice the FLOPs per cycle of AVX2")
        return (f"{line}; avx2: {narrow}. AVX-512 runs as if each 512-bit FMA were split over "
                f"{max(1, round(narrow / pipes))} 256-bit units (AMD Zen 4 does exactly that; "
                "some Intel cores have one 512-bit unit): it does no more FLOPs per cycle "
                "than AVX2, and brings 32 registers instead of 16 and half the instructions")
    if widest.isa == "avx2":
        return (f"{line}: 256-bit FMA units, no AVX-512 (as on AMD Zen 2 and 3 and Intel "
                "client cores)")
    return (f"{line}: 128-bit NEON units (Apple M-series and Arm Neoverse V cores have four, "
            "many others two)")


def peak_gflops(threads: int = 1, isa: str | None = None, seconds: float = 0.3,
                repeats: int = 20) -> float:
    """The peak FMA rate in GFLOPS on ``threads`` cores: ``peak(...).gflops``."""
    return peak(threads, isa, seconds, repeats).gflops


def reported_mhz() -> float | None:
    """The clock /proc/cpuinfo reports for cpu0, in MHz (in a guest: often the host's nominal
    clock, not the one the cores run at; printed beside the measured one, never used)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def bandwidth_gbs(threads: int = 1, megabytes: float | None = None, repeats: int = 5) -> float:
    """Measure memory bandwidth in GB/s with the STREAM triad on ``threads`` cores.

    By default the three arrays together take four times the L3 cache, so the result is the
    bandwidth of main memory. The best of ``repeats`` runs.
    """
    threads = check_threads("threads", threads)
    if megabytes is None:
        megabytes = 4 * cache_sizes().l3 / 1e6
    n = max(1024, int(megabytes * 1e6 / 12))
    a = np.zeros(n, np.float32)
    b = np.ones(n, np.float32)
    c = np.full(n, 2.0, np.float32)
    ffi, lib = _probes().ffi, _probes().lib
    pa, pb, pc = (ffi.cast("float *", x.ctypes.data) for x in (a, b, c))
    lib.kr_probe_triad(pa, pb, pc, n, 1, threads)  # warm up: touch every page once
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        moved = lib.kr_probe_triad(pa, pb, pc, n, 1, threads)
        best = max(best, moved / (time.perf_counter() - start) / 1e9)
    return best


def blas_info() -> list[dict[str, Any]]:
    """The BLAS libraries NumPy has loaded (threadpoolctl's view: name, version, threads)."""
    from threadpoolctl import threadpool_info

    return [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for info in threadpool_info() if info.get("user_api") == "blas"
    ]


def machine_info() -> dict[str, Any]:
    """Everything needed to compare benchmark results from two machines honestly."""
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "cores": cpu_count(),
        "hardware_threads": len(topology().cpus),
        "isa": native_isa(),
        "isas_available": list(available_isas()),
        "caches": asdict(cache_sizes()),
        "compiler": seam.compiler_version(),
        "openmp": bool(seam.openmp_flags()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_info(),
    }


def describe() -> str:
    """One line naming the machine, for plot captions and table headers."""
    caches = cache_sizes()
    cores, cpus = cpu_count(), len(topology().cpus)
    threads = f" ({cpus} hardware threads)" if cpus != cores else ""
    return (f"{cpu_model()}, {cores} cores{threads}, {native_isa().upper()}, "
            f"L1d {caches.l1d // 1024} KiB / L2 {caches.l2 // 1024} KiB / "
            f"L3 {caches.l3 // 1024**2} MiB, NumPy {np.__version__}")
