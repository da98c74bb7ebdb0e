"""The cffi build seam: the on-disk cache, recompiles, concurrent builds, compiler errors."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import krypton
from krypton import seam
from kernel_cache import built_modules

ADD_SOURCE = "int kr_add(int a, int b) { return a + b + OFFSET; }\n"
ADD_CDEF = "int kr_add(int a, int b);"


def test_compiles_once_then_loads_from_the_disk_cache(cache):
    first = seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder", macros={"OFFSET": 0})
    assert first.lib.kr_add(2, 3) == 5
    assert len(built_modules(cache)) == 1
    seam._loaded.clear()  # a new process would start with an empty in-memory table
    mtime = first.path.stat().st_mtime_ns
    second = seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder", macros={"OFFSET": 0})
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    assert len(built_modules(cache)) == 1


def test_a_changed_macro_or_source_compiles_a_new_module(cache):
    base = seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder", macros={"OFFSET": 0})
    by_macro = seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder", macros={"OFFSET": 10})
    by_source = seam.compile_c(ADD_SOURCE.replace("a + b", "a - b"), ADD_CDEF, name="adder",
                               macros={"OFFSET": 0})
    assert (base.lib.kr_add(2, 3), by_macro.lib.kr_add(2, 3), by_source.lib.kr_add(2, 3)) == (5, 15, -1)
    assert len({base.path, by_macro.path, by_source.path}) == 3


def test_editing_an_included_header_recompiles(cache, tmp_path):
    include = tmp_path / "inc"
    include.mkdir()
    (include / "offset.h").write_text("#define OFFSET 1\n")
    source = '#include "offset.h"\nint kr_add(int a, int b) { return a + b + OFFSET; }\n'
    before = seam.compile_c(source, ADD_CDEF, name="adder", include_dirs=[include])
    (include / "offset.h").write_text("#define OFFSET 100\n")
    after = seam.compile_c(source, ADD_CDEF, name="adder", include_dirs=[include])
    assert (before.lib.kr_add(1, 1), after.lib.kr_add(1, 1)) == (3, 102)


def test_force_recompiles_even_when_cached(cache):
    first = seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder", macros={"OFFSET": 0})
    mtime = first.path.stat().st_mtime_ns
    again = seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder", macros={"OFFSET": 0}, force=True)
    assert again.path.stat().st_mtime_ns != mtime


def test_a_truncated_cache_entry_is_detected_and_rebuilt(cache):
    # Build in another process: this one must not have the file mapped while we damage it.
    script = ("from krypton import seam; "
              f"print(seam.compile_c({ADD_SOURCE!r}, {ADD_CDEF!r}, name='adder', "
              "macros={'OFFSET': 7}).path)")
    built = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True, env={**os.environ, "KRYPTON_CACHE": str(cache)})
    path = Path(built.stdout.strip())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    rebuilt = seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder", macros={"OFFSET": 7})
    assert rebuilt.path == path and rebuilt.lib.kr_add(1, 1) == 9
    assert path.read_bytes() != data[: len(data) // 3]


def test_a_syntax_error_is_reported_with_the_compilers_message(cache):
    broken = "int kr_add(int a, int b) { return a + b }\n"  # missing ';'
    with pytest.raises(krypton.CompileError) as info:
        seam.compile_c(broken, ADD_CDEF, name="broken")
    message = str(info.value)
    assert "broken.c:1" in message and "error" in message
    assert "expected" in info.value.compiler_output
    assert not built_modules(cache)


def test_a_missing_compiler_gives_a_clear_error(cache, monkeypatch):
    monkeypatch.setenv("CC", "definitely-not-a-compiler-xyz")
    with pytest.raises(krypton.CompilerNotFoundError, match="no C compiler found"):
        seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder", macros={"OFFSET": 3})


def _compile_in_child(cache_dir: str, queue) -> None:
    os.environ["KRYPTON_CACHE"] = cache_dir
    module = seam.compile_c(ADD_SOURCE, ADD_CDEF, name="racer", macros={"OFFSET": 42})
    queue.put(module.lib.kr_add(0, 0))


def test_two_processes_compiling_the_same_module_at_once_both_succeed(cache):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_compile_in_child, args=(str(cache), queue))
                for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0, 0, 0]
    assert sorted(queue.get(timeout=5) for _ in children) == [42, 42, 42]
    assert len(built_modules(cache)) == 1
    assert not list(cache.glob("build-*")), "temporary build directories were left behind"


def test_krypton_cflags_come_last_and_override_the_modules_own_flags(cache, monkeypatch):
    monkeypatch.setenv("KRYPTON_CFLAGS", "-UOFFSET -DOFFSET=7")
    module = seam.compile_c(ADD_SOURCE, ADD_CDEF, name="adder", flags=["-DOFFSET=1"])
    assert module.lib.kr_add(2, 3) == 12


def test_supported_flags_keeps_what_the_compiler_takes_and_drops_the_rest():
    assert seam.supported_flags(["-fno-such-flag-in-any-compiler", "-O2", "-DX=1"]) == ("-O2",
                                                                                       "-DX=1")
    assert seam.supported_flags([]) == ()


def test_rungs_5_to_7_ask_for_no_stride_copies_where_the_compiler_has_the_flag():
    from krypton import kernels
    for name in ("packed", "parallel", "small"):
        spec = kernels.SPECS[name]
        assert spec.optional_flags == ("-fno-version-loops-for-strides",)
        _, flags = kernels._macros_and_flags(spec, {})
        assert flags[-1:] == seam.supported_flags(spec.optional_flags)
    assert kernels.SPECS["naive"].optional_flags == ()


def test_a_learners_kernel_compiles_from_a_string_and_runs_like_matmul(cache):
    source = textwrap.dedent("""
        #include "krypton.h"
        int kr_sgemm_mine(int64_t M, int64_t N, int64_t K,
                          const float *A, int64_t rsa, int64_t csa,
                          const float *B, int64_t rsb, int64_t csb,
                          float *C, int64_t ldc, const kr_knobs *knobs)
        {
            for (int64_t i = 0; i < M; ++i)
                for (int64_t j = 0; j < N; ++j) {
                    float sum = 0.0f;
                    for (int64_t k = 0; k < K; ++k)
                        sum += A[i * rsa + k * csa] * B[k * rsb + j * csb];
                    C[i * ldc + j] = sum;
                }
            return 0;
        }
    """)
    mine = krypton.compile_source(source, "kr_sgemm_mine", like="naive", name="mine")
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (9, 13)).astype(np.float32)
    b = rng.uniform(-1, 1, (13, 5)).astype(np.float32)
    np.testing.assert_allclose(mine(a, b), a.astype(np.float64) @ b, atol=1e-5)
    with pytest.raises(TypeError, match="float32"):
        mine(a.astype(np.float64), b)


def test_kernel_calls_release_the_gil(cache):
    """Two Python threads in a long C call overlap in time only if the GIL is released."""
    source = textwrap.dedent("""
        #include <time.h>
        double kr_spin(double seconds) {
            struct timespec t0, t;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            do { clock_gettime(CLOCK_MONOTONIC, &t); }
            while ((t.tv_sec - t0.tv_sec) + 1e-9 * (t.tv_nsec - t0.tv_nsec) < seconds);
            return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
        }
    """)
    lib = seam.compile_c(source, "double kr_spin(double seconds);", name="spin").lib
    counter = {"ticks": 0}
    done = threading.Event()

    def python_work():
        while not done.is_set():
            counter["ticks"] += 1

    worker = threading.Thread(target=python_work)
    worker.start()
    lib.kr_spin(0.3)  # with the GIL held, the worker could not tick at all meanwhile
    ticks_during_c = counter["ticks"]
    done.set()
    worker.join()
    assert ticks_during_c > 1000
