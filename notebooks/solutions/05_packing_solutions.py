"""Solutions to the exercises of notebook 05 (packing). Try them yourself first.

Run with ``python notebooks/solutions/05_packing_solutions.py``: each solution is checked.
"""

import krypton
from krypton import exercises, machine
from krypton import notebook as nb


# Exercise 1. kc from L1: the deepest multiple of 8 whose B micro-panel (kc x NR) and A
# micro-panel (MR x kc), each rounded up to whole ways, leave one way free.
def kc_for_l1(l1_bytes, ways, line, mr, nr, element):
    way = l1_bytes // ways // line * line          # bytes in one way: sets x line

    def ways_for(nbytes):
        return -(-nbytes // way)                   # rounded up: a block takes whole ways

    fitting = [kc for kc in range(8, 1025, 8)
               if ways_for(kc * nr * element) + ways_for(kc * mr * element) <= ways - 1]
    return max(fitting, default=0)


# Exercise 2. Prefetch C or not: compile rung 5 without the prefetch of C and time both.
# (KR_PREFETCH_C is guarded by #ifndef in kr_microkernel.h, so a #define before the #include wins.)
PREFETCH_OFF_SOURCE = '#define KR_PREFETCH_C 0\n#include "packed.c"\n'


def prefetch_comparison(size=2048, repeats=3):
    packed = krypton.get_kernel("packed")
    no_prefetch = krypton.compile_source(PREFETCH_OFF_SOURCE, "kr_sgemm_packed", like="packed",
                                         name="packed_no_prefetch")
    return (nb.time_gflops(packed, size, repeats=repeats),
            nb.time_gflops(no_prefetch, size, repeats=repeats))


# Exercise 3. Overflow a cache on purpose: an A block twice L2 (mc = 2 * L2 / (kc * 4)),
# against the defaults. Expect the loss only where A's panels no longer come from L2.
def overflow_l2(size=1024, kc=256):
    mc = 2 * machine.cache_sizes().l2 // (kc * 4) // 8 * 8
    return {"defaults": nb.time_gflops("packed", size, repeats=3),
            f"mc = {mc}, kc = {kc}": nb.time_gflops("packed", size, repeats=3, mc=mc, kc=kc)}


if __name__ == "__main__":
    print(exercises.check_kc(kc_for_l1))
    print(exercises.check_prefetch_off(PREFETCH_OFF_SOURCE))
    print("with / without prefetch of C, GFLOPS:", prefetch_comparison(512))
    print("A block twice L2:", overflow_l2(512))
