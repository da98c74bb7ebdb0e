"""Benchmarks: GFLOPS of the kernel ladder, side by side with NumPy (and PyTorch) in one run.

    python -m krypton.bench                         # the ladder at 256..1024, 1 thread and all
    python -m krypton.bench --kernels packed parallel --sizes 1024 2048 --threads 1 2
    python -m krypton.bench --shapes 128x784x256 --vs numpy torch
    python -m krypton.bench --help

How a number is made: every contender (a rung, NumPy, PyTorch) gets the same operands; each is
called once to warm up (compile, page in, spin up threads), then the contenders are timed in
interleaved rounds (A, B, C, A, B, C, ...) so that a burst of noise from a shared machine
hits all of them alike, and the median of the rounds is reported. NumPy's BLAS runs with the
same thread count as the kernel it is compared with (threadpoolctl). GFLOPS = 2*M*N*K / time.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from krypton import machine
from krypton.kernels import KERNELS, SPECS, get_kernel

REFERENCES = ("numpy", "torch")
"""Contenders that are not rungs of the ladder."""


def quick_mode() -> bool:
    """True when ``KRYPTON_QUICK=1``: smaller sizes and fewer repeats, same code paths."""
    return os.environ.get("KRYPTON_QUICK", "") not in ("", "0")


def gflops(m: int, n: int, k: int, seconds: float) -> float:
    """Billions of floating-point operations per second for an (M x K) @ (K x N) product."""
    return 2.0 * m * n * k / seconds / 1e9 if seconds > 0 else float("nan")


@dataclass
class Measurement:
    """The timing of one contender on one shape with one thread count."""

    kernel: str
    m: int
    n: int
    k: int
    threads: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def gflops(self) -> float:
        return gflops(self.m, self.n, self.k, self.median_seconds)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "median_seconds": self.median_seconds, "gflops": self.gflops}


def torch_available() -> bool:
    """Whether PyTorch can be imported (it is an optional comparison, never a dependency)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def blas_threads(threads: int):
    """Limit NumPy's BLAS (and OpenMP libraries) to ``threads`` threads inside the block."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def contender(name: str, a: np.ndarray, b: np.ndarray, threads: int,
              **knobs: Any) -> Callable[[], Any]:
    """A no-argument function that computes ``a @ b`` with ``name`` ("numpy", "torch" or a rung)."""
    if name == "numpy":
        return lambda: np.matmul(a, b)
    if name == "torch":
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)

        def run_torch():
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                return torch.mm(ta, tb)
            finally:
                torch.set_num_threads(previous)
        return run_torch
    spec = SPECS[name]
    code = {k: v for k, v in knobs.items() if k in spec.code_knobs}
    runtime = {k: v for k, v in knobs.items() if k in spec.runtime_knobs}
    kernel = get_kernel(name, **code)
    kernel_threads = threads if spec.threaded else 1
    return lambda: kernel(a, b, threads=kernel_threads, **runtime)


IDLE_SECONDS = 0.15
"""How long to wait for idle OpenMP / OpenBLAS threads, which spin a while after each call,
to go to sleep before timing something else on the same cores."""


def measure_shape(names: Sequence[str], m: int, n: int, k: int, threads: int, repeats: int,
                  max_seconds: float = 20.0, seed: int = 0,
                  knobs: dict[str, dict[str, Any]] | None = None,
                  min_block_seconds: float = 0.02, gap_seconds: float | None = None,
                  others: dict[str, Callable[[np.ndarray, np.ndarray], Any]] | None = None
                  ) -> list[Measurement]:
    """Time each contender on one (M, N, K) shape in interleaved rounds; return the timings.

    Each round gives every contender one block: after a pause (``gap_seconds``; by default
    0.15 s when several threads run, so the previous library's idle threads, which spin for
    a while after each call, have gone to sleep and do not compete for the cores), one
    untimed call wakes its threads and caches, then calls are timed back to back for at least
    ``min_block_seconds``; the block's mean is one sample, and the median of the rounds is
    reported. Contenders slower than ``max_seconds`` per round are timed fewer rounds (at
    least one), so the naive rung does not take minutes at large sizes.

    ``others`` adds contenders by label: functions of (a, b), such as a ``Kernel`` compiled
    with ``kernels.compile_source`` (they are timed as running on ``threads`` threads).
    """
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    knobs = knobs or {}
    if gap_seconds is None:
        gap_seconds = IDLE_SECONDS if threads > 1 else 0.0
    others = others or {}
    results = {name: Measurement(name, m, n, k, threads if _is_threaded(name) else 1)
               for name in names}
    results.update({label: Measurement(label, m, n, k, threads) for label in others})
    time.sleep(IDLE_SECONDS)  # threads left spinning by whatever ran before this call
    with blas_threads(threads):
        calls = {name: contender(name, a, b, threads, **knobs.get(name, {})) for name in names}
        calls.update({label: functools.partial(call, a, b) for label, call in others.items()})
        one_call = {}
        for name, call in calls.items():  # first call: compile, page in, learn the duration
            start = time.perf_counter()
            call()
            one_call[name] = max(time.perf_counter() - start, 1e-7)
        for round_index in range(repeats):
            for name, call in calls.items():
                if round_index > 0 and one_call[name] * (round_index + 1) > max_seconds:
                    continue
                if gap_seconds:
                    time.sleep(gap_seconds)
                if one_call[name] < 1.0:
                    call()
                calls_in_block = max(1, int(min_block_seconds / one_call[name]))
                start = time.perf_counter()
                for _ in range(calls_in_block):
                    call()
                elapsed = time.perf_counter() - start
                results[name].seconds.append(elapsed / calls_in_block)
                one_call[name] = min(one_call[name], elapsed / calls_in_block)
    return list(results.values())


def _is_threaded(name: str) -> bool:
    return name in REFERENCES or SPECS[name].threaded


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


def run(names: Sequence[str], shapes: Sequence[tuple[int, int, int]], threads_list: Sequence[int],
        repeats: int, progress: bool = True, max_seconds: float = 20.0,
        knobs: dict[str, dict[str, Any]] | None = None) -> list[Measurement]:
    """Measure every contender on every shape and thread count (single-threaded rungs once)."""
    from tqdm.auto import tqdm

    jobs = [(shape, t) for t in threads_list for shape in shapes]
    measurements: list[Measurement] = []
    done_single = set()
    bar = tqdm(jobs, desc="benchmark", unit="shape", disable=not progress, file=sys.stderr)
    for (m, n, k), threads in bar:
        bar.set_postfix_str(f"{m}x{k}x{n}, {threads} thread{'s' * (threads > 1)}")
        todo = [name for name in names if _is_threaded(name) or (m, n, k) not in done_single]
        measurements += measure_shape(todo, m, n, k, threads, repeats, max_seconds, knobs=knobs)
        done_single.add((m, n, k))
    return measurements


def peaks(threads_list: Iterable[int]) -> dict[int, float]:
    """The measured FMA peak (GFLOPS) of this machine for each thread count."""
    return {t: machine.peak_gflops(threads=t) for t in sorted(set(threads_list))}


def format_table(measurements: Sequence[Measurement], peak: dict[int, float]) -> str:
    """A text table: GFLOPS, speed-up over naive, % of NumPy and % of the measured peak."""
    def find(name, m, n, k, threads):
        for x in measurements:
            if (x.kernel, x.m, x.n, x.k) == (name, m, n, k) and (x.threads == threads):
                return x
        return None

    header = (f"{'shape (MxKxN)':>16} {'threads':>7} {'kernel':>9} {'GFLOPS':>9} "
              f"{'x naive':>9} {'% NumPy':>8} {'% peak':>7}")
    lines = [header, "-" * len(header)]
    order = {name: i for i, name in enumerate(KERNELS + REFERENCES)}
    configs = sorted({(x.m, x.n, x.k, x.threads) for x in measurements},
                     key=lambda c: (c[3], c[0] * c[1] * c[2]))
    for m, n, k, threads in configs:
        naive = find("naive", m, n, k, 1)
        numpy_ = find("numpy", m, n, k, threads)
        rows = [x for x in measurements if (x.m, x.n, x.k, x.threads) == (m, n, k, threads)]
        for x in sorted(rows, key=lambda r: order.get(r.kernel, 99)):
            speedup = f"{x.gflops / naive.gflops:9.1f}" if naive else f"{'-':>9}"
            vs_numpy = f"{100 * x.gflops / numpy_.gflops:7.0f}%" if numpy_ else f"{'-':>8}"
            of_peak = f"{100 * x.gflops / peak[x.threads]:6.0f}%" if x.threads in peak else ""
            lines.append(f"{f'{m}x{k}x{n}':>16} {x.threads:>7} {x.kernel:>9} {x.gflops:9.1f} "
                         f"{speedup} {vs_numpy} {of_peak}")
    return "\n".join(lines)


def save_results(measurements: Sequence[Measurement], peak: dict[int, float],
                 out_dir: Path | str, plots: bool = True) -> dict[str, Path]:
    """Write results.json (numbers + the machine they came from) and the PNG plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = machine.machine_info()
    document = {
        "machine": info,
        "peak_gflops": {str(t): g for t, g in peak.items()},
        "measurements": [x.to_dict() for x in measurements],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    paths = {"json": out / "results.json"}
    paths["json"].write_text(json.dumps(document, indent=2))
    if plots:
        from krypton import plotting

        paths.update(plotting.save_benchmark_plots(measurements, peak, out))
    return paths


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


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
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=[], metavar="MxKxN",
                        help="extra shapes, e.g. 128x784x256 (the MLP's first layer)")
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
    if args.threads and min(args.threads) < 1:
        parser.error("--threads must be positive")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    sizes = args.sizes if args.sizes is not None else (
        [parse_shape(s) for s in (("128", "256") if quick else ("256", "512", "1024"))])
    shapes = list(dict.fromkeys([*sizes, *args.shapes]))
    memory = _physical_memory()
    for m, n, k in shapes:
        needed = 4 * (m * k + k * n + m * n)
        if memory and needed > memory // 2:
            parser.error(f"shape M={m} N={n} K={k} needs {needed / 2**30:.1f} GiB for A, B and "
                         f"C, more than half of this machine's {memory / 2**30:.1f} GiB")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: exists and is not a directory; give a directory")
    threads_list = args.threads or sorted({1, machine.cpu_count()})
    references = args.vs if args.vs is not None else (
        ["numpy", "torch"] if torch_available() else ["numpy"])
    if "torch" in references and not torch_available():
        parser.error("--vs torch: PyTorch is not installed (pip install torch==2.13.0)")

    print(f"Machine: {machine.describe()}", flush=True)
    peak = peaks(threads_list)
    print("Measured FMA peak: " + ", ".join(f"{g:.0f} GFLOPS on {t} thread{'s' * (t > 1)}"
                                            for t, g in peak.items()), flush=True)
    measurements = run(list(args.kernels) + references, shapes, threads_list, args.repeats,
                       progress=not args.no_progress)
    print(format_table(measurements, peak))
    paths = save_results(measurements, peak, args.out, plots=not args.no_plots)
    print("Saved " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
