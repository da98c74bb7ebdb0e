"""Memory safety of the kernel ladder: AddressSanitizer and UBSan, and guard pages around operands.

Two independent nets for the bugs a kernel hides at its edges (packing buffers, edge tiles,
masked vector tails), each run in a subprocess so that a crash fails a test instead of pytest:

- The whole kernel correctness suite (tests/test_kernels.py, tests/test_matmul_errors.py, and
  150 fuzz cases per rung of tests/test_fuzz_kernels.py) runs again with every kernel compiled
  by ``KRYPTON_SANITIZE=address,undefined``. ASan sees every heap buffer: NumPy's arrays,
  the packing buffers; UBSan catches misaligned loads, overflows.
  Python is not built with ASan, so its runtime is preloaded (``LD_PRELOAD``), and leak
  detection is off: CPython deliberately does not free everything at exit, which LeakSanitizer
  would report as thousands of leaks. OpenMP works under ASan with gcc's libgomp. Sanitized
  modules are cached in a ``sanitized`` directory of the kernel cache, so only the first run
  pays for compiling them (about a minute on 2 cores; two compile at once).
- Every rung is called directly (``kernel._function``, as ``Kernel.__call__`` does) on edge
  shapes with A, B and C placed flush against inaccessible pages (PROT_NONE), first at the end
  of their pages and then at the start: one float read or written past either end is a
  segfault. The gaps between the rows of C (ldc > N) and the slack around every operand hold a
  NaN canary: a kernel that writes there is caught by the canary check, one that reads there
  and uses the value gets NaN in C.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import krypton
from krypton import seam
from krypton.kernels import (LOOP_ORDERS, SPECS, Kernel, default_knobs, get_kernel, kernel_source,
                             small_thresholds)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SANITIZERS = "address,undefined"
ASAN_REPORT = "ERROR: AddressSanitizer"
UBSAN_REPORT = "runtime error:"


def asan_runtime() -> str | None:
    """The compiler's ASan runtime library, or None where it has none (or cannot build with it)."""
    try:
        command = seam.compiler()
    except seam.CompilerNotFoundError:
        return None
    found = subprocess.run([*command, "-print-file-name=libasan.so"], capture_output=True,
                           text=True).stdout.strip()
    if not os.path.isabs(found) or not os.path.exists(found):
        return None
    if not seam._compiler_accepts([f"-fsanitize={SANITIZERS}"]):
        return None
    return found


def sanitized_cache() -> Path:
    """Where sanitized modules are cached: beside the normal ones, kept between runs. The
    sanitizer flags are part of every module's cache key, so the two never mix; a persistent
    directory saves recompiling ~20 sanitized modules (over a minute on 2 cores) every run."""
    return seam.cache_dir() / "sanitized"


def sanitized_environment(cache: Path) -> dict[str, str]:
    runtime = asan_runtime()
    if runtime is None:
        pytest.skip("the C compiler has no AddressSanitizer runtime (libasan.so); "
                    "install it (Debian: `apt-get install libasan8`) to run this check")
    preload = " ".join(filter(None, [runtime, os.environ.get("LD_PRELOAD")]))
    return {
        **os.environ,
        "KRYPTON_SANITIZE": SANITIZERS,
        "KRYPTON_CACHE": str(cache),  # sanitized modules live apart from the normal ones
        "LD_PRELOAD": preload,
        # CPython "leaks" by design at exit; abort (not exit 1) makes a report unmistakable.
        # allocator_may_return_null: a malloc too large to satisfy returns NULL, as it does
        # without ASan, so the tests of MemoryError on huge shapes run here too.
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:print_summary=1:"
                        "allocator_may_return_null=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


@pytest.fixture(scope="module")
def sanitized_env() -> dict[str, str]:
    return sanitized_environment(sanitized_cache())


def run_python(code: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout)


# A learner's kernel with the two classic bugs, to show the sanitizers are really switched on:
# without this check, a build that silently lost its -fsanitize flags would pass with zero reports.
BUGGY_SOURCE = r"""
#include <limits.h>
#include "krypton.h"
int kr_sgemm_buggy(int64_t M, int64_t N, int64_t K,
                   const float *A, int64_t rsa, int64_t csa,
                   const float *B, int64_t rsb, int64_t csb,
                   float *C, int64_t ldc, const kr_knobs *knobs)
{
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j)
            C[i * ldc + j] = A[i * rsa] * B[j * csb];
    if (knobs->tile_m == 1)
        C[M * ldc] = 0.0f;                     /* one float past the end of C */
    if (knobs->tile_m == 2) {
        int counter = INT_MAX - (int)(K % 2);  /* K is 1 here: INT_MAX - 1 */
        counter += (int)M + 1;                 /* signed overflow */
        return counter == 0;
    }
    return KR_OK;
}
"""


@pytest.mark.parametrize("bug, report", [(1, ASAN_REPORT + ": heap-buffer-overflow"),
                                         (2, UBSAN_REPORT + " signed integer overflow")])
@pytest.mark.slow
def test_sanitized_build_catches_a_planted_bug(sanitized_env, bug, report):
    code = (
        "import numpy as np, krypton\n"
        f"buggy = krypton.compile_source({BUGGY_SOURCE!r}, 'kr_sgemm_buggy', like='tiled',"
        " name='buggy')\n"
        f"buggy(np.ones((3, 1), np.float32), np.ones((1, 2), np.float32), tile_m={bug})\n"
        "print('the bug went unnoticed')\n"
    )
    result = run_python(code, sanitized_env)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and report in output, output[-3000:]
    assert "the bug went unnoticed" not in output


COUNTER_PLUGIN = '''
"""Loaded with -p: compiles the kernels up front, then counts calls and distinct shapes."""
import json, os
from concurrent.futures import ThreadPoolExecutor
import krypton.kernels as kernels

calls, shapes, modules = [0], set(), set()
original_call = kernels.Kernel.__call__

def counting_call(self, a, b, *args, **kwargs):
    result = original_call(self, a, b, *args, **kwargs)
    calls[0] += 1
    shapes.add((self.spec.name, a.shape[0], b.shape[1], a.shape[1]))
    modules.add(str(self.module.path))
    return result

kernels.Kernel.__call__ = counting_call

def pytest_sessionstart(session):
    # Sanitized builds are slow (seconds each); the compiler runs in a subprocess, so two
    # threads compile two modules at once. The tests then find them all in the cache.
    import strategies
    kernels.get_kernel("naive")  # resolve the compiler's flags once, before the threads
    jobs = [(name, {}) for name in kernels.KERNELS[1:]]
    jobs += [(name, variant) for name in ("regblock", "packed", "parallel", "small")
             for variant in strategies.microtile_variants()]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: kernels.get_kernel(job[0], **job[1]), jobs))

def pytest_sessionfinish(session, exitstatus):
    with open(os.environ["KRYPTON_CALL_LOG"], "w") as log:
        json.dump({"calls": calls[0], "shapes": len(shapes), "modules": sorted(modules),
                   "tests": session.testscollected}, log)
'''

# The kernel correctness suite, run again with every kernel sanitized, with a share of the fuzz
# cases (150 of its 300 per rung; all 5000 under the long profile would take an hour).
SANITIZED_SUITE = ("tests/test_kernels.py", "tests/test_matmul_errors.py",
                   "tests/test_fuzz_kernels.py", "tests/test_small_paths.py",
                   "tests/test_fused.py")
# $KRYPTON_SANITIZED_FUZZ_EXAMPLES lowers it where time is short (.ci/run, on 2 shared cores).
SANITIZED_FUZZ_EXAMPLES = os.environ.get("KRYPTON_SANITIZED_FUZZ_EXAMPLES", "150")


@pytest.mark.slow
def test_kernel_suite_passes_under_asan_and_ubsan(sanitized_env, tmp_path):
    """The kernel correctness suite with every kernel sanitized."""
    (tmp_path / "krypton_call_counter.py").write_text(COUNTER_PLUGIN)
    log = tmp_path / "calls.json"
    env = {**sanitized_env, "KRYPTON_CALL_LOG": str(log),
           "KRYPTON_FUZZ_EXAMPLES": SANITIZED_FUZZ_EXAMPLES,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), sanitized_env["PYTHONPATH"]])}
    # --capture=sys: pytest captures Python's output only, so a sanitizer's report (written by
    # C to file descriptor 2) reaches us even when it aborts the process in the middle of a test.
    command = [sys.executable, "-m", "pytest", *SANITIZED_SUITE, "-p", "no:cacheprovider",
               "-p", "krypton_call_counter", "-q", "-x", "--capture=sys"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert ASAN_REPORT not in output and UBSAN_REPORT not in output, output[-6000:]

    counts = json.loads(log.read_text())
    modules = [Path(path) for path in counts["modules"]]
    assert modules and all(b"libasan" in path.read_bytes() for path in modules), \
        "the kernels were not built with AddressSanitizer"
    assert counts["calls"] > 500
    print(f"\nunder ASan+UBSan: {counts['tests']} tests, {counts['calls']} kernel calls on "
          f"{counts['shapes']} distinct (kernel, M, N, K), {len(modules)} sanitized modules, "
          "zero reports")


# ---------------------------------------------------------------------------------------------
# Guard pages and canaries. Everything below the parent's test runs in the child process.

CANARY = np.uint32(0x7FC0FFEE)  # a quiet NaN: read by mistake, it turns the result into NaN
UNWRITTEN = np.uint32(0x7FC0BEEF)  # what C holds before the call: every element must change


class GuardedFloats:
    """``count`` floats in their own mapping with an inaccessible page on either side, placed
    flush against the page after (``at_end``) or the page before; the slack is canary."""

    PAGE = mmap.PAGESIZE
    PROT_NONE = 0  # <sys/mman.h>; Python's mmap module has PROT_READ and PROT_WRITE only
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

    def __init__(self, count: int, at_end: bool):
        page = self.PAGE
        self.data_bytes = max(page, -(-count * 4 // page) * page)
        self.total = self.data_bytes + 2 * page
        base = self.libc.mmap(None, self.total, mmap.PROT_READ | mmap.PROT_WRITE,
                              mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap failed")
        self.base = base
        for guard in (base, base + page + self.data_bytes):
            if self.libc.mprotect(guard, page, self.PROT_NONE) != 0:
                raise OSError(ctypes.get_errno(), "mprotect failed")
        region = (ctypes.c_float * (self.data_bytes // 4)).from_address(base + page)
        self.region = np.frombuffer(region, np.float32)
        self.region.view(np.uint32)[:] = CANARY
        self.offset = self.region.size - count if at_end else 0
        self.address = base + page + 4 * self.offset  # where element 0 of the extent lives

    def close(self) -> None:
        self.region = None
        self.libc.munmap(self.base, self.total)


def strided_layout(rows: int, cols: int, layout: str) -> tuple[int, int]:
    """Element strides (row, column) of a (rows, cols) operand in one of the layouts below."""
    return {"c": (cols, 1), "fortran": (1, rows), "sliced": (2 * cols + 3, 2),
            "reversed": (-cols, -1), "broadcast_rows": (0, 1), "broadcast_cols": (1, 0),
            "sliced_rows": (cols + 5, 1)}[layout]


LAYOUTS_ANY = ("c", "fortran", "sliced", "reversed", "broadcast_rows", "broadcast_cols")
LAYOUTS_UNIT_COLUMNS = ("c", "sliced_rows", "broadcast_rows")  # rungs 3-4 need csb == 1


def place_operand(rng, rows: int, cols: int, layout: str, at_end: bool):
    """A guarded (rows, cols) operand: (buffer, pointer offset, row stride, column stride,
    the matrix as C will read it)."""
    rs, cs = strided_layout(rows, cols, layout)
    i, j = np.indices((rows, cols))
    index = i * rs + j * cs
    low = int(index.min()) if index.size else 0
    high = int(index.max()) if index.size else -1
    buffer = GuardedFloats(high - low + 1, at_end)
    origin = buffer.offset - low  # position of element (0, 0) in the region
    buffer.region[origin + index] = rng.uniform(-1, 1, (rows, cols)).astype(np.float32)
    matrix = buffer.region[origin + index].copy()  # broadcast layouts keep the last write
    return buffer, origin, rs, cs, matrix


def edge_cases(kernel: Kernel, knob_sets: list[dict]) -> list[tuple]:
    """(m, n, k, knobs): every small edge dimension against every other, and the default blocks'
    edges one dimension at a time."""
    code = kernel.code_knobs
    mr, nr = code.get("mr", 1), code.get("nr", 1)
    width = {"avx512": 16, "avx2": 8, "neon": 4, "scalar": 1}.get(code.get("isa"), 1)
    small = sorted({0, 1, 2, 3, 4, 5, 8, 9, 17, 31, 33, mr - 1, mr, mr + 1, nr - 1, nr, nr + 1,
                    width - 1, width + 1, 2 * mr + 1} - {-1})
    cases = []
    for knobs in knob_sets:
        edges = sorted({value + d for name, value in knobs.items() if name != "loop_order"
                        for d in (-1, 0, 1)} | set(small))
        edges = [e for e in edges if 0 <= e <= 4 * max(nr, 16) + 1]
        for index, m in enumerate(edges):
            for n_index, n in enumerate(edges):
                k = edges[(index * 7 + n_index * 3) % len(edges)]
                # M = 0, N = 0 and K = 0 never reach C through Kernel.__call__, but C is
                # called directly here, so its own handling of them is checked too.
                cases.append((m, n, k, knobs))
    defaults = {k: v for k, v in default_knobs(kernel.spec.name, code.get("isa")).items()
                if k in kernel.spec.runtime_knobs}
    for name, value in defaults.items():
        if name == "loop_order":
            continue
        for size in (value - 1, value + 1):
            dim = {"tile_m": 0, "mc": 0, "tile_n": 1, "nc": 1, "tile_k": 2, "kc": 2}[name]
            shape = [mr + 1, nr + 1, 3]
            shape[dim] = size
            cases.append((*shape, defaults))
    if kernel.spec.name == "small":   # rung 7's dot path walks k in chunks, with a tail
        chunk = small_thresholds(**code)["dot_chunk"]
        cases += [(5, 9, chunk + 1, defaults), (37, 1, 2 * chunk + width + 1, defaults)]
    return cases


def run_guard_page_cases(name: str) -> None:
    """Child process: one rung on every edge case, both placements; prints a JSON summary."""
    import strategies as S

    if name.startswith("planted_overrun"):
        kernels = [krypton.compile_source(OVERRUN_SOURCE, "kr_sgemm_overrun", like="naive",
                                          name="overrun")]
    elif name.endswith("_every_thread"):
        # The threaded rungs run small products on one thread; with the cut-off at one flop,
        # even a 2 x 2 product is split, so the thread grid's edges get the guard pages too.
        rung = name.removesuffix("_every_thread")
        spec = SPECS[rung]
        code = get_kernel(rung).code_knobs
        macros = {"KR_ISA": krypton.machine.ISA_MACROS[code["isa"]], "KR_MR": code["mr"],
                  "KR_NR": code["nr"], "KR_MIN_FLOPS_PER_THREAD": 1}
        module = seam.compile_c(kernel_source(rung), seam.cdef_for([spec.function]),
                                name=name, macros=macros,
                                flags=krypton.machine.ISA_FLAGS[code["isa"]])
        kernels = [Kernel(spec, module, spec.function, code)]
    else:
        kernels = [get_kernel(name)]
        if "isa" in SPECS[name].code_knobs and "avx2" in krypton.machine.available_isas():
            kernels.append(get_kernel(name, isa="avx2"))
    small_knobs = {"naive": [{"loop_order": "ijk"}, {"loop_order": "ikj"}],
                   "tiled": [{"tile_m": 5, "tile_n": 7, "tile_k": 3}],
                   "simd": [{"tile_m": 5, "tile_n": 19, "tile_k": 3}],
                   "regblock": [{"tile_m": 7, "tile_n": 70, "tile_k": 3}],
                   "packed": [{"mc": 7, "kc": 5, "nc": 70}, {"mc": 1, "kc": 1, "nc": 1}],
                   "parallel": [{"mc": 7, "kc": 5, "nc": 70}, {"mc": 1, "kc": 2, "nc": 1}],
                   "small": [{"mc": 7, "kc": 5, "nc": 70}, {"mc": 1, "kc": 2, "nc": 1}],
                   }[kernels[0].spec.name]
    if name.startswith("planted_overrun"):
        small_knobs = [{"loop_order": "ijk" if name.endswith("read") else "ikj"}]
    rng = np.random.default_rng(0)
    ran = 0
    for kernel in kernels:
        unit_columns = kernel.spec.needs_unit_stride_b
        for case_index, (m, n, k, knobs) in enumerate(edge_cases(kernel, small_knobs)):
            layout_a = LAYOUTS_ANY[case_index % len(LAYOUTS_ANY)]
            b_layouts = LAYOUTS_UNIT_COLUMNS if unit_columns else LAYOUTS_ANY
            layout_b = b_layouts[(case_index // 2) % len(b_layouts)]
            threads = 1 + case_index % 4 if kernel.spec.threaded else 1
            for at_end in (True, False):
                description = (f"{kernel!r} m={m} n={n} k={k} knobs={knobs} a={layout_a} "
                               f"b={layout_b} threads={threads} at_end={at_end}")
                print(description, flush=True)  # the last line printed names a crashing case
                problem = run_guarded_case(kernel, m, n, k, knobs, layout_a, layout_b, threads,
                                           at_end, rng, S)
                if problem:
                    print(f"FAILED: {description}: {problem}", flush=True)
                    sys.exit(1)
                ran += 1
    print(json.dumps({"cases": ran}))


def run_guarded_case(kernel: Kernel, m: int, n: int, k: int, knobs: dict, layout_a: str,
                     layout_b: str, threads: int, at_end: bool, rng, S) -> str | None:
    a_buffer, a_origin, rsa, csa, a = place_operand(rng, m, k, layout_a, at_end)
    b_buffer, b_origin, rsb, csb, b = place_operand(rng, k, n, layout_b, at_end)
    ldc = n + 3
    c_index = np.arange(m)[:, None] * ldc + np.arange(n)[None, :]
    c_buffer = GuardedFloats(int(c_index.max()) + 1 if c_index.size else 0, at_end)
    c_buffer.region.view(np.uint32)[c_buffer.offset + c_index] = UNWRITTEN
    before = [x.region.view(np.uint32).copy() for x in (a_buffer, b_buffer, c_buffer)]

    ffi = kernel._ffi
    c_knobs = {name: LOOP_ORDERS.index(v) if name == "loop_order" else v
               for name, v in knobs.items()}
    status = kernel._function(
        m, n, k,
        ffi.cast("float *", a_buffer.address + 4 * (a_origin - a_buffer.offset)), rsa, csa,
        ffi.cast("float *", b_buffer.address + 4 * (b_origin - b_buffer.offset)), rsb, csb,
        ffi.cast("float *", c_buffer.address), ldc,
        ffi.new("kr_knobs *", dict(c_knobs, threads=threads)),
    )
    try:
        if status != 0:
            return f"returned status {status}"
        c = c_buffer.region[c_buffer.offset + c_index]
        error = np.abs(c - S.reference(a, b))
        if c.size and not np.all(error <= S.error_bound(a, b)):
            return f"wrong result: max error {error.max()}"
        outside = np.ones(c_buffer.region.size, bool)
        outside[c_buffer.offset + c_index] = False
        after_c = c_buffer.region.view(np.uint32)
        if not np.array_equal(after_c[outside], before[2][outside]):
            written = np.flatnonzero(outside & (after_c != before[2]))
            return f"wrote outside C at region offsets {written[:10]} (C starts at " \
                   f"{c_buffer.offset}, ldc={ldc})"
        for label, buffer, old in (("A", a_buffer, before[0]), ("B", b_buffer, before[1])):
            if not np.array_equal(buffer.region.view(np.uint32), old):
                return f"modified its input {label}"
        return None
    finally:
        for buffer in (a_buffer, b_buffer, c_buffer):
            buffer.close()


def run_guard_page_child(name: str) -> subprocess.CompletedProcess:
    code = f"from test_sanitizers import run_guard_page_cases; run_guard_page_cases({name!r})"
    path = os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])
    return run_python(code, {**os.environ, "PYTHONPATH": path})


# Two classic edge bugs: with loop_order 0 it reads one float past the end of A's last row (the
# guard page after A catches it); with 1 it writes one float into the gap after each row of C
# but the last (when N > 1), which only the canary can see: the gap is inside the mapping.
OVERRUN_SOURCE = r"""
#include "krypton.h"
int kr_sgemm_overrun(int64_t M, int64_t N, int64_t K,
                     const float *A, int64_t rsa, int64_t csa,
                     const float *B, int64_t rsb, int64_t csb,
                     float *C, int64_t ldc, const kr_knobs *knobs)
{
    const int reads_past_a = knobs->loop_order == 0;
    const float past_a = reads_past_a ? A[(M - 1) * rsa + K * csa] : 0.0f;
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N + (!reads_past_a && N > 1 && i + 1 < M); ++j) {
            float sum = 0.0f;
            for (int64_t k = 0; k < K; ++k)
                sum += A[i * rsa + k * csa] * B[k * rsb + (j % N) * csb];
            C[i * ldc + j] = sum + 0.0f * past_a;
        }
    return KR_OK;
}
"""


@pytest.mark.parametrize("name", [*krypton.KERNELS, "parallel_every_thread",
                                  "small_every_thread"])
def test_rung_stays_inside_its_operands_on_edge_shapes(name):
    result = run_guard_page_child(name)
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
    assert result.returncode == 0, (
        f"exit code {result.returncode} (-11 is a segfault: a guard page was touched); "
        f"the last case run:\n{tail}")
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["cases"] > 100
    print(f"\n{name}: {summary['cases']} guarded calls, nothing touched outside A, B and C")


@pytest.mark.parametrize("bug, caught_by", [("read", "segfault"), ("write", "wrote outside C")])
def test_guard_pages_and_canaries_catch_a_planted_overrun(bug, caught_by):
    result = run_guard_page_child(f"planted_overrun_{bug}")
    output = result.stdout + result.stderr
    assert result.returncode == -11 if caught_by == "segfault" else caught_by in output, output
