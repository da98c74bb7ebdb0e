"""The cache simulator: hand-checkable hits and misses, traces that match the C loops, and the
effects the notebooks teach with it (loop order, tiling) on small caches so the tests are fast."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from krypton import cachesim, machine
from krypton.cachesim import Cache, Hierarchy


def replay(cache: Cache, addresses) -> list[bool]:
    return cache.run(np.asarray(addresses, dtype=np.int64)).tolist()


def reference_lru(addresses, size, line, ways) -> list[bool]:
    """The textbook LRU, one access at a time in trace order, with no shortcuts."""
    sets = size // (line * ways)
    resident = [OrderedDict() for _ in range(sets)]
    hits = []
    for address in addresses:
        number = address // line
        lines = resident[number % sets]
        hits.append(number in lines)
        lines[number] = True
        lines.move_to_end(number)
        if len(lines) > ways:
            lines.popitem(last=False)
    return hits


def test_direct_mapped_lines_that_share_a_set_evict_each_other():
    cache = Cache(size=256, line=64, ways=1)  # 4 sets: addresses 0 and 256 both map to set 0
    assert replay(cache, [0, 256, 0, 256]) == [False, False, False, False]
    assert replay(cache, [64, 128, 64, 128]) == [False, False, True, True]  # sets 1 and 2


def test_lru_evicts_the_least_recently_used_line():
    cache = Cache(size=128, line=64, ways=2)  # one set of two lines
    # a, b, a, c: c evicts b (a was used more recently), so a hits and b misses afterwards
    assert replay(cache, [0, 64, 0, 128]) == [False, False, True, False]
    assert cache.contents(0) == [0, 2]  # line numbers, least recently used first
    assert replay(cache, [0, 64]) == [True, False]
    assert cache.contents(0) == [0, 1]


def test_streaming_read_of_k_lines_gives_k_compulsory_misses():
    cache = Cache(size=1024, line=64, ways=2)
    k = 40  # more lines than the cache holds: it does not matter for a single pass
    addresses = np.arange(k * 16) * 4  # every float of k consecutive lines
    hits = cache.run(addresses)
    assert (~hits).sum() == k
    assert np.flatnonzero(~hits).tolist() == list(range(0, k * 16, 16))  # the first float of each


def test_working_set_that_fits_misses_only_on_the_first_pass():
    cache = Cache(size=2048, line=64, ways=4)
    addresses = np.arange(0, 2048, 4)  # exactly the cache's capacity, every float once
    first, second = cache.run(addresses), cache.run(addresses)
    assert (~first).sum() == 2048 // 64
    assert second.all()


def test_one_line_too_many_in_a_cyclic_walk_makes_lru_miss_every_time():
    cache = Cache(size=256, line=64, ways=4)  # fully associative, 4 lines
    lines = [0, 64, 128, 192, 256]  # five lines, round and round: LRU always evicts the next
    assert not any(replay(cache, lines * 3))


def test_replay_matches_a_textbook_lru_on_random_traces():
    rng = np.random.default_rng(1)
    for size, line, ways in [(512, 32, 1), (1024, 64, 2), (2048, 64, 4), (4096, 128, 8)]:
        addresses = rng.integers(0, 16 * size, 3000) * rng.integers(1, 3, 3000)
        addresses[::7] = addresses[::7] // 64 * 64  # repeats of recent lines, too
        cache = Cache(size, line, ways)
        got = replay(cache, addresses[:1700]) + replay(cache, addresses[1700:])  # two pieces
        assert got == reference_lru(addresses.tolist(), size, line, ways)


def test_hierarchy_passes_only_misses_down_and_counts_them_per_matrix():
    l1, l2 = Cache(128, 64, 1), Cache(512, 64, 2)
    counts = Hierarchy([l1, l2]).run([0, 128, 0, 128, 132], matrix=[0, 1, 0, 1, 1])
    # L1 (2 sets, direct-mapped): lines 0 and 2 share set 0 and evict each other; the last
    # access is to the line just loaded, the only hit
    assert counts["L1"] == {"accesses": 5, "hits": 1, "misses": 4,
                            "misses_by_matrix": {"A": 2, "B": 2, "C": 0}}
    # L2 sees 0, 128, 0, 128 and holds both lines
    assert counts["L2"] == {"accesses": 4, "hits": 2, "misses": 2,
                            "misses_by_matrix": {"A": 1, "B": 1, "C": 0}}


@pytest.mark.parametrize("size, line, ways, message", [
    (1024, 48, 2, "power of two"),
    (1000, 64, 2, "divisible"),
    (64 * 3 * 2, 64, 2, "sets"),
    (0, 64, 1, "size must be a positive integer"),
    (1024, 64, 0, "ways must be a positive integer"),
])
def test_bad_cache_geometry_is_rejected_with_the_reason(size, line, ways, message):
    with pytest.raises(ValueError, match=message):
        Cache(size, line, ways)


def test_a_size_that_is_not_an_integer_is_a_type_error():
    with pytest.raises(TypeError, match="size must be a positive integer, got 1024.0"):
        Cache(1024.0, 64, 2)


def test_default_levels_are_this_machines_l1d_and_l2():
    l1, l2 = cachesim.default_levels()
    assert (l1.size, l2.size) == (machine.cache_sizes().l1d, machine.cache_sizes().l2)
    assert l1.line & (l1.line - 1) == 0


def loops_trace(n, order):
    """The naive kernel's accesses, written as the loops a C programmer would write."""
    a, b, c = (cachesim.matrix_bases(n)[x] for x in "ABC")
    trace = []
    access = {"A": lambda i, j, k: (a + 4 * (i * n + k), 0),
              "B": lambda i, j, k: (b + 4 * (k * n + j), 1),
              "C": lambda i, j, k: (c + 4 * (i * n + j), 2)}
    held = {"k": "C", "j": "A", "i": "B"}[order[2]]
    streamed = [x for x in "ABC" if x != held]
    if held != "C" and order[0] != "i":
        trace += [access["C"](i, j, 0) for i in range(n) for j in range(n)]
    for x in range(n):
        if held != "C" and order[0] == "i":
            trace += [access["C"](x, j, 0) for j in range(n)]
        for y in range(n):
            index = dict(zip(order, (x, y, 0)))
            if held != "C":
                trace.append(access[held](**index))
            for z in range(n):
                index = dict(zip(order, (x, y, z)))
                trace += [access[streamed[0]](**index), access[streamed[1]](**index)]
            if held == "C":
                trace.append(access["C"](**index))
    return trace


@pytest.mark.parametrize("order", cachesim.LOOP_ORDERS)
def test_naive_trace_walks_memory_as_the_loops_do(order):
    addresses, matrix = cachesim.naive_trace(5, order)
    assert list(zip(addresses.tolist(), matrix.tolist())) == loops_trace(5, order)


def test_tiled_trace_follows_csrc_tiled_c_including_edge_tiles():
    n, tile_m, tile_n, tile_k = 7, 3, 4, 2
    a, b, c = (cachesim.matrix_bases(n)[x] for x in "ABC")
    expected = [(c + 4 * x, 2) for x in range(n * n)]
    for i0 in range(0, n, tile_m):
        for k0 in range(0, n, tile_k):
            for j0 in range(0, n, tile_n):
                for i in range(i0, min(i0 + tile_m, n)):
                    for k in range(k0, min(k0 + tile_k, n)):
                        expected.append((a + 4 * (i * n + k), 0))
                        for j in range(j0, min(j0 + tile_n, n)):
                            expected += [(b + 4 * (k * n + j), 1), (c + 4 * (i * n + j), 2)]
    addresses, matrix = cachesim.tiled_trace(n, tile_m, tile_n, tile_k)
    assert list(zip(addresses.tolist(), matrix.tolist())) == expected


def test_matrices_start_on_separate_pages():
    bases = cachesim.matrix_bases(33)
    assert bases["A"] == 0 and bases["B"] % 4096 == 0 and bases["B"] >= 33 * 33 * 4
    assert bases["C"] - bases["B"] == bases["B"]


def test_ikj_misses_l1_less_than_ijk_when_a_column_of_b_does_not_fit():
    n = 48  # a column of B is 48 lines; this L1 holds 32
    l1 = lambda: [Cache(2048, 64, 4)]  # noqa: E731 - a fresh cache per run
    ijk = cachesim.simulate("naive", n, "ijk", levels=l1())["L1"]
    ikj = cachesim.simulate("naive", n, "ikj", levels=l1())["L1"]
    assert ijk["misses_by_matrix"]["B"] == n**3  # every step down the column misses
    assert ikj["misses_by_matrix"]["B"] == n * n * n // 16  # one miss per line per row i
    assert ikj["misses"] * 10 < ijk["misses"]


def test_tiling_cuts_l2_misses_when_b_outgrows_l2():
    n = 64  # each matrix is 16 KiB; this L2 holds 8 KiB
    levels = lambda: [Cache(1024, 64, 2), Cache(8192, 64, 4)]  # noqa: E731
    naive = cachesim.simulate("naive", n, "ikj", levels=levels())["L2"]
    tiled = cachesim.simulate("tiled", n, tile=(16, 32, 16), levels=levels())["L2"]
    assert naive["misses_by_matrix"]["B"] == n * n * n // 16  # all of B again for every row
    assert tiled["misses"] * 4 < naive["misses"]


def test_every_access_is_counted_once_at_l1():
    result = cachesim.simulate("naive", 8, "ikj", levels=[Cache(1024, 64, 2)])
    # 2 per multiply-add (B read, C update) + A once per (i, k) + zeroing C
    assert result["accesses"] == result["L1"]["accesses"] == 2 * 8**3 + 8**2 + 8**2
    assert result["L1"]["hits"] + result["L1"]["misses"] == result["accesses"]


@pytest.mark.parametrize("kwargs, message", [
    ({"kernel": "packed"}, "kernel must be"),
    ({"loop_order": "ijj"}, "loop_order must be one of"),
    ({"n": 0}, "n must be a positive integer"),
    ({"kernel": "tiled"}, "needs tile"),
    ({"kernel": "tiled", "tile": (8, 8)}, "tile must be"),
    ({"kernel": "tiled", "tile": (8, 0, 8)}, "tile_n must be a positive integer"),
])
def test_bad_simulation_requests_are_rejected_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cachesim.simulate(**{"n": 4, **kwargs})
