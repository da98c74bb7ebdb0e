"""The machine: the caches as the OS reports them (read once, for the kernels and cachesim
alike), and the roof probes' bounds (checked in a subprocess: OpenMP aborts on absurd counts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from krypton import cachesim, machine

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
    ("machine.bandwidth_gbs(threads=10**6, megabytes=1)", "threads must be at most 1024"),
])
def test_the_probes_refuse_thread_counts_before_entering_c(call, message):
    script = f"from krypton import machine\ntry:\n    {call}\nexcept ValueError as e:\n" \
             f"    print(e)\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert message in result.stdout
