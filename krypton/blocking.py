"""Block sizes from the caches, by the analytical model of Low et al. (ACM TOMS 2016).

"Analytical modeling is enough for high-performance BLIS" places each packed block of the
five loops (notebook 05) in the cache level that reuses it, and counts in cache *ways*, not
bytes: a set-associative cache of W ways, S sets and L-byte lines is W slices ("ways") of
S x L bytes each, and a block that takes whole ways cannot be evicted by data in the others.

- **kc (L1).** With jr outside ir, one kc x NR micro-panel of B is reused by every ir step,
  while the MR x kc micro-panels of A stream past it. One way is kept free for C's tile and
  the stream; B's micro-panel and A's, each rounded up to whole ways, share the other W1 - 1:
  ways(kc x NR) + ways(MR x kc) <= W1 - 1, and kc is the largest depth that satisfies it.
  (The paper solves this in closed form, ways_a = floor((W1 - 1) / (1 + NR / MR)) and
  kc = ways_a x S1 x L1 / (MR x element size), which makes A's panel fill its ways exactly;
  when (W1 - 1) / (1 + NR / MR) is not a whole number, the floor leaves ways unused, so the
  search here can only give a kc at least as deep.)
- **mc (L2).** The mc x kc block of A is reused by every jr step; B's micro-panel passes
  through L2 too. B's micro-panel gets the ways it needs, one way is kept free, and A's block
  fills the rest: mc = ways x S2 x L2 / (kc x element size), a multiple of MR. And at most
  ``MC_ROWS_MAX``: each jr step also walks down mc rows of C (the model leaves C out), and a
  large row-major C puts every row on a page of its own.
- **nc (L3).** The kc x nc block of B, likewise, in the L3 ways left after A's block and one
  free way: nc = ways x S3 x L3 / (kc x element size), a multiple of NR.
- **kc for a C larger than L2 (``KC_FAR``).** The model leaves C out, and C's MR x NR tile is
  loaded and stored once per kc block: K / kc times. While C fits in L2 those visits are cheap;
  a larger C comes back from L3 or memory each time, and then fewer, deeper kc blocks pay more
  than B's micro-panel kept in L1 does: ``kc_far`` is at least ``KC_FAR``.

Measure it: notebook 05 prints the derivation for your machine and sweeps kc around it;
``python -m krypton.autotune`` searches the blocks and its saved values override these.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from krypton import machine

KC_MULTIPLE = 8
"""kc is rounded down to a multiple of this: the micro-kernel's k loop is unrolled by 4, and 8
keeps every packed panel a whole number of 32-byte vectors."""
KC_RANGE = (64, 1024)
"""Clamps on kc: below 64, loading and storing C's tile costs more than the rank-1 updates
between; above 1024 the panels outgrow any L1 the model could be right about."""
MC_MAX = 4096
NC_MAX = 8192
"""Clamps on mc and nc: larger blocks only grow the packing buffers (L3 is shared, so its
share for one thread is an upper bound, not a promise)."""
KC_FAR = 512
"""The least kc for a product whose C is larger than L2 (see the module's docstring): its
tile then comes from L3 or memory once per kc block, and halving those visits is worth more
than B's micro-panel staying in L1 (where a deeper kc makes it outgrow L1 it streams from L2, as
the vector-wide panel of BLIS's Skylake-X sgemm kernel does: 384 x 32 floats per call). A
measured rule, not a derived one: RESULTS.md (2026-12-03, night) gives the machine, the tiles
and the sizes it was measured on. Measure yours: time ``kernel(a, b, kc=...)`` at 4096 and at 512
against the default, interleaved (``python -m krypton.bench --sizes 512 4096`` gives the
defaults)."""
MC_ROWS_MAX = 192
"""The most rows of C one jr step walks down, whatever L2 could hold: mc is capped here. The
micro-tiles of one jr step are MR rows apart in C, and once a row of C is a page long (1024
floats of a row-major C) each of the mc rows is a page of its own: the data TLB (64-96 pages
in the first level, 1.5-3 K in the second, on current x86 and Arm cores) and the hardware
prefetchers (a few dozen streams) lose track of them as mc grows, and every micro-tile then
waits for its C. A 2 MiB L2 lets the model ask for mc = 1792 at kc = 256, so that C's rows
cost far more than the larger block of A saves. Measure it: ``python -m krypton.bench`` at
2048-4096 with ``mc=`` from 96 to 1792 (notebook 05's sweep), or the micro-kernel over one
A block with a large C; 192 is a multiple of every default MR (AVX2 6, AVX-512 and NEON 8,
scalar 4) and of the other common heights 12 and 16."""


@dataclass(frozen=True)
class Cache:
    """One cache level: size in bytes, ways of associativity, line size in bytes."""

    size: int
    ways: int
    line: int = 64

    def __post_init__(self) -> None:
        if self.size <= 0 or self.ways <= 0 or self.line <= 0:
            raise ValueError(f"cache size, ways and line must be positive, got {self}")
        if self.size < self.ways * self.line:
            raise ValueError(f"a cache of {self.size} bytes cannot have {self.ways} ways of "
                             f"{self.line}-byte lines")

    @property
    def way_bytes(self) -> int:
        """Bytes in one way: sets x line (whole lines, if the OS reports an odd size)."""
        return self.size // self.ways // self.line * self.line

    def share(self, sharers: int) -> Cache:
        """What one of ``sharers`` threads that run at once on this cache may count on: an equal
        part of its ways (the model gives blocks whole ways, and so do Low et al. for a cache
        shared by several cores), at least the 2 the model needs."""
        if sharers <= 1:
            return self
        ways = max(2, self.ways // sharers)
        return Cache(ways * self.way_bytes, ways, self.line)


@dataclass(frozen=True)
class Blocks:
    """The derived block sizes, the paper's closed-form kc, the ways each block takes (l1_a:
    A's micro-panel in L1, and so on), and the reasoning as lines to print."""

    kc: int
    mc: int
    nc: int
    kc_paper: int
    kc_far: int  # kc for a product whose C is larger than L2
    ways: dict[str, int]
    reasoning: tuple[str, ...]


def _ways_for(nbytes: int, cache: Cache) -> int:
    return -(-nbytes // cache.way_bytes)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, int(value)))


def _l1_ways(kc: int, l1: Cache, mr: int, nr: int, element: int) -> int:
    return _ways_for(kc * nr * element, l1) + _ways_for(kc * mr * element, l1)


def deepest_kc(l1: Cache, mr: int, nr: int, element: int = 4, limit: int = KC_RANGE[1]) -> int:
    """The largest kc (a multiple of KC_MULTIPLE, at most ``limit``) for which B's kc x nr and
    A's mr x kc micro-panels, each rounded up to whole ways, leave one L1 way free; 0 if none."""
    return max((kc for kc in range(KC_MULTIPLE, limit + 1, KC_MULTIPLE)
                if _l1_ways(kc, l1, mr, nr, element) <= l1.ways - 1), default=0)


def _kc_closed_form(l1: Cache, mr: int, nr: int, element: int) -> int:
    """The paper's kc: A's micro-panel gets floor((W1 - 1) / (1 + NR / MR)) ways, exactly."""
    ways_a = max(1, (l1.ways - 1) * mr // (mr + nr))
    return ways_a * l1.way_bytes // (mr * element)


def derive(l1: Cache, l2: Cache, l3: Cache, mr: int, nr: int, element: int = 4) -> Blocks:
    """kc, mc, nc for an mr x nr micro-kernel on these caches (element size in bytes)."""
    if min(mr, nr, element) < 1:
        raise ValueError(f"mr, nr and element size must be positive, got {mr}, {nr}, {element}")
    if l1.ways < 2 or l2.ways < 2 or l3.ways < 2:
        raise ValueError("the model needs at least 2 ways per cache level (one is kept free)")
    kc_paper = _kc_closed_form(l1, mr, nr, element)
    kc_model = deepest_kc(l1, mr, nr, element)
    kc = _clamp(kc_model, *KC_RANGE)
    ways_a_l1 = _ways_for(kc * mr * element, l1)
    ways_b_l1 = _ways_for(kc * nr * element, l1)

    ways_b_l2 = _ways_for(kc * nr * element, l2)
    ways_a_l2 = max(1, l2.ways - 1 - ways_b_l2)
    mc_l2 = ways_a_l2 * l2.way_bytes // (kc * element) // mr * mr
    mc = _clamp(min(mc_l2, MC_ROWS_MAX // mr * mr), mr, MC_MAX // mr * mr)

    kc_far = _clamp(max(kc, KC_FAR), *KC_RANGE)

    ways_a_l3 = _ways_for(mc * kc * element, l3)
    ways_b_l3 = max(1, l3.ways - 1 - ways_a_l3)
    nc = _clamp(ways_b_l3 * l3.way_bytes // (kc * element) // nr * nr, nr, NC_MAX // nr * nr)

    kib = 1024
    reasoning = (
        f"L1: {l1.ways} ways of {l1.way_bytes // kib} KiB, one kept free: the largest kc "
        f"(a multiple of {KC_MULTIPLE}) with B's kc x {nr} and A's {mr} x kc micro-panels in "
        f"{l1.ways - 1} ways is {kc_model} -> kc = {kc}: B {ways_b_l1} way(s), A {ways_a_l1} "
        f"(the paper's closed form gives kc = {kc_paper})",
        f"L2: {l2.ways} ways of {l2.way_bytes // kib} KiB; B's micro-panel {ways_b_l2} way(s), "
        f"one free, A's mc x kc block {ways_a_l2} way(s) -> mc = {mc_l2}"
        + (f", at most {MC_ROWS_MAX} rows of C per jr step -> mc = {mc}" if mc != mc_l2 else "")
        + f" ({mc * kc * element // kib} KiB)",
        f"L3: {l3.ways} ways of {l3.way_bytes // kib} KiB; A's block {ways_a_l3} way(s), one "
        f"free, B's kc x nc block {ways_b_l3} way(s) -> nc = {nc} "
        f"({kc * nc * element // kib} KiB; nc is at most {NC_MAX})",
        f"C larger than L2 ({l2.size // element} floats): its tile comes from L3 or memory once "
        f"per kc block, so kc is at least {KC_FAR} -> kc_far = {kc_far}",
    )
    ways = {"l1_a": ways_a_l1, "l1_b": ways_b_l1, "l2_b": ways_b_l2, "l2_a": ways_a_l2,
            "l3_a": ways_a_l3, "l3_b": ways_b_l3}
    return Blocks(kc, mc, nc, kc_paper, kc_far, ways, reasoning)


DEFAULT_WAYS = {1: 8, 2: 8, 3: 16}
"""Associativity assumed where the OS does not report it (common for L1d and L2 today)."""


def for_this_machine(mr: int, nr: int, element: int = 4, threads: int = 1) -> Blocks:
    """``derive`` with this machine's caches and ways as the OS reports them, for each of
    ``threads`` threads: where threads run at once on one L1 or L2 (two hardware threads of a
    core, or the cores of a cluster that shares its L2: ``machine.cache_sharers``), each thread's
    blocks get its share of that cache's ways. L3 is left whole: every thread's B block is
    already sized to the L3 ways the others' A blocks leave, and ``NC_MAX`` bounds it."""
    sharers = tuple(machine.cache_sharers(level, threads) for level in (1, 2))
    return _for_caches(mr, nr, element, sharers)


@functools.lru_cache(maxsize=None)
def _for_caches(mr: int, nr: int, element: int, sharers: tuple[int, int]) -> Blocks:
    """``for_this_machine`` once per tile and sharing (a call with explicit knobs resolves the
    defaults again, and derive's search would cost more than a small product)."""
    sizes = machine.cache_sizes()
    levels = [Cache(size, machine.cache_ways(level) or DEFAULT_WAYS[level], sizes.line)
              for level, size in ((1, sizes.l1d), (2, sizes.l2), (3, sizes.l3))]
    l1, l2, l3 = levels[0].share(sharers[0]), levels[1].share(sharers[1]), levels[2]
    return derive(l1, l2, l3, mr=mr, nr=nr, element=element)
