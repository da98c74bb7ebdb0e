"""Solutions to the exercises of notebook 06 (threads). Try them yourself first.

Run with ``python notebooks/solutions/06_threading_solutions.py``: each solution is checked.
"""

import krypton
from krypton import exercises, kernels, machine
from krypton import notebook as nb


def min_flops_per_thread():
    """KR_MIN_FLOPS_PER_THREAD as compiled (rung 7 includes parallel.c and exports its limits)."""
    return kernels.small_thresholds()["min_flops_per_thread"]


# Exercise 1. The rule of kr_parallel_threads: fewer threads when the product has less than
# (threads - 1) x KR_MIN_FLOPS_PER_THREAD flops, one thread per KR_MIN_FLOPS_PER_THREAD
# (rounded down) plus one. (A build without OpenMP always runs one thread.)
def threads_for(m, n, k, threads):
    flops = 2.0 * m * n * k
    per_thread = min_flops_per_thread()
    if flops < (threads - 1) * per_thread:
        return int(flops / per_thread) + 1
    return threads


# Exercise 2. Always use every thread: KR_MIN_FLOPS_PER_THREAD 1 before the #include.
def eager_comparison(sizes=(32, 64, 128, 256), repeats=20):
    parallel = krypton.get_kernel("parallel")
    eager = krypton.compile_source('#define KR_MIN_FLOPS_PER_THREAD 1\n#include "parallel.c"\n',
                                   "kr_sgemm_parallel", like="parallel", name="parallel_eager",
                                   **parallel.code_knobs)
    cores = machine.cpu_count()
    return {s: (nb.time_gflops(parallel, s, threads=cores, repeats=repeats),
                nb.time_gflops(eager, s, threads=cores, repeats=repeats)) for s in sizes}


# Exercise 3. Split only columns: threads_m = 1 for every thread count, so B's panels are
# packed once (each by the thread of its columns), and each thread packs all of A's rows.
GRID_LINE = "const int64_t tm = prefer_columns ? i + 1 : threads - i;"


def columns_only_source():
    source = nb.c_source("parallel")
    assert GRID_LINE in source, "parallel.c changed: update GRID_LINE"
    return source.replace(GRID_LINE, "const int64_t tm = 1;")


def columns_only_comparison(shapes=((256, 784, 128), (4096, 96, 256)), repeats=3):
    """GFLOPS of the default grid and of columns only on (M, N, K) shapes, on every core."""
    parallel = krypton.get_kernel("parallel")
    columns = krypton.compile_source(columns_only_source(), "kr_sgemm_parallel", like="parallel",
                                     name="parallel_columns_only", **parallel.code_knobs)
    cores = machine.cpu_count()
    return {shape: (nb.time_gflops(parallel, shape, threads=cores, repeats=repeats),
                    nb.time_gflops(columns, shape, threads=cores, repeats=repeats))
            for shape in shapes}


if __name__ == "__main__":
    print(exercises.check_thread_count(threads_for))
    print("default rule / always all threads, GFLOPS:", eager_comparison((32, 64)))
    print(exercises.check_columns_only(columns_only_source()))
    print("default grid / columns only, GFLOPS:",
          columns_only_comparison())
