"""Kernels, the build cache and training under concurrency: Python threads (kernel calls release
the GIL, so these run truly in parallel), several processes sharing one cache, a damaged cache.

tests/test_seam.py already covers three processes building a small module into one cache, and a
truncated entry; here the same happens to the real kernels, together with threads, and the cache
is damaged in the ways a truncation does not cover (same length, no digest, a forged digest).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from kernel_cache import built_modules

import krypton
from krypton import nn, optim
from krypton.nn import functional as F

import strategies as S

REPO = Path(__file__).resolve().parent.parent
JOIN_TIMEOUT = 300  # seconds: a deadlock fails the test instead of hanging CI


def run_in_threads(work, count: int) -> list[BaseException]:
    """Run ``work(index)`` in ``count`` threads started together; return what they raised."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            start.wait()
            work(index)
        except BaseException as error:  # noqa: BLE001  (reported by the test)
            errors.append(error)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        errors.append(TimeoutError(f"{stuck} of {count} threads still running after "
                                   f"{JOIN_TIMEOUT} s: a deadlock?"))
    return errors


# ---------------------------------------------------------------------------------------------
# Many threads calling krypton.matmul at once

THREADS = 8
CALLS_PER_THREAD = 24


def thread_jobs(index: int, rng: np.random.Generator) -> list[tuple]:
    """Thread ``index``'s calls: every rung in turn (starting at a different one per thread), on
    shapes and layouts of its own, the parallel rung with 1 to 3 threads of its own."""
    jobs = []
    for call in range(CALLS_PER_THREAD):
        kernel = krypton.KERNELS[(index + call) % len(krypton.KERNELS)]
        limit = 60 if kernel == "naive" else 260
        m, n, k = (int(rng.choice([rng.integers(1, limit), rng.choice(S.EDGE_SIZES)]))
                   for _ in range(3))
        a = S.make_operand(rng, m, k, S.LAYOUTS[int(rng.integers(len(S.LAYOUTS)))])
        b = S.make_operand(rng, k, n, S.LAYOUTS[int(rng.integers(len(S.LAYOUTS)))])
        threads = int(rng.integers(1, 4)) if kernel == "parallel" else None
        knobs = {"mc": 31, "kc": 17} if kernel in ("packed", "parallel") and call % 3 == 0 else {}
        jobs.append((kernel, a, b, threads, knobs))
    return jobs


def test_eight_threads_calling_matmul_at_once_get_the_single_threaded_results():
    rng = np.random.default_rng(11)
    jobs = [thread_jobs(index, rng) for index in range(THREADS)]
    # One pair of operands every thread multiplies at the same moment, with the same kernel
    # object: the shared default-knob struct and the read-only inputs.
    shared_a = S.make_operand(rng, 300, 200, "c")
    shared_b = S.make_operand(rng, 200, 250, "transposed")
    for index in range(THREADS):
        jobs[index].insert(index % 3, ("parallel", shared_a, shared_b, 2, {}))
    expected = [[krypton.matmul(a, b, kernel=kernel, threads=threads, **knobs)
                 for kernel, a, b, threads, knobs in thread] for thread in jobs]
    for thread in jobs:  # the sequential results themselves are right
        for kernel, a, b, threads, knobs in thread:
            c = krypton.matmul(a, b, kernel=kernel, threads=threads, **knobs)
            assert np.all(np.abs(c - S.reference(a, b)) <= S.error_bound(a, b))
    results: list[list] = [[] for _ in range(THREADS)]

    def work(index: int) -> None:
        for _ in range(2):
            for kernel, a, b, threads, knobs in jobs[index]:
                results[index].append(krypton.matmul(a, b, kernel=kernel, threads=threads,
                                                     **knobs))

    assert run_in_threads(work, THREADS) == []
    for index in range(THREADS):
        for got, (want, job) in zip(results[index], zip(expected[index] * 2, jobs[index] * 2)):
            kernel, a, b, threads, knobs = job
            assert np.array_equal(got, want), (
                f"thread {index}: {kernel} {a.shape} @ {b.shape} threads={threads} {knobs} "
                "differs from the same call made alone")
    total = sum(len(r) for r in results)
    print(f"\n{THREADS} threads, {total} concurrent calls, bitwise equal to sequential ones")


def test_threads_compiling_kernels_at_once_in_one_process(tmp_path):
    """Four threads ask for the same two not-yet-compiled variants at once (a fresh cache, in a
    fresh process): every one gets a working kernel, and the cache holds one module each."""
    script = textwrap.dedent("""
        import threading, numpy as np, krypton
        a = np.arange(35, dtype=np.float32).reshape(5, 7) / 10
        b = np.arange(21, dtype=np.float32).reshape(7, 3) / 10
        barrier, errors = threading.Barrier(4), []
        def work(i):
            try:
                barrier.wait()
                variant = {"isa": "scalar", "mr": 4, "nr": 2} if i % 2 else {}
                c = krypton.get_kernel("packed", **variant)(a, b)
                assert np.allclose(c, a.astype(np.float64) @ b, atol=1e-5), c
            except BaseException as error:
                errors.append(repr(error))
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        [t.start() for t in threads]; [t.join() for t in threads]
        print("errors:", errors)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "KRYPTON_CACHE": str(tmp_path)}, timeout=600)
    assert result.returncode == 0 and "errors: []" in result.stdout, result.stdout + result.stderr
    assert len(built_modules(tmp_path)) == 2
    assert_entries_intact(tmp_path)
    assert not list(tmp_path.glob("build-*")), "temporary build directories were left behind"


# ---------------------------------------------------------------------------------------------
# Several processes, one cache

def assert_entries_intact(cache: Path) -> None:
    """Every module in the cache has the digest of its own bytes beside it. (Racing builders
    each rename a digest, then a library: the pairs could interleave, but the builds are
    byte-identical, so whichever pair is last, it matches, and the next load needs no rebuild.)"""
    for module in built_modules(cache):
        digest = module.with_name(module.name + ".sha256").read_text().strip()
        assert digest == hashlib.sha256(module.read_bytes()).hexdigest(), module.name


PROCESS_SCRIPT = textwrap.dedent("""
    import os, sys, time, numpy as np, krypton
    go = sys.argv[1]
    while not os.path.exists(go):   # start together: the compilers overlap
        time.sleep(0.01)
    rng = np.random.default_rng(int(sys.argv[2]))
    a = rng.uniform(-1, 1, (97, 131)).astype(np.float32)
    b = rng.uniform(-1, 1, (131, 67)).astype(np.float32)
    for kernel in ("naive", "packed"):
        c = krypton.matmul(a, b, kernel=kernel)
        assert np.abs(c - a.astype(np.float64) @ b).max() < 1e-4, kernel
    print("ok")
""")


def test_processes_compiling_the_same_kernels_into_an_empty_cache_all_succeed(tmp_path):
    cache, go = tmp_path / "cache", tmp_path / "go"
    env = {**os.environ, "KRYPTON_CACHE": str(cache)}
    children = [subprocess.Popen([sys.executable, "-c", PROCESS_SCRIPT, str(go), str(seed)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=env) for seed in range(3)]
    go.touch()
    outputs = [child.communicate(timeout=600)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], "\n".join(outputs)
    assert all(output.strip().endswith("ok") for output in outputs), outputs
    assert len(built_modules(cache)) == 2  # naive and packed, one module each
    assert_entries_intact(cache)
    assert not list(cache.glob("build-*")), "temporary build directories were left behind"


# ---------------------------------------------------------------------------------------------
# A damaged cache entry is detected and rebuilt

# (A truncated library is tests/test_seam.py's case.)
DAMAGE = {
    "one_byte_flipped": lambda path, digest: path.write_bytes(flip_middle_byte(path.read_bytes())),
    "digest_missing": lambda path, digest: digest.unlink(),
    "garbage_with_a_forged_digest": lambda path, digest: forge(path, digest, b"\x7fELF" + b"0" * 4000),
    "empty_with_a_forged_digest": lambda path, digest: forge(path, digest, b""),
}


def flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def forge(path: Path, digest: Path, content: bytes) -> None:
    path.write_bytes(content)
    digest.write_text(hashlib.sha256(content).hexdigest())


MATMUL_SCRIPT = textwrap.dedent("""
    import numpy as np, krypton
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    c = krypton.matmul(a, a.T, kernel="naive")
    assert np.array_equal(c, a.astype(np.float64) @ a.T.astype(np.float64)), c
    print(krypton.get_kernel("naive").module.path)
""")


@pytest.fixture(scope="module")
def pristine_naive(tmp_path_factory) -> tuple[Path, bytes, str]:
    """The naive kernel built once into a private cache, built in another process (this one
    must not have it mapped while tests damage it)."""
    cache = tmp_path_factory.mktemp("naive-cache")
    result = subprocess.run([sys.executable, "-c", MATMUL_SCRIPT], capture_output=True,
                            text=True, env={**os.environ, "KRYPTON_CACHE": str(cache)},
                            check=True, timeout=600)
    path = Path(result.stdout.strip().splitlines()[-1])
    digest = path.with_name(path.name + ".sha256")
    return path, path.read_bytes(), digest.read_text()


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cache_entry_is_detected_and_rebuilt(pristine_naive, damage, tmp_path):
    built, library, digest_text = pristine_naive
    cache = tmp_path / "cache"
    cache.mkdir()
    path, digest = cache / built.name, cache / (built.name + ".sha256")
    path.write_bytes(library)
    digest.write_text(digest_text)
    DAMAGE[damage](path, digest)
    damaged = path.read_bytes()

    result = subprocess.run([sys.executable, "-c", MATMUL_SCRIPT], capture_output=True,
                            text=True, env={**os.environ, "KRYPTON_CACHE": str(cache)},
                            timeout=600)
    assert result.returncode == 0, f"exit code {result.returncode}:\n{result.stderr[-3000:]}"
    assert Path(result.stdout.strip().splitlines()[-1]) == path
    assert digest.read_text().strip() == hashlib.sha256(path.read_bytes()).hexdigest()
    if damage != "digest_missing":  # (there the library itself was intact)
        assert path.read_bytes() != damaged, "the damaged library was left in the cache"


# ---------------------------------------------------------------------------------------------
# Training in threads

def tiny_mlp_run(seed: int, backend: str, steps: int = 20) -> list[np.ndarray]:
    """Train a 196-64-10 MLP for ``steps`` SGD steps on a fixed random batch of 128; return
    its weights."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (128, 196)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    model = nn.Sequential(nn.Linear(196, 64), nn.ReLU(), nn.Linear(64, 10))
    model.load_state_dict(initial_weights(seed))
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with krypton.backend(backend):
        for _ in range(steps):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(krypton.Tensor(x)), y)
            loss.backward()
            optimizer.step()
            with krypton.no_grad():  # evaluation in this thread must not stop the others' graphs
                model(krypton.Tensor(x[:8]))
    return [p.data.copy() for p in model.parameters()]


def initial_weights(seed: int) -> dict[str, np.ndarray]:
    # Made from a private generator: nn.Linear draws from one generator shared by all threads,
    # so models created at once in several threads would get an order-dependent start.
    rng = np.random.default_rng(1000 + seed)
    shapes = {"0.weight": (64, 196), "0.bias": (64,), "2.weight": (10, 64), "2.bias": (10,)}
    return {name: rng.uniform(-0.1, 0.1, shape).astype(np.float32)
            for name, shape in shapes.items()}


def test_threads_training_their_own_mlps_at_once_match_training_alone():
    backends = ["parallel", "packed", "regblock", "numpy", "parallel", "simd"]
    alone = [tiny_mlp_run(seed, backend) for seed, backend in enumerate(backends)]
    together: list = [None] * len(backends)

    def work(index: int) -> None:
        together[index] = tiny_mlp_run(index, backends[index])

    assert run_in_threads(work, len(backends)) == []
    for index, backend in enumerate(backends):
        for got, want in zip(together[index], alone[index]):
            assert np.array_equal(got, want), f"thread {index} ({backend}) trained differently"
        assert not np.array_equal(alone[index][0], initial_weights(index)["0.weight"])


# ---------------------------------------------------------------------------------------------
# fork() after the parallel rung has run


FORK_SCRIPT = textwrap.dedent("""
    import multiprocessing, numpy as np, krypton
    a = np.arange(300 * 200, dtype=np.float32).reshape(300, 200) / 1e4
    b = np.ones((200, 250), np.float32)
    expected = krypton.matmul(a, b, kernel="parallel", threads=2)  # the OpenMP team now exists

    def child(queue):
        c = krypton.matmul(a, b, kernel="parallel", threads=2)
        queue.put(bool(np.array_equal(c, expected)))

    context = multiprocessing.get_context("fork")  # Linux's default in Python < 3.14
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    process.join(60)
    if process.is_alive():
        process.kill()
        print("the forked child hung")
    else:
        print("exit", process.exitcode, "equal", queue.get(timeout=10))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_process_forked_after_the_parallel_rung_ran_can_still_multiply():
    # GCC's OpenMP threads do not survive fork(); before the fix, the child's first parallel
    # region waited for them forever.
    result = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "exit 0 equal True", result.stdout
