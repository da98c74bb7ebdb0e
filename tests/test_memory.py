"""Memory: no leak across many kernel calls, threads and a training epoch; packing buffers are
reused from call to call, freed when their thread ends, and their allocation failing inside a
worker thread is reported.

Two gauges, read before and after: the resident set size (/proc/self/statm), which sees
everything, and glibc's count of bytes malloc has handed out and not had back (mallinfo2),
which sees the kernels' packing buffers and NumPy's arrays exactly, without the page-level
noise of RSS. Both are read after a warm-up, so that buffers grown once and kept on purpose
(the packing buffers, NumPy's and Python's caches) are not counted as a leak.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import krypton
from krypton import seam

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                reason="reads the resident set size from /proc (Linux)")

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 2**20


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo2():
    try:
        function = ctypes.CDLL(None).mallinfo2
    except AttributeError:  # not glibc >= 2.33
        return None
    function.restype = _MallInfo2
    return function


_MALLINFO2 = _mallinfo2()


def heap_bytes() -> int | None:
    """Bytes malloc has handed out and not had back (all arenas), or None without glibc."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def wait_for_os_threads(count: int, timeout: float = 30) -> None:
    """Wait until this process runs ``count`` OS threads again. Thread.join() returns when the
    Python thread is done, a moment before the OS thread has run its thread-exit destructors
    (which free the packing buffers); OpenMP workers of a team end after their master."""
    deadline = time.monotonic() + timeout
    while os_threads() > count and time.monotonic() < deadline:
        time.sleep(0.005)


class Gauge:
    """RSS and malloc'd bytes now; ``growth()`` later says by how much each went up."""

    def __init__(self):
        self.rss, self.heap = resident_bytes(), heap_bytes()

    def growth(self) -> tuple[int, int | None]:
        heap = heap_bytes()
        return resident_bytes() - self.rss, None if heap is None else heap - self.heap

    def assert_flat(self, rss_tolerance: int, heap_tolerance: int, what: str) -> None:
        rss, heap = self.growth()
        print(f"\n{what}: RSS {rss / MB:+.2f} MB, malloc'd "
              f"{'n/a' if heap is None else f'{heap / MB:+.3f} MB'}")
        assert rss <= rss_tolerance, f"{what}: RSS grew by {rss / MB:.1f} MB"
        assert heap is None or heap <= heap_tolerance, f"{what}: malloc'd grew by {heap} bytes"


# ---------------------------------------------------------------------------------------------
# 10,000 kernel calls


def mixed_calls(count: int, seed: int = 0) -> list[tuple]:
    """``count`` different calls: every rung, shapes up to 150, transposed operands, knobs."""
    rng = np.random.default_rng(seed)
    calls = []
    for index in range(count):
        kernel = krypton.KERNELS[index % len(krypton.KERNELS)]
        m, n, k = rng.integers(1, 40 if kernel == "naive" else 150, 3)
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        if index % 3 == 1:
            a = np.asfortranarray(a)
        if index % 4 == 2:
            b = np.ascontiguousarray(b.T).T
        knobs = {"threads": 2} if kernel == "parallel" else {}
        if index % 5 == 0 and kernel in ("packed", "parallel"):
            knobs.update(mc=31, kc=17)  # the path that makes a knob struct per call
        calls.append((kernel, a, b, knobs))
    return calls


def test_ten_thousand_kernel_calls_leak_nothing():
    calls = mixed_calls(60)
    for kernel, a, b, knobs in calls * 10:  # warm-up: compile, grow buffers, fill caches
        krypton.matmul(a, b, kernel=kernel, **knobs)
    gauge = Gauge()
    for index in range(10_000):
        kernel, a, b, knobs = calls[index % len(calls)]
        krypton.matmul(a, b, kernel=kernel, **knobs)
    # A leak of one knob struct (64 bytes) per call would be 640 KB; of one C (up to 88 KB), GBs.
    gauge.assert_flat(rss_tolerance=1 * MB, heap_tolerance=64 * 1024,
                      what="10,000 calls over every rung")


# ---------------------------------------------------------------------------------------------
# Packing buffers: reused, per thread, freed at thread exit

WORKSPACE_PROBE = textwrap.dedent("""
    #include "packed.c"
    /* Expose rung 5's per-thread packing buffers to the test. */
    float *kr_test_thread_buffer(int which, int64_t rows, int64_t cols)
    {
        return kr_thread_buffer(which, rows, cols);
    }
    void kr_test_release_main_thread(void) { kr_workspace_release_main_thread(); }
""")


WORKSPACE_CDEF = ("float *kr_test_thread_buffer(int which, int64_t rows, int64_t cols);\n"
                  "void kr_test_release_main_thread(void);")


class Workspace:
    """rung 5's per-thread buffers, called from Python; ``buffer`` gives their address."""

    def __init__(self):
        module = seam.compile_c(WORKSPACE_PROBE, WORKSPACE_CDEF, name="workspace_probe")
        self.lib, self.ffi = module.lib, module.ffi

    def buffer(self, which: int, rows: int, cols: int) -> int:
        return int(self.ffi.cast("uintptr_t", self.lib.kr_test_thread_buffer(which, rows, cols)))


@pytest.fixture(scope="module")
def workspace() -> Workspace:
    return Workspace()


def test_packing_buffers_are_reused_grown_per_thread_and_released(workspace):
    # In a fresh thread, so that this thread's buffers start empty and die with it.
    seen: dict[str, int] = {}

    def body():
        seen["first"] = workspace.buffer(0, 64, 512)
        seen["same size again"] = workspace.buffer(0, 64, 512)
        seen["smaller"] = workspace.buffer(0, 8, 8)
        seen["other buffer"] = workspace.buffer(1, 64, 512)
        before = heap_bytes()
        seen["larger"] = workspace.buffer(0, 2048, 2048)
        seen["grew by"] = heap_bytes() - before if before is not None else None
        seen["overflow"] = workspace.buffer(0, 2**62, 2**62)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen["first"] != 0
    assert seen["same size again"] == seen["first"] and seen["smaller"] == seen["first"]
    assert seen["other buffer"] not in (0, seen["first"])
    assert seen["larger"] != 0
    if seen["grew by"] is not None:  # the old 128 KB buffer freed, a 16 MB one in its place
        assert 15 * MB < seen["grew by"] < 17 * MB
    assert seen["overflow"] == 0  # a size that overflows is refused, not wrapped around

    other: dict[str, int] = {}
    thread = threading.Thread(target=lambda: other.update(first=workspace.buffer(0, 64, 512)))
    before, threads_before = heap_bytes(), os_threads()
    thread.start()
    thread.join()
    wait_for_os_threads(threads_before)
    assert other["first"] != 0
    if before is not None:  # its buffer was freed when it ended
        assert heap_bytes() - before < 64 * 1024


def test_the_main_threads_buffers_are_freed_by_the_exit_handler():
    # Thread destructors do not run for the main thread, so packed.c frees its buffers from an
    # atexit handler; this calls that handler's body directly, in a fresh process.
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = {[os.path.dirname(os.path.abspath(__file__))]!r}
        from test_memory import Workspace, heap_bytes
        workspace = Workspace()
        start = heap_bytes()
        assert workspace.buffer(0, 1024, 4096) and workspace.buffer(1, 1024, 4096)
        held = heap_bytes() - start
        workspace.lib.kr_test_release_main_thread()
        print(held, heap_bytes() - start)
    """)
    if heap_bytes() is None:
        pytest.skip("needs glibc's mallinfo2")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    held, after = map(int, result.stdout.split())
    assert held >= 2 * 16 * MB and after < 64 * 1024


def big_buffer_call(kernel: str, threads: int | None = None) -> None:
    """A product whose packing buffers take ~8 MB (kc = K = 16384), for a 16 KB result."""
    a = np.ones((64, 16384), np.float32)
    b = np.ones((16384, 64), np.float32)
    c = krypton.matmul(a, b, kernel=kernel, threads=threads, kc=16384)
    assert c[0, 0] == 16384


def test_repeated_calls_reuse_their_packing_buffers_without_new_page_faults():
    for kernel in ("packed", "parallel"):
        big_buffer_call(kernel)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            big_buffer_call(kernel)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        # Fresh 8 MB buffers would fault in ~2000 pages per call: 40,000 over 20 calls.
        assert faults < 20 * 200, f"{kernel}: {faults} page faults in 20 calls"


def thread_churn(rounds: int = 8, per_round: int = 8) -> dict:
    """Child process: start and join ``rounds`` x ``per_round`` threads that each run rung 5 and
    rung 6 (with an OpenMP team of its own) on ~8 MB packing buffers; report the growth."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", lambda pad: 0)

    def body():
        big_buffer_call("packed")
        big_buffer_call("parallel", threads=2)

    def churn(count: int) -> None:
        threads = [threading.Thread(target=body) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait_for_os_threads(baseline_tasks)
        trim(0)

    baseline_tasks = os_threads()
    churn(2)  # warm-up: compile, the dynamic mmap threshold, what a thread leaves for good
    gauge = Gauge()
    for _ in range(rounds):
        churn(per_round)
    rss, heap = gauge.growth()
    return {"threads": rounds * per_round, "rss": rss, "heap": heap,
            "tasks_left": os_threads() - baseline_tasks}


def test_threads_that_end_leave_no_packing_buffers_behind():
    # In a child process with one malloc arena: with glibc's default of one arena per thread (up
    # to 8 per core), memory freed in a thread's arena stays in the process's RSS (~100 MB here)
    # although nothing is in use, which would hide a leak in the RSS. The malloc'd-bytes count is
    # exact either way.
    code = "import json, test_memory; print(json.dumps(test_memory.thread_churn()))"
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "MALLOC_ARENA_MAX": "1",
           "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    heap = "n/a" if report["heap"] is None else f"{report['heap'] / MB:+.3f} MB"
    print(f"\n{report['threads']} threads with ~16 MB of packing buffers each: RSS "
          f"{report['rss'] / MB:+.2f} MB, malloc'd {heap}")
    assert report["tasks_left"] <= 0, "threads were left running"
    # Buffers kept after their thread ended would be ~1 GB (64 x 16 MB, and the OpenMP workers').
    assert report["rss"] <= 8 * MB
    assert report["heap"] is None or report["heap"] <= 256 * 1024


# ---------------------------------------------------------------------------------------------
# Allocation failure inside the parallel rung's worker threads

LIMITED_SCRIPT = textwrap.dedent("""
    import resource, numpy as np, krypton
    # Neither operand has memory behind it. 1024 columns of B are wide enough that the
    # kernels pack A (narrower products read A in place: kr_use_a_in_place in csrc/packed.c).
    b = np.broadcast_to(np.float32(1), (65536, 1024))
    a = np.broadcast_to(np.float32(1), (6000, 65536))
    small = np.ones((7, 5), np.float32)
    for kernel in ("packed", "parallel"):                      # warm: compile, start threads
        krypton.matmul(small, small.T, kernel=kernel)
    # From here on the address space may grow by 1 GB: B's packed block (256 MB) fits, each
    # thread's packed block of A (6000 x 65536 floats, 1.5 GB) does not.
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, resource.RLIM_INFINITY))
    for kernel, threads in (("parallel", 2), ("packed", None)):
        try:
            krypton.matmul(a, b, kernel=kernel, threads=threads, mc=6000, kc=65536, nc=1024)
            print(kernel, "no error")
        except MemoryError as error:
            print(kernel, "MemoryError", error)
        c = krypton.matmul(small, small.T, kernel=kernel)
        assert np.array_equal(c, small @ small.T)
    print("done")
""")


def test_a_worker_thread_that_cannot_get_its_buffer_reports_memory_error():
    # The parallel rung's workers allocate their own packed A; one that fails must stop
    # without hanging the others, and the call must report KR_ENOMEM.
    result = subprocess.run([sys.executable, "-c", LIMITED_SCRIPT], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "done"
    for kernel in ("parallel", "packed"):
        assert any(line.startswith(f"{kernel} MemoryError kernel '{kernel}' could not "
                                   "allocate its packing buffers") for line in lines), lines


# ---------------------------------------------------------------------------------------------
# A training epoch


def test_training_epochs_leak_nothing():
    from krypton import train

    rng = np.random.default_rng(0)
    images = rng.standard_normal((60_000, 784), dtype=np.float32)  # an MNIST-sized epoch
    labels = rng.integers(0, 10, 60_000)
    data = train.Data("mnist", images, labels, images[:1000], labels[:1000])
    model = train.build_mlp(seed=0)
    gauges: dict[int, Gauge] = {}

    def at_step(epoch: int, step: int, loss: float) -> None:
        if step == 50 and epoch not in gauges:  # warm by then: buffers, momentum, caches
            gauges[epoch] = Gauge()

    history = train.train(model, data, "parallel", epochs=2, progress=False, log=None,
                          callback=at_step, evaluate_each_epoch=False)
    assert len(history.epochs) == 2 and not history.interrupted
    # From step 50 of epoch 1 to the end of epoch 2: one and a half epochs, 700 steps.
    gauges[0].assert_flat(rss_tolerance=4 * MB, heap_tolerance=1 * MB,
                          what="1.5 training epochs of a 784-256-10 MLP on 60,000 images")
