"""The benchmark CLI and build.py: what they print and save (never how fast anything is)."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest

import krypton
from krypton import bench, timing
from krypton.bench import Measurement


def test_gflops_counts_two_flops_per_multiply_add():
    assert bench.gflops(1000, 1000, 1000, 2.0) == pytest.approx(1.0)
    assert bench.gflops(128, 10, 256, 1e-6) == pytest.approx(2 * 128 * 10 * 256 / 1e-6 / 1e9)


@pytest.mark.parametrize("text, shape", [("64", (64, 64, 64)), ("128x784x256", (128, 256, 784)),
                                         ("1X2X3", (1, 3, 2))])
def test_shapes_parse_as_m_by_k_by_n(text, shape):
    assert bench.parse_shape(text) == shape


@pytest.mark.parametrize("text", ["0", "12x", "axb", "1x2", "-4"])
def test_bad_shapes_are_rejected_with_the_expected_form(text):
    with pytest.raises(argparse.ArgumentTypeError, match="MxKxN"):
        bench.parse_shape(text)


@pytest.mark.parametrize("text, product", [("128x784x256", (128, 256, 784, "nn")),
                                           ("128x784x256:NT", (128, 256, 784, "nt")),
                                           ("9x100352x16:tn", (9, 16, 100352, "tn"))])
def test_a_shape_may_say_which_operands_are_transposed_views(text, product):
    assert bench.parse_product(text) == product


@pytest.mark.parametrize("text", ["128x784x256:", "128x784x256:nx", "128x784x256:t"])
def test_a_layout_other_than_nn_nt_tn_tt_is_refused_with_the_choices(text):
    with pytest.raises(argparse.ArgumentTypeError, match="nn, nt, tn, tt"):
        bench.parse_product(text)


@pytest.mark.parametrize("layout", ["nn", "nt", "tn", "tt"])
def test_operands_of_a_layout_are_views_of_the_same_shapes(layout):
    a, b = timing.random_operands(5, 7, 3, seed=1, layout=layout)
    assert a.shape == (5, 3) and b.shape == (3, 7) and a.dtype == b.dtype == np.float32
    assert a.flags.c_contiguous == (layout[0] == "n") and a.flags.f_contiguous == (layout[0] == "t")
    assert b.flags.c_contiguous == (layout[1] == "n") and b.flags.f_contiguous == (layout[1] == "t")


def test_each_layout_of_a_shape_is_measured_and_labelled_apart(capsys):
    shapes = [(16, 24, 8, "nn"), (16, 24, 8, "nt")]
    results = bench.run(["small", "numpy"], shapes, [1], repeats=1, progress=False)
    assert {(x.kernel, x.layout) for x in results} == {(k, l) for k in ("small", "numpy")
                                                       for l in ("nn", "nt")}
    table = bench.format_table(results, {})
    assert sum(" 16x8x24 " in line for line in table.splitlines()) == 2
    assert sum(" 16x8x24:nt " in line for line in table.splitlines()) == 2
    assert {x.to_dict()["layout"] for x in results} == {"nn", "nt"}


def test_table_reports_ratios_to_naive_numpy_and_peak():
    rows = [Measurement("naive", 100, 100, 100, 1, [1e-2]),
            Measurement("packed", 100, 100, 100, 1, [1e-4, 2e-4, 1e-4]),
            Measurement("numpy", 100, 100, 100, 1, [2e-4])]
    table = bench.format_table(rows, {1: 40.0})
    packed = next(line for line in table.splitlines() if " packed " in line).split()
    # packed: median 1e-4 s -> 20 GFLOPS (rounds 10-20); naive 0.2 GFLOPS; numpy 10; peak 40;
    # one round in common with NumPy, too few to compare round by round: the medians' ratio
    assert packed[-6:] == ["20.0", "10.0-20.0", "100.0", "200%", "-", "50%"]


def test_the_spread_is_the_slowest_and_fastest_round_beside_the_median():
    row = Measurement("packed", 100, 100, 100, 1, [2e-4, 1e-4, 4e-4])  # 10, 20, 5 GFLOPS
    assert row.gflops_range == pytest.approx((5.0, 20.0))
    assert row.spread == pytest.approx((20.0 - 5.0) / 10.0)
    saved = row.to_dict()
    assert (saved["gflops_min"], saved["gflops_max"]) == pytest.approx((5.0, 20.0))
    assert saved["gflops"] == pytest.approx(10.0) and saved["seconds"] == row.seconds


def _rows(packed_seconds, numpy_seconds):
    return [Measurement("packed", 100, 100, 100, 2, packed_seconds),
            Measurement("numpy", 100, 100, 100, 2, numpy_seconds)]


@pytest.mark.parametrize("packed, numpy_, warned", [
    ([1e-4, 1.5e-4, 2e-4], [1.2e-4, 1.3e-4, 1.6e-4], "undecided"),   # ratios 1.2, 0.87, 0.8
    ([1e-4, 2e-4], [1.2e-4, 1.6e-4], "not meaningful"),    # two rounds: wide, overlapping ranges
    ([1e-4, 1.01e-4, 1.02e-4], [1.01e-4, 1.02e-4], None),  # two rounds: a tight tie is a tie
    ([1e-4, 1.5e-4, 2e-4], [4e-4, 5e-4, 6e-4], None),      # wide but apart: 3-4x every round
])
def test_a_warning_names_contenders_too_noisy_to_compare(packed, numpy_, warned):
    rows = _rows(packed, numpy_)
    assert timing.too_noisy_to_compare(*rows) is (warned is not None)
    warnings = [line for line in bench.format_table(rows, {}).splitlines()
                if line.startswith("warning")]
    assert len(warnings) == int(warned is not None)
    if warned:
        assert f"packed/numpy {warned}" in warnings[0]


def test_a_slow_round_that_slows_both_leaves_their_comparison_decided():
    # Round 2 is twice as slow for both (a slow stretch of the host): each range spreads over
    # 100% and the two overlap, yet packed was 1.25x faster than NumPy in every round.
    packed, numpy_ = [1e-4, 2e-4, 1e-4, 1.04e-4], [1.25e-4, 2.5e-4, 1.25e-4, 1.3e-4]
    rows = _rows(packed, numpy_)
    assert timing.ranges_too_noisy(rows[0].gflops_range, rows[0].gflops, rows[1].gflops_range,
                                   rows[1].gflops)
    paired = timing.compare(*rows)
    assert (paired.rounds, paired.ahead) == (4, 4)
    assert paired.ratio == pytest.approx(1.25) and not paired.undecided()
    assert not timing.too_noisy_to_compare(*rows)
    table = bench.format_table(rows, {})
    assert not any(line.startswith("warning") for line in table.splitlines())
    line = next(line for line in table.splitlines() if " packed " in line).split()
    assert line[-2:] == ["125%", "4/4"]


@pytest.mark.parametrize("ratios, undecided", [
    ([1.3, 1.2, 1.25, 1.22, 1.28], False),       # ahead in every round
    ([0.99, 1.01, 1.0, 1.02, 0.98], False),      # a tie, and a narrow one: decided
    ([0.8, 1.2, 0.9, 1.15, 1.05], True),         # either way, by up to 20%: undecided
    ([0.7, 0.75, 0.72, 0.8, 0.71], False),       # behind in every round
])
def test_round_by_round_a_lead_or_a_tie_is_decided_and_a_wide_straddle_is_not(ratios,
                                                                              undecided):
    packed = [1e-4] * len(ratios)
    numpy_ = [1e-4 * ratio for ratio in ratios]   # numpy's time over packed's: the ratio
    paired = timing.compare(*_rows(packed, numpy_))
    assert paired.ratio == pytest.approx(sorted(ratios)[len(ratios) // 2])
    assert paired.ahead == sum(ratio > 1 for ratio in ratios)
    assert paired.low <= paired.ratio <= paired.high
    assert paired.undecided() is undecided
    warnings = [line for line in bench.format_table(_rows(packed, numpy_), {}).splitlines()
                if line.startswith("warning")]
    assert len(warnings) == int(undecided)
    if undecided:
        assert "packed/numpy undecided" in warnings[0] and f"{paired.low:.2f}" in warnings[0]


def test_only_the_rounds_both_ran_are_paired():
    # numpy was timed in rounds 0-3, packed in rounds 1-3 and once before any round (-1):
    # three rounds in common, compared round by round.
    packed = Measurement("packed", 100, 100, 100, 1, [5e-4, 1e-4, 1e-4, 1e-4],
                         rounds=[-1, 1, 2, 3])
    numpy_ = Measurement("numpy", 100, 100, 100, 1, [9e-4, 2e-4, 3e-4, 4e-4],
                         rounds=[0, 1, 2, 3])
    paired = timing.compare(packed, numpy_)
    assert paired.rounds == 3 and paired.ratio == pytest.approx(3.0)
    assert timing.compare(Measurement("naive", 100, 100, 100, 1, [1.0], rounds=[-1]),
                          numpy_) is None   # a contender timed once: no rounds to pair


def test_measure_shape_records_the_round_of_every_sample():
    slow_calls = []

    def slow(a, b):
        slow_calls.append(1)
        time.sleep(0.02)

    rows = bench.measure_shape([], 4, 4, 4, threads=1, repeats=5, max_seconds=0.05,
                               min_block_seconds=0.0, gap_seconds=0.0,
                               others={"fast": lambda a, b: None, "slow": slow})
    fast, slow_row = sorted(rows, key=lambda r: r.kernel)
    assert fast.rounds == [0, 1, 2, 3, 4]
    # the slow one stops once its rounds would pass max_seconds: its first rounds only
    assert slow_row.rounds == list(range(len(slow_row.seconds))) and len(slow_row.rounds) < 5
    assert fast.to_dict()["rounds"] == fast.rounds


def _rounds(seed, repeats=6, names=("a", "b", "c", "d")):
    """The order the contenders took their turns in, round by round (fake contenders that
    only log their calls: a first call each, then per turn an untimed call and a block of
    one)."""
    log = []
    bench.measure_shape([], 4, 4, 4, threads=1, repeats=repeats, seed=seed,
                        min_block_seconds=0.0, gap_seconds=0.0,
                        others={name: functools.partial(lambda name, a, b: log.append(name), name)
                                for name in names})
    turns = log[len(names)::2]
    return [tuple(turns[i:i + len(names)]) for i in range(0, len(turns), len(names))]


def test_every_round_shuffles_the_order_from_the_seed():
    rounds = _rounds(seed=1)
    assert len(rounds) == 6 and all(sorted(r) == ["a", "b", "c", "d"] for r in rounds)
    assert len(set(rounds)) > 1, "every round in the same order"
    assert _rounds(seed=1) == rounds and _rounds(seed=2) != rounds


def test_measure_shape_times_every_contender_in_every_round():
    results = bench.measure_shape(["packed", "numpy"], 32, 16, 8, threads=1, repeats=3,
                                  min_block_seconds=0.0)
    assert [r.kernel for r in results] == ["packed", "numpy"]
    assert all(len(r.seconds) == 3 and r.gflops > 0 for r in results)


def test_cli_prints_the_table_and_saves_json_and_plots(tmp_path, capsys):
    status = bench.main(["--kernels", "naive", "packed", "parallel", "--sizes", "24", "40",
                         "--shapes", "8x16x4", "--threads", "1", "2", "--vs", "numpy",
                         "--repeats", "2", "--out", str(tmp_path), "--no-progress"])
    assert status == 0
    out = capsys.readouterr().out
    assert "% NumPy" in out and "Measured FMA peak" in out and "8x16x4" in out
    assert "This core: a 4 KiB add took" in out
    document = json.loads((tmp_path / "results.json").read_text())
    core = document["core"]
    assert core["hot"] > 0 and core["cold"] > 0 and core["shared"] == (core["ratio"] >= 3)
    machine = document["machine"]
    for key in ("cpu", "isa", "caches", "cores", "compiler", "numpy", "blas"):
        assert machine[key] not in (None, "", [])
    kinds = {(m["kernel"], m["threads"]) for m in document["measurements"]}
    assert ("parallel", 2) in kinds and ("numpy", 2) in kinds and ("packed", 1) in kinds
    assert ("packed", 2) not in kinds  # single-threaded rungs are measured once
    assert (tmp_path / "ladder.png").stat().st_size > 10_000
    assert (tmp_path / "gflops_vs_size.png").stat().st_size > 10_000


@pytest.mark.parametrize("cold, shared", [(1.2e-6, False), (2.9e-6, False), (3e-6, True),
                                          (40e-6, True)])
def test_a_call_slowed_by_a_pause_is_read_as_a_shared_core(cold, shared):
    core = timing.ColdCalls(hot=1e-6, cold=cold, gap=0.02)
    assert core.ratio == pytest.approx(cold / 1e-6) and core.shared is shared
    text = str(core)
    assert "1.0 µs right after itself" in text and "after 20 ms of spinning" in text
    assert ("something else ran on this core" in text) is shared
    assert ("nothing else seems to run on this core" in text) is not shared


def test_cold_calls_times_both_calls_in_every_round(monkeypatch):
    ticks = iter(range(10**6))   # a clock that moves one second per reading
    monkeypatch.setattr(timing.time, "perf_counter", lambda: float(next(ticks)))
    core = timing.cold_calls(gap=0.5, rounds=3)
    # per round: hot start/end (2), the gap's end and one check (2), cold start/end (2)
    assert core == timing.ColdCalls(hot=1.0, cold=1.0, gap=0.5)
    with pytest.raises(ValueError, match="rounds must be a positive integer"):
        timing.cold_calls(rounds=0)


def test_cli_rejects_unknown_kernels():
    with pytest.raises(SystemExit):
        bench.main(["--kernels", "fastest", "--no-plots"])


def _load_build():
    spec = importlib.util.spec_from_file_location(
        "krypton_build", Path(__file__).resolve().parent.parent / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_checks_every_kernel_against_numpy(capsys):
    assert _load_build().check_all() is True
    out = capsys.readouterr().out
    assert out.count(" ok") == len(krypton.KERNELS) and "WRONG" not in out


def _run_bench(*args: str) -> subprocess.CompletedProcess:
    """The benchmark CLI in a subprocess: an abort inside a C library would show as a signal."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, "-m", "krypton.bench", "--no-progress", *args],
                          capture_output=True, text=True, cwd=root, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})


@pytest.mark.parametrize("args, message", [
    (["--threads", "2147483648"], "--threads must be at most 1024, got 2147483648"),
    (["--threads", "0"], "--threads must be a positive integer, got 0"),
    (["--repeats", "0"], "--repeats must be a positive integer, got 0"),
    (["--sizes", "100000000"], "more than half of this machine's"),
])
def test_out_of_range_numbers_are_refused_before_any_work(args, message):
    result = _run_bench("--kernels", "naive", "--sizes", "8", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Measured FMA peak" not in result.stdout


def test_an_output_that_cannot_be_written_is_refused_before_the_benchmark(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for out in (blocker, blocker / "results"):
        result = _run_bench("--kernels", "naive", "--sizes", "8", "--out", str(out))
        assert result.returncode == 2, result.stderr
        assert "--out" in result.stderr and "Measured FMA peak" not in result.stdout


def test_results_and_plots_are_written_atomically(tmp_path, monkeypatch):
    rows = [Measurement("naive", 8, 8, 8, 1, [1e-5]), Measurement("numpy", 8, 8, 8, 1, [1e-6]),
            Measurement("naive", 16, 16, 16, 1, [1e-4])]
    bench.save_results(rows, {1: 10.0}, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(before) == {"results.json", "ladder.png", "gflops_vs_size.png"}

    broken = rows + [Measurement(object(), 8, 8, 8, 1, [1e-5])]  # not JSON: dump fails midway
    with pytest.raises(TypeError):
        bench.save_results(broken, {1: 10.0}, tmp_path, plots=False)
    assert (tmp_path / "results.json").read_bytes() == before["results.json"]

    def half_a_picture(self, file, **kwargs):
        file.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_a_picture)
    with pytest.raises(KeyboardInterrupt):
        bench.save_results(rows, {1: 20.0}, tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after["ladder.png"] == before["ladder.png"]
    assert after["gflops_vs_size.png"] == before["gflops_vs_size.png"]
    assert set(after) == set(before)  # no partial files left behind


def test_the_one_numpy_check_passes_a_rung_and_catches_a_wrong_product():
    layouts = []

    def packed(a, b):
        layouts.append(b.flags.f_contiguous and not b.flags.c_contiguous or b.shape[1] == 1)
        return krypton.matmul(a, b, kernel="packed")

    rows = timing.check_against_numpy(packed, transposed_b=True)
    assert all(row["ok"] for row in rows) and all(layouts)
    assert [row["tolerance"] for row in rows] == [1e-5 * max(1, k) ** 0.5
                                                  for _, _, k in timing.CHECK_SHAPES]
    off = timing.check_against_numpy(lambda a, b: (a @ b) + 1e-3)
    assert not any(row["ok"] for row in off)



@pytest.mark.parametrize("names, others, gap, expected", [
    (["packed", "naive"], False, None, 1),   # one thread each: only the first block waits
    ([], True, None, 3),                     # a contender on two threads: every block waits
    (["packed", "naive"], False, 0.01, 6),   # an explicit gap comes before every block
])
def test_measure_shape_pauses_only_after_threaded_blocks(monkeypatch, names, others, gap,
                                                         expected):
    pauses = []
    monkeypatch.setattr(timing.time, "sleep", pauses.append)
    extra = {"two threads": lambda a, b: a @ b} if others else None
    bench.measure_shape(names, 16, 16, 16, threads=2, repeats=3, min_block_seconds=0.0,
                        gap_seconds=gap, others=extra)
    assert len(pauses) - 1 == expected, pauses   # the first pause settles what ran before


def test_a_first_call_longer_than_max_seconds_is_the_one_sample(monkeypatch):
    monkeypatch.setattr(timing, "LONG_CALL_SECONDS", 0.0)
    calls = []

    def slow(a, b):
        calls.append(1)
        timing.time.sleep(0.02)

    results = bench.measure_shape([], 4, 4, 4, threads=1, repeats=3, max_seconds=0.01,
                                  min_block_seconds=0.0, others={"slow": slow})
    assert len(calls) == 1 and len(results[0].seconds) == 1 and results[0].seconds[0] >= 0.02
    monkeypatch.setattr(timing, "LONG_CALL_SECONDS", 1.0)   # the floor: 0.02 s is not long
    calls.clear()
    bench.measure_shape([], 4, 4, 4, threads=1, repeats=3, max_seconds=0.01,
                        min_block_seconds=0.0, others={"slow": slow})
    assert len(calls) == 3                   # the first call, then round 0: a warm-up and a block


@pytest.mark.parametrize("openmp", [True, False])
def test_the_table_says_which_rows_ran_on_one_thread_without_openmp(monkeypatch, openmp):
    # Without OpenMP a threaded rung's "2 threads" row ran on one; the table must say so
    # (the header's "No peak" line says it too), and say nothing where OpenMP is there.
    from krypton import seam
    monkeypatch.setattr(seam, "openmp_flags", lambda: ("-fopenmp",) if openmp else ())
    rows = [Measurement("small", 64, 64, 64, 2, [1e-5]),
            Measurement("numpy", 64, 64, 64, 2, [1e-5]),
            Measurement("packed", 64, 64, 64, 1, [1e-5])]
    notes = [line for line in bench.format_table(rows, {}).splitlines() if "no OpenMP" in line]
    assert notes == ([] if openmp else
                     ["note: this build has no OpenMP, so small ran on one thread in the rows "
                      "of more threads (NumPy and PyTorch did not)"])


def test_the_ablation_gives_each_variant_its_ratio_to_numpy_round_by_round():
    from krypton import ablation
    label = ablation.STEPS[0].label
    # one slow round for both: the medians' ratio is 1.25, every round's too
    rows = [Measurement("numpy", 100, 100, 100, 1, [1.25e-4, 2.5e-4, 1.25e-4, 1.3e-4]),
            Measurement(label, 100, 100, 100, 1, [1e-4, 2e-4, 1e-4, 1.04e-4])]
    line = ablation.format_table(rows, ablation.STEPS[:1]).splitlines()[2]
    assert "1.25x" in line
