"""The benchmark command: GFLOPS of the kernel ladder, side by side with NumPy (and PyTorch).

    python -m krypton.bench                         # the ladder at 256..1024, 1 thread and all
    python -m krypton.bench --kernels packed parallel --sizes 1024 2048 --threads 1 2
    python -m krypton.bench --shapes 128x784x256 --vs numpy torch
    python -m krypton.bench --shapes 128x784x256:nt 256x128x784:tn   # x @ W.T, dY.T @ x
    python -m krypton.bench --help

This module is the command and its table: how each number is measured lives in
``krypton.timing`` (interleaved rounds, medians, NumPy's BLAS limited to the same thread count),
the figures in ``krypton.plotting``. The measuring names the notebooks use from here
(``measure_shape``, ``gflops``, ``blas_threads``, ``torch_available``, ``Measurement``) are
``krypton.timing``'s, re-exported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from tqdm.auto import tqdm

from krypton import machine, plotting, seam
from krypton.checks import positive_int
from krypton.files import atomic_write, check_writable
from krypton.kernels import KERNELS
from krypton.timing import (IDLE_SECONDS, LAYOUTS, REFERENCES, SPREAD_WARNING, Measurement,
                            ColdCalls, blas_threads, check_fits_in_memory, cold_calls, compare,
                            contender, gflops, is_threaded, measure_shape, quick_mode,
                            shape_label, too_noisy, torch_available)

__all__ = ["IDLE_SECONDS", "REFERENCES", "Measurement", "blas_threads", "check_output_dir",
           "contender", "format_table", "gflops", "main", "measure_shape", "measured_peaks",
           "parse_product", "parse_shape", "peaks", "quick_mode", "run", "save_results",
           "shape_label", "torch_available"]


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"1024"`` -> (1024, 1024, 1024); ``"128x784x256"`` (M x K x N) -> (128, 256, 784)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected N or MxKxN, e.g. 128x784x256")
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected N or MxKxN with sizes >= 1")
    m, k, n = values
    return m, n, k


def parse_product(text: str) -> tuple[int, int, int, str]:
    """A shape and how its operands lie: ``"128x784x256"`` -> (128, 256, 784, "nn"),
    ``"128x784x256:nt"`` -> (128, 256, 784, "nt"): B is a transposed view, as in ``x @ W.T``
    (``krypton.timing.LAYOUTS``: "n" a plain matrix, "t" the transpose of one, A then B)."""
    shape, colon, layout = text.lower().partition(":")
    if colon and layout not in LAYOUTS:
        raise argparse.ArgumentTypeError(
            f"shape {text!r}: the layout after ':' must be one of {', '.join(LAYOUTS)} (A then "
            f"B, n plain, t transposed), e.g. 128x784x256:nt for x @ W.T")
    return (*parse_shape(shape), layout or "nn")


def run(names: Sequence[str], shapes: Sequence[tuple[int, int, int]], threads_list: Sequence[int],
        repeats: int, progress: bool = True, max_seconds: float = 20.0,
        knobs: dict[str, dict[str, Any]] | None = None) -> list[Measurement]:
    """Measure every contender on every shape and thread count (single-threaded rungs once).
    A shape is (M, N, K), or (M, N, K, layout) for operands that are transposed views
    (``parse_product``)."""
    products = [(*shape, "nn")[:4] for shape in shapes]
    jobs = [(product, t) for t in threads_list for product in products]
    measurements: list[Measurement] = []
    done_single = set()
    bar = tqdm(jobs, desc="benchmark", unit="shape", disable=not progress, file=sys.stderr)
    for (m, n, k, layout), threads in bar:
        bar.set_postfix_str(f"{shape_label(m, n, k, layout)}, "
                            f"{threads} thread{'s' * (threads > 1)}")
        todo = [name for name in names
                if is_threaded(name) or (m, n, k, layout) not in done_single]
        measurements += measure_shape(todo, m, n, k, threads, repeats, max_seconds, knobs=knobs,
                                      layout=layout)
        done_single.add((m, n, k, layout))
    return measurements


def peaks(threads_list: Iterable[int]) -> dict[int, float]:
    """The measured FMA peak (GFLOPS) of this machine for each thread count."""
    return {t: p.gflops for t, p in measured_peaks(threads_list).items()}


def measured_peaks(threads_list: Iterable[int]) -> dict[int, machine.Peak]:
    """The measured FMA peak of this machine for each thread count, with its clock and pipes;
    a thread count the probe cannot run (a build without OpenMP runs one) is left out."""
    measured = {t: machine.peak(threads=t) for t in sorted(set(threads_list))}
    return {t: result for t, result in measured.items() if result.threads == t}


def format_table(measurements: Sequence[Measurement], peak: dict[int, float]) -> str:
    """A text table: GFLOPS (median, and the slowest-fastest range of the rounds), speed-up
    over naive, speed against NumPy compared round by round (``timing.compare``: the median
    ratio, and in how many of the rounds both ran this one was faster), % of the measured peak;
    then, for each shape, a warning line naming the pairs of a contender and a reference too
    noisy to compare (``timing.too_noisy_to_compare``), and why."""
    def find(name, config):
        for x in measurements:
            if x.kernel == name and (x.m, x.n, x.k, x.layout, x.threads) == config:
                return x
        return None

    header = (f"{'shape (MxKxN)':>16} {'threads':>7} {'kernel':>9} {'GFLOPS':>9} "
              f"{'min-max':>13} {'x naive':>9} {'% NumPy':>8} {'ahead':>6} {'% peak':>7}")
    lines = [header, "-" * len(header)]
    warnings = []
    order = {name: i for i, name in enumerate(KERNELS + REFERENCES)}
    configs = sorted({(x.m, x.n, x.k, x.layout, x.threads) for x in measurements},
                     key=lambda c: (c[4], c[0] * c[1] * c[2], c[3]))
    for config in configs:
        m, n, k, layout, threads = config
        label = shape_label(m, n, k, layout)
        naive = find("naive", (m, n, k, layout, 1))
        numpy_ = find("numpy", config)
        rows = [x for x in measurements if (x.m, x.n, x.k, x.layout, x.threads) == config]
        rows.sort(key=lambda r: order.get(r.kernel, 99))
        for x in rows:
            low, high = x.gflops_range
            spread = f"{low:.1f}-{high:.1f}"
            speedup = f"{x.gflops / naive.gflops:9.1f}" if naive else f"{'-':>9}"
            paired = compare(x, numpy_) if numpy_ and x is not numpy_ else None
            if paired is not None:   # round by round
                vs_numpy, ahead = f"{100 * paired.ratio:7.0f}%", f"{paired.ahead}/{paired.rounds}"
            else:                    # too few rounds in common: the ratio of the medians
                vs_numpy = f"{100 * x.gflops / numpy_.gflops:7.0f}%" if numpy_ else f"{'-':>8}"
                ahead = "-"
            of_peak = f"{100 * x.gflops / peak[x.threads]:6.0f}%" if x.threads in peak else ""
            lines.append(f"{label:>16} {x.threads:>7} {x.kernel:>9} {x.gflops:9.1f} "
                         f"{spread:>13} {speedup} {vs_numpy} {ahead:>6} {of_peak}")
        noisy = [reason for i, x in enumerate(rows) for y in rows[i + 1:]
                 if y.kernel in REFERENCES and (reason := _undecided(x, y))]
        if noisy:
            warnings.append(f"warning: {label} on {threads} thread{'s' * (threads > 1)}: "
                            f"{'; '.join(noisy)} (more --repeats, or a quieter machine)")
    one_thread = sorted({x.kernel for x in measurements
                         if x.threads > 1 and x.kernel in KERNELS and is_threaded(x.kernel)})
    if one_thread and not seam.openmp_flags():
        warnings.append(f"note: this build has no OpenMP, so {' and '.join(one_thread)} ran on one "
                        "thread in the rows of more threads (NumPy and PyTorch did not)")
    return "\n".join(lines + warnings)


def _undecided(x: Measurement, y: Measurement) -> str | None:
    """Why the comparison of x with y says little (``timing.too_noisy_to_compare``), in a few
    words; None where it says something."""
    paired = compare(x, y)
    if not too_noisy(paired, x.gflops_range, x.gflops, y.gflops_range, y.gflops):
        return None
    if paired is not None:
        return (f"{x.kernel}/{y.kernel} undecided (the middle half of its ratios, round by "
                f"round, is {paired.low:.2f}-{paired.high:.2f}: either side of 1, wider than "
                f"{SPREAD_WARNING:.0%})")
    return (f"{x.kernel}/{y.kernel} not meaningful (too few rounds in common, and their "
            f"ranges overlap and spread over {SPREAD_WARNING:.0%} of the median)")


def save_results(measurements: Sequence[Measurement], peak: dict[int, float],
                 out_dir: Path | str, plots: bool = True,
                 core: ColdCalls | None = None) -> dict[str, Path]:
    """Write results.json (numbers + the machine they came from, and ``core``: whether the
    core was shared, from ``timing.cold_calls``) and the PNG plots.

    Each file is written atomically (``krypton.files.atomic_write``): an interrupted save
    leaves the previous results as they were.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine.machine_info(),
        "peak_gflops": {str(t): g for t, g in peak.items()},
        "core": None if core is None else core.to_dict(),
        "measurements": [x.to_dict() for x in measurements],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    paths = {"json": out / "results.json"}
    with atomic_write(paths["json"], "w") as file:
        json.dump(document, file, indent=2)
    if plots:
        paths.update(plotting.save_benchmark_plots(measurements, peak, out))
    return paths


def check_output_dir(out: Path) -> None:
    """Refuse an --out that cannot take the results, before the benchmark runs."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory: give a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {str(out)!r}: cannot create the directory "
                         f"({error.strerror}): choose another path") from None
    check_writable(out / "results.json", "--out")


def main(argv: Sequence[str] | None = None) -> int:
    quick = quick_mode()
    parser = argparse.ArgumentParser(
        prog="python -m krypton.bench",
        description="GFLOPS of the kernel ladder beside NumPy (and PyTorch), medians of "
                    "interleaved repeats.")
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), metavar="NAME",
                        help=f"rungs to measure (default: all): {' '.join(KERNELS)}")
    parser.add_argument("--sizes", nargs="+", type=parse_shape, default=None, metavar="N",
                        help="square sizes (default: 256 512 1024; quick: 128 256)")
    parser.add_argument("--shapes", nargs="+", type=parse_product, default=[],
                        metavar="MxKxN[:LAYOUT]",
                        help="extra shapes, e.g. 32x144x25088 (the CNN's second convolution); "
                             "a layout after ':' makes A, B or both transposed views, as a "
                             "training step multiplies them: 128x784x256:nt is the MLP's "
                             "x @ W.T, 256x128x784:tn its dY.T @ x (default nn)")
    parser.add_argument("--threads", nargs="+", type=int, default=None, metavar="T",
                        help=f"thread counts (default: 1 and {machine.cpu_count()})")
    parser.add_argument("--vs", nargs="*", default=None, choices=REFERENCES,
                        help="references to compare with (default: numpy, and torch if installed)")
    parser.add_argument("--repeats", type=int, default=3 if quick else 7,
                        help="timed rounds per shape (median reported)")
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="directory for results.json and the plots (default: results/)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    unknown = [k for k in args.kernels if k not in KERNELS]
    if unknown:
        parser.error(f"unknown kernel(s) {unknown}; choose from {', '.join(KERNELS)}")
    sizes = args.sizes if args.sizes is not None else (
        [parse_shape(s) for s in (("128", "256") if quick else ("256", "512", "1024"))])
    shapes = list(dict.fromkeys([(*size, "nn") for size in sizes] + args.shapes))
    threads_list = args.threads or sorted({1, machine.cpu_count()})
    try:
        for threads in threads_list:
            machine.check_threads("--threads", threads)
        positive_int("--repeats", args.repeats)
        for m, n, k, _ in shapes:
            check_fits_in_memory(m, n, k)
        check_output_dir(args.out)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    references = args.vs if args.vs is not None else (
        ["numpy", "torch"] if torch_available() else ["numpy"])
    if "torch" in references and not torch_available():
        parser.error("--vs torch: PyTorch is not installed (pip install torch==2.13.0)")

    print(f"Machine: {machine.describe()}", flush=True)
    core = cold_calls()
    print(f"This core: {core}", flush=True)
    measured = measured_peaks(threads_list)
    for result in measured.values():
        print(f"Measured FMA {result}", flush=True)
    unmeasured = sorted(set(threads_list) - set(measured))
    if unmeasured:
        print(f"No peak for {', '.join(map(str, unmeasured))} threads: this build has no OpenMP "
              f"(the compiler {seam.compiler()[0]!r} has none), so the probe and the threaded "
              f"rungs run on one thread; those rows have no % peak. {seam.OPENMP_HINT}",
              flush=True)
    peak = {t: result.gflops for t, result in measured.items()}
    measurements = run(list(args.kernels) + references, shapes, threads_list, args.repeats,
                       progress=not args.no_progress)
    print(format_table(measurements, peak))
    paths = save_results(measurements, peak, args.out, plots=not args.no_plots, core=core)
    print("Saved " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
