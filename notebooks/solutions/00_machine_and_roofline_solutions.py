"""Reference solutions to notebook 00's exercises: read them after trying, not before.

Both exercises are measurements, so the notebook's own cells are their checkers: they print the
rate beside the peak and the FMAs the compiler kept per pass. Use from the notebook with
``solutions = importlib.import_module("solutions.00_machine_and_roofline_solutions")``.
"""

from __future__ import annotations

# Exercise 1: every chain starts from `one`. The line in kr_probe_loop that reads
#     acc[c] = kr_set1((float)(c + 1) * one);   /* distinct starts: distinct chains */
# becomes the line below. A compiler that proves the chains identical may compute one and
# copy it; then the loop has fewer FMAs than chains and the "GFLOPS" exceed the peak.
SAME_START_LINE = "        acc[c] = kr_set1(one);"


def same_start_source(peak_source: str) -> str:
    """probe_peak.c with every chain starting from the same value."""
    old = "acc[c] = kr_set1((float)(c + 1) * one);"
    if old not in peak_source:
        raise ValueError("probe_peak.c changed: find the line that sets acc[c] by hand")
    return peak_source.replace(old, "acc[c] = kr_set1(one);")


# Exercise 2: past the pragma's 32 the chain loop is not unrolled and acc[] lives in memory;
# raising the pragma unrolls it again, and with 32 registers (AVX-512, NEON) the rate comes
# back as long as the chains fit in registers. On AVX2 (16 registers) 24 chains are unrolled
# already: the drop there is spilling, which no pragma can fix.
def unrolled_source(peak_source: str, unroll: int = 64) -> str:
    """probe_peak.c with both unroll pragmas raised to ``unroll``."""
    return peak_source.replace("#pragma GCC unroll 32", f"#pragma GCC unroll {unroll}")
