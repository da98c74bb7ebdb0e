"""A small cache simulator: replay the memory accesses of a matmul and count the misses.

Hardware counters say *that* a kernel misses the cache; a simulator says *why*, and it runs
anywhere. This one models a set-associative cache with least-recently-used (LRU)
replacement, and a hierarchy of such caches (by default this machine's L1d and L2). It
replays the address trace a kernel of the ladder makes at a small size ``n``::

    from krypton import cachesim
    cachesim.simulate("naive", n=128, loop_order="ijk")["L1"]["misses"]
    cachesim.simulate("tiled", n=128, tile=(32, 64, 32))["L2"]["misses"]

How a cache works, in the terms used here: memory is cut into lines of ``line`` bytes (64 on
most CPUs). Line number ``address // line`` may live only in set ``line_number % sets`` of the
cache, which holds ``ways`` lines; a cache of ``size`` bytes has ``sets = size / (line *
ways)``. An access to a line held in its set is a hit; otherwise it is a miss, the line is
brought in, and if the set was full the line used least recently is evicted.

Simplifications (each keeps the model small; none changes which loop order or tiling wins):
    * Loads and stores are treated alike: a store that misses brings its line in
      (write-allocate, as x86 caches do); write-backs of dirty lines are not counted.
    * A level sees exactly the misses of the level above it. An eviction from L2 does not
      remove the line from L1 (a strictly inclusive L2 would); with an L2 many times larger
      than L1 that rarely matters.
    * No hardware prefetcher. Real CPUs detect streams (like ikj's walk along rows) and fetch
      lines before they are needed, which hides many of the misses counted here; they cannot
      do that for ijk's column walk through B.
    * One access per element operand. ``C[i][j] += ...`` is counted once (its store follows
      its load, to the same line, and always hits). What a compiler keeps in a register does
      not touch memory: in ijk the running sum of ``C[i][j]``, in ikj ``A[i][k]``.
    * A, B and C are row-major float32 arrays placed one after the other, each starting on a
      4096-byte page, as large NumPy arrays typically do.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from krypton import machine
from krypton.checks import positive_int

FLOAT_BYTES = 4
PAGE_BYTES = 4096
MATRICES = ("A", "B", "C")
LOOP_ORDERS = tuple("".join(p) for p in itertools.permutations("ijk"))
"""All six nestings of the three loops, outermost first: ijk, ikj, jik, jki, kij, kji."""

class Cache:
    """One set-associative cache with LRU replacement.

    Args:
        size: capacity in bytes.
        line: line size in bytes, a power of two.
        ways: lines per set (1 = direct-mapped; ``size // line`` = fully associative).
        name: a label for reports, e.g. "L1" (a ``Hierarchy`` names unnamed levels L1, L2, ...).

    The cache keeps its contents between calls, so a trace can be replayed in pieces.
    """

    def __init__(self, size: int, line: int = 64, ways: int = 8, name: str | None = None):
        for label, value in (("size", size), ("line", line), ("ways", ways)):
            positive_int(label, value)
        if line & (line - 1):
            raise ValueError(f"line must be a power of two (bytes), got {line}; e.g. 64")
        if size % (line * ways):
            raise ValueError(
                f"size {size} is not a whole number of sets: it must be divisible by "
                f"line x ways = {line} x {ways} = {line * ways} bytes")
        sets = size // (line * ways)
        if sets & (sets - 1):
            raise ValueError(
                f"size / (line x ways) = {sets} sets; the number of sets must be a power of "
                f"two (the set is picked by the low bits of the line number)")
        self.size, self.line, self.ways, self.name = int(size), int(line), int(ways), name
        self.sets = sets
        self.reset()

    def __repr__(self) -> str:
        label = f"{self.name}: " if self.name else ""
        return (f"Cache({label}{self.size} B, {self.line} B lines, {self.ways}-way, "
                f"{self.sets} sets)")

    def reset(self) -> None:
        """Empty the cache (every set holds no line)."""
        # One list per set, least recently used first, most recently used last.
        self._lru: list[list[int]] = [[] for _ in range(self.sets)]

    def contents(self, set_index: int) -> list[int]:
        """Line numbers held in one set, least recently used first."""
        return list(self._lru[set_index])

    def access(self, address: int) -> bool:
        """Touch one byte address; return True on a hit."""
        return bool(self.run(np.array([address], dtype=np.int64))[0])

    def run(self, addresses: np.ndarray) -> np.ndarray:
        """Replay byte addresses in order; return a boolean array, True where it hit.

        The sets of a cache never interact, so the trace is split by set and each set's
        accesses are replayed on their own (the results are put back in trace order). An
        access to the line its set saw last is a hit that changes nothing: those are
        counted without entering the Python loop, which is what makes this fast enough.
        """
        lines = np.asarray(addresses, dtype=np.int64) // self.line
        sets = lines & (self.sets - 1)
        order = np.argsort(sets, kind="stable")  # each set's accesses, still in trace order
        lines, sets = lines[order], sets[order]
        hit_sorted = np.zeros(len(lines), dtype=bool)
        hit_sorted[1:] = (lines[1:] == lines[:-1]) & (sets[1:] == sets[:-1])
        todo = np.flatnonzero(~hit_sorted)
        hits_found = []
        ways, lru = self.ways, self._lru
        for position, set_index, line in zip(todo.tolist(), sets[todo].tolist(),
                                             lines[todo].tolist()):
            resident = lru[set_index]
            if line in resident:
                hits_found.append(position)
                if resident[-1] != line:
                    resident.remove(line)
                    resident.append(line)
            else:
                resident.append(line)
                if len(resident) > ways:
                    del resident[0]  # evict the least recently used line
        hit_sorted[hits_found] = True
        hit = np.empty_like(hit_sorted)
        hit[order] = hit_sorted
        return hit


class Hierarchy:
    """Caches in series: each level sees the misses of the level above it.

    Args:
        levels: the caches, closest to the core first; default this machine's L1d and L2.
    """

    def __init__(self, levels: Sequence[Cache] | None = None):
        self.levels = list(levels) if levels is not None else default_levels()
        if not self.levels:
            raise ValueError("a hierarchy needs at least one cache level")
        self.names = [cache.name or f"L{number}" for number, cache in enumerate(self.levels, 1)]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"cache levels need different names, got {self.names}")

    def __repr__(self) -> str:
        return f"Hierarchy({', '.join(map(repr, self.levels))})"

    def reset(self) -> None:
        for cache in self.levels:
            cache.reset()

    def run(self, addresses: np.ndarray, matrix: np.ndarray | None = None) -> dict:
        """Replay a trace; return accesses, hits and misses per level.

        ``matrix`` (optional, same length, values 0/1/2 for A/B/C) adds each level's misses
        split by the matrix that caused them.
        """
        addresses = np.asarray(addresses, dtype=np.int64)
        if matrix is not None:
            matrix = np.asarray(matrix)
            if matrix.shape != addresses.shape:
                raise ValueError(f"matrix has shape {matrix.shape}, addresses {addresses.shape}: "
                                 f"give one matrix id (0, 1, 2 for A, B, C) per address")
        counts: dict = {"accesses": len(addresses)}
        for name, cache in zip(self.names, self.levels):
            hit = cache.run(addresses)
            level = {"accesses": len(addresses), "hits": int(hit.sum()),
                     "misses": int(len(hit) - hit.sum())}
            if matrix is not None:
                missed_by = np.bincount(matrix[~hit], minlength=len(MATRICES))
                level["misses_by_matrix"] = dict(zip(MATRICES, map(int, missed_by)))
                matrix = matrix[~hit]
            counts[name] = level
            addresses = addresses[~hit]
        return counts


def default_levels() -> list[Cache]:
    """This machine's L1d and L2 (sizes, line size and ways from ``krypton.machine``, which
    reads what the OS reports; about 8 ways where it does not say)."""
    caches = machine.cache_sizes()
    line = caches.line
    levels = []
    for name, size, level in (("L1", caches.l1d, 1), ("L2", caches.l2, 2)):
        ways = machine.cache_ways(level)
        sets = size // (line * ways) if ways else 0
        if not ways or size % (line * ways) or sets & (sets - 1):
            # Unknown: about 8 ways, with a power-of-two number of sets (48 KiB -> 12 ways).
            sets = 1 << max(0, (size // line // 8).bit_length() - 1)
            ways = size // line // sets
        levels.append(Cache(size, line, ways, name=name))
    return levels


# --- address traces ------------------------------------------------------------------------

def matrix_bases(n: int) -> dict[str, int]:
    """Byte address of A, B and C (n x n float32 each): one after the other, page-aligned."""
    span = -(-n * n * FLOAT_BYTES // PAGE_BYTES) * PAGE_BYTES
    return {"A": 0, "B": span, "C": 2 * span}


def naive_trace(n: int, loop_order: str = "ikj") -> tuple[np.ndarray, np.ndarray]:
    """The accesses of the triple loop ``C[i][j] += A[i][k] * B[k][j]`` in one loop order.

    The innermost loop runs over one index; the operand that does not depend on it stays in
    a register and touches memory once per middle iteration (before the inner loop for A or
    B, after it for C, as csrc/naive.c does). C starts at zero: ijk and jik write each C
    element once from a register sum; ikj zeroes row i of C before its k loop (like
    csrc/naive.c); the other orders zero all of C first.

    Returns:
        (addresses, matrix): int64 byte addresses in program order, and 0/1/2 (A/B/C) for
        each access.
    """
    loop_order = _check_loop_order(loop_order)
    _check_n(n)
    outer, middle, inner = loop_order
    # Index grids in loop order: grid[name][o, m, x] is that index's value at iteration (o, m, x).
    ranges = np.indices((n, n, n))
    grid = {outer: ranges[0], middle: ranges[1], inner: ranges[2]}
    i, j, k = grid["i"], grid["j"], grid["k"]
    bases = matrix_bases(n)
    address = {"A": bases["A"] + (i * n + k) * FLOAT_BYTES,
               "B": bases["B"] + (k * n + j) * FLOAT_BYTES,
               "C": bases["C"] + (i * n + j) * FLOAT_BYTES}
    held = {"k": "C", "j": "A", "i": "B"}[inner]  # the operand the inner index does not touch
    streamed = [name for name in MATRICES if name != held]  # accessed every inner iteration

    # One row per (outer, middle) iteration: [held before?] s0 s1 s0 s1 ... [held after?]
    body = np.empty((n, n, 2 * n + 1), dtype=np.int64)
    if held == "C":  # the sum lives in a register; C[i][j] is stored after the inner loop
        body[:, :, 0:2 * n:2] = address[streamed[0]]
        body[:, :, 1:2 * n:2] = address[streamed[1]]
        body[:, :, 2 * n] = address["C"][:, :, 0]
        which_row = [MATRICES.index(streamed[0]), MATRICES.index(streamed[1])] * n + [2]
    else:  # A[i][k] or B[k][j] is loaded into a register before the inner loop
        body[:, :, 0] = address[held][:, :, 0]
        body[:, :, 1::2] = address[streamed[0]]
        body[:, :, 2::2] = address[streamed[1]]
        which_row = [MATRICES.index(held)] + [MATRICES.index(streamed[0]),
                                              MATRICES.index(streamed[1])] * n
    body_matrix = np.broadcast_to(np.array(which_row), body.shape)

    c_rows = bases["C"] + np.arange(n * n, dtype=np.int64).reshape(n, n) * FLOAT_BYTES
    if held == "C":
        return body.ravel(), body_matrix.ravel().copy()
    if outer == "i":  # zero row i of C at the start of each i iteration (csrc/naive.c's ikj)
        addresses = np.concatenate([c_rows, body.reshape(n, -1)], axis=1)
        matrix = np.concatenate([np.full((n, n), 2), body_matrix.reshape(n, -1)], axis=1)
        return addresses.ravel(), matrix.ravel()
    addresses = np.concatenate([c_rows.ravel(), body.ravel()])
    matrix = np.concatenate([np.full(n * n, 2), body_matrix.ravel()])
    return addresses, matrix


def tiled_trace(n: int, tile_m: int, tile_n: int, tile_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The accesses of csrc/tiled.c: zero C, then tiles (i0, k0, j0) with ikj inside each.

    Inside a tile, for each (i, k): load A[i][k] into a register, then for each j read
    B[k][j] and update C[i][j]. Returns (addresses, matrix) as ``naive_trace`` does.
    """
    _check_n(n)
    for label, value in (("tile_m", tile_m), ("tile_n", tile_n), ("tile_k", tile_k)):
        positive_int(label, value)
    bases = matrix_bases(n)
    pieces = [bases["C"] + np.arange(n * n, dtype=np.int64) * FLOAT_BYTES]
    matrices = [np.full(n * n, 2)]
    for i0 in range(0, n, tile_m):               # rows of C, a tile at a time
        i = np.arange(i0, min(i0 + tile_m, n))[:, None, None]
        for k0 in range(0, n, tile_k):           # depth: one slice of A and B
            k = np.arange(k0, min(k0 + tile_k, n))[None, :, None]
            for j0 in range(0, n, tile_n):       # columns: the B tile reused by every row i
                j = np.arange(j0, min(j0 + tile_n, n))[None, None, :]
                rows, depth, cols = i.shape[0], k.shape[1], j.shape[2]
                tile = np.empty((rows, depth, 1 + 2 * cols), dtype=np.int64)
                tile[:, :, 0] = bases["A"] + (i[:, :, 0] * n + k[:, :, 0]) * FLOAT_BYTES
                tile[:, :, 1::2] = bases["B"] + (k * n + j) * FLOAT_BYTES
                tile[:, :, 2::2] = bases["C"] + (i * n + j) * FLOAT_BYTES
                pieces.append(tile.ravel())
                matrices.append(np.tile(np.array([0] + [1, 2] * cols), rows * depth))
    return np.concatenate(pieces), np.concatenate(matrices)


def _check_n(n: int) -> None:
    positive_int("n", n)
    if n > 512:
        raise ValueError(f"n={n} makes a trace of about {2 * n**3:.1e} accesses; the simulator "
                         f"is meant for small sizes (n <= 512, seconds at n <= 128)")


def _check_loop_order(loop_order: str) -> str:
    if loop_order not in LOOP_ORDERS:
        raise ValueError(f"loop_order must be one of {', '.join(LOOP_ORDERS)}, "
                         f"got {loop_order!r}")
    return loop_order


def _tile_sizes(tile: int | Sequence[int] | None) -> tuple[int, int, int]:
    if tile is None:
        raise ValueError("kernel='tiled' needs tile=(tile_m, tile_n, tile_k) or one int")
    if isinstance(tile, (int, np.integer)) and not isinstance(tile, bool):
        return int(tile), int(tile), int(tile)
    if len(tile) != 3:
        raise ValueError(f"tile must be (tile_m, tile_n, tile_k) or one int, got {tile!r}")
    return tuple(tile)


def simulate(kernel: str = "naive", n: int = 64, loop_order: str = "ikj",
             tile: int | Sequence[int] | None = None,
             levels: Sequence[Cache] | None = None) -> dict:
    """Replay an n x n x n matmul through a cache hierarchy and count what happened.

    Args:
        kernel: "naive" (the triple loop in ``loop_order``) or "tiled" (csrc/tiled.c).
        n: the matrix size (small: the trace has about 2 n^3 accesses).
        loop_order: for "naive", one of ``LOOP_ORDERS``.
        tile: for "tiled", (tile_m, tile_n, tile_k), or one int for all three.
        levels: the caches, L1 first; default this machine's L1d and L2 (fresh, empty).

    Returns:
        A dict: ``kernel``, ``n``, ``loop_order`` or ``tile``, ``accesses`` (all memory
        accesses), and per level name (e.g. ``"L1"``, ``"L2"``) a dict of ``accesses``,
        ``hits``, ``misses`` and ``misses_by_matrix`` ({"A": ..., "B": ..., "C": ...}).
    """
    if kernel == "naive":
        addresses, matrix = naive_trace(n, loop_order)
        described = {"kernel": kernel, "n": n, "loop_order": loop_order}
    elif kernel == "tiled":
        sizes = _tile_sizes(tile)
        addresses, matrix = tiled_trace(n, *sizes)
        described = {"kernel": kernel, "n": n,
                     "tile": dict(zip(("tile_m", "tile_n", "tile_k"), sizes))}
    else:
        raise ValueError(f"kernel must be 'naive' or 'tiled', got {kernel!r}")
    hierarchy = Hierarchy(levels)
    hierarchy.reset()
    return {**described, **hierarchy.run(addresses, matrix)}
