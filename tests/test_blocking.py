"""The analytical block sizes (krypton.blocking): known cache configurations give the blocks the
model of Low et al. predicts, the rounding and clamps hold, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from krypton import blocking, kernels
from krypton.blocking import Cache, derive

KIB, MIB = 1024, 1024 * 1024
ZEN3 = (Cache(32 * KIB, 8), Cache(512 * KIB, 8), Cache(32 * MIB, 16))
SKYLAKE_X = (Cache(32 * KIB, 8), Cache(1 * MIB, 16), Cache(int(1.375 * MIB) * 8, 11))


def test_zen3_avx2_6x16_gives_the_models_blocks():
    # L1 way = 4 KiB, 7 ways to share: kc = 320 puts B's 20 KiB in 5 ways and A's 7.5 KiB in
    # 2; kc = 328 would need 6 + 2. The paper's closed form: floor(7 / (1 + 16/6)) = 1 way for
    # A -> kc = 4096 / 24 = 170. L2 way = 64 KiB: B 1 way, 1 free, A 6 -> mc = 307 -> 306,
    # then at most MC_ROWS_MAX = 192 rows of C per jr step.
    blocks = derive(*ZEN3, mr=6, nr=16)
    assert (blocks.kc, blocks.mc, blocks.kc_paper) == (320, 192, 170)
    assert "mc = 306, at most 192 rows of C" in blocks.reasoning[1]
    assert blocks.ways["l1_a"] == 2 and blocks.ways["l1_b"] == 5 and blocks.ways["l2_a"] == 6
    assert blocks.nc == blocking.NC_MAX                  # 14 L3 ways would hold far more


def test_mc_is_the_l2_fit_or_the_c_row_cap_whichever_is_smaller():
    small_l2 = (ZEN3[0], Cache(128 * KIB, 8), ZEN3[2])   # 16 KiB ways: B 2, A 5 -> mc = 60
    assert derive(*small_l2, mr=6, nr=16).mc == 60
    sapphire_rapids = (Cache(48 * KIB, 12), Cache(2 * MIB, 16), Cache(30 * MIB, 16))
    blocks = derive(*sapphire_rapids, mr=8, nr=32)
    assert (blocks.kc, blocks.mc) == (256, blocking.MC_ROWS_MAX)   # the L2 fit alone: 1792
    for mr in (6, 8, 12, 14):
        assert derive(*sapphire_rapids, mr=mr, nr=32).mc <= blocking.MC_ROWS_MAX


def test_b_micro_panel_and_a_micro_panel_fit_l1_with_one_way_free():
    for caches, (mr, nr) in ((ZEN3, (6, 16)), (SKYLAKE_X, (14, 32)), (ZEN3, (4, 8))):
        blocks = derive(*caches, mr=mr, nr=nr)
        l1 = caches[0]
        b_bytes, a_bytes = blocks.kc * nr * 4, blocks.kc * mr * 4
        used = -(-b_bytes // l1.way_bytes) + -(-a_bytes // l1.way_bytes)
        assert used <= l1.ways - 1 or blocks.kc == blocking.KC_RANGE[0]
        assert blocks.mc * blocks.kc * 4 <= caches[1].size


def test_kc_is_a_multiple_and_blocks_are_multiples_of_the_micro_tile():
    for mr, nr in ((6, 16), (5, 16), (8, 8), (14, 32), (3, 7)):
        blocks = derive(*ZEN3, mr=mr, nr=nr)
        assert blocks.kc % blocking.KC_MULTIPLE == 0
        assert blocks.mc % mr == 0 and blocks.nc % nr == 0


def test_the_search_is_never_shallower_than_the_closed_form():
    for caches, (mr, nr) in ((ZEN3, (6, 16)), (SKYLAKE_X, (14, 32)), (ZEN3, (8, 8)),
                             (ZEN3, (4, 24))):
        blocks = derive(*caches, mr=mr, nr=nr)
        assert blocks.kc >= min(blocks.kc_paper // blocking.KC_MULTIPLE * blocking.KC_MULTIPLE,
                                blocking.KC_RANGE[1])


def test_a_larger_l1_gives_a_deeper_kc_and_doubles_are_half_as_deep():
    small = derive(*ZEN3, mr=6, nr=16)
    big = derive(Cache(64 * KIB, 8), *ZEN3[1:], mr=6, nr=16)
    assert big.kc > small.kc
    assert derive(*ZEN3, mr=6, nr=16, element=8).kc < small.kc


def test_clamps_hold_for_tiny_and_huge_caches():
    tiny = derive(Cache(1 * KIB, 2), Cache(4 * KIB, 2), Cache(16 * KIB, 2), mr=6, nr=16)
    assert tiny.kc == blocking.KC_RANGE[0] and tiny.mc >= 6 and tiny.nc >= 16
    huge = derive(Cache(4 * MIB, 64), Cache(64 * MIB, 16), Cache(1024 * MIB, 16), mr=6, nr=16)
    assert huge.kc == blocking.KC_RANGE[1] and huge.mc <= blocking.MC_MAX
    assert huge.nc <= blocking.NC_MAX


@pytest.mark.parametrize("bad", [dict(mr=0, nr=16), dict(mr=6, nr=16, element=0)])
def test_bad_micro_tile_is_refused(bad):
    with pytest.raises(ValueError):
        derive(*ZEN3, **bad)


def test_bad_caches_are_refused():
    with pytest.raises(ValueError):
        Cache(0, 8)
    with pytest.raises(ValueError):
        derive(Cache(32 * KIB, 1), *ZEN3[1:], mr=6, nr=16)


def test_default_knobs_follow_the_model():
    knobs = kernels.default_knobs("packed", tuned=False)
    blocks = blocking.for_this_machine(knobs["mr"], knobs["nr"])
    assert (knobs["kc"], knobs["mc"], knobs["nc"]) == (blocks.kc, blocks.mc, blocks.nc)
    assert len(blocks.reasoning) == 4


def test_kc_far_is_the_models_kc_at_least_kc_far_within_the_clamps():
    for caches in (ZEN3, SKYLAKE_X, (Cache(48 * KIB, 12), Cache(2 * MIB, 16), Cache(32 * MIB, 16))):
        for mr, nr in ((8, 32), (6, 16), (4, 4)):
            blocks = derive(*caches, mr=mr, nr=nr)
            assert blocks.kc_far == min(max(blocks.kc, blocking.KC_FAR), blocking.KC_RANGE[1])
            assert blocks.kc_far >= blocks.kc


def test_a_c_larger_than_l2_takes_kc_far_by_default(monkeypatch):
    monkeypatch.setattr(kernels, "c_floats_in_l2", lambda: 1000)
    near = kernels.default_knobs("packed", tuned=False, c_shape=(10, 100))
    far = kernels.default_knobs("packed", tuned=False, c_shape=(10, 101))
    blocks = blocking.for_this_machine(near["mr"], near["nr"])
    assert (near["kc"], far["kc"]) == (blocks.kc, blocks.kc_far)
    assert {k: v for k, v in far.items() if k != "kc"} == {k: v for k, v in near.items()
                                                           if k != "kc"}
    assert kernels.default_knobs("packed", tuned=False)["kc"] == blocks.kc   # no shape: near


def test_a_kernels_default_call_uses_the_kc_of_its_side_of_l2(monkeypatch):
    monkeypatch.setattr(kernels, "c_floats_in_l2", lambda: 64 * 64)
    kernel = kernels.Kernel(kernels.SPECS["packed"], kernels.get_kernel("packed").module,
                            "kr_sgemm_packed", {})
    rng = np.random.default_rng(0)
    for m, n in ((64, 64), (64, 65)):
        a = rng.standard_normal((m, 700), dtype=np.float32)
        b = rng.standard_normal((700, n), dtype=np.float32)
        np.testing.assert_allclose(kernel(a, b), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    tile = kernels.default_knobs("packed")
    blocks = blocking.for_this_machine(tile["mr"], tile["nr"])
    used = {far: runtime["kc"] for (_, far), (runtime, _) in kernel._default_knobs.items()}
    assert used == {False: blocks.kc, True: blocks.kc_far}


def test_a_shared_cache_gives_each_thread_its_share_of_the_ways():
    l1 = Cache(48 * KIB, 12)
    assert l1.share(1) is l1
    half = l1.share(2)
    assert (half.ways, half.way_bytes, half.size) == (6, l1.way_bytes, 24 * KIB)
    assert Cache(32 * KIB, 8).share(8).ways == 2      # never fewer than the model's 2
    alone, shared = derive(*SKYLAKE_X, mr=8, nr=32), derive(
        SKYLAKE_X[0].share(2), SKYLAKE_X[1].share(2), SKYLAKE_X[2], mr=8, nr=32)
    assert shared.kc < alone.kc and shared.mc * shared.kc < alone.mc * alone.kc


def test_default_blocks_are_each_threads_share_of_the_caches_it_shares(monkeypatch):
    # Two threads on one core's L1 and L2 (hardware threads) get blocks for half of each;
    # threads with caches of their own get the whole machine's model.
    monkeypatch.setattr(blocking.machine, "cache_sharers", lambda level, threads: threads)
    one = kernels.default_knobs("small", tuned=False, threads=1)
    two = kernels.default_knobs("small", tuned=False, threads=2)
    assert one == kernels.default_knobs("small", tuned=False)
    assert two["kc"] < one["kc"] or two["mc"] < one["mc"]
    kernel = kernels.Kernel(kernels.SPECS["small"], kernels.get_kernel("small").module,
                            "kr_sgemm_small", {})
    rng = np.random.default_rng(0)
    a = rng.standard_normal((96, 700), dtype=np.float32)
    b = rng.standard_normal((700, 80), dtype=np.float32)
    for threads in (1, 2):
        np.testing.assert_allclose(kernel(a, b, threads=threads), a.astype(np.float64) @ b,
                                   rtol=1e-4, atol=1e-3)
    used = {count: (runtime["kc"], runtime["mc"])
            for (count, _), (runtime, _) in kernel._default_knobs.items()}
    assert used == {1: (one["kc"], one["mc"]), 2: (two["kc"], two["mc"])}
