"""Measuring matrix products: timing, GFLOPS, BLAS threads, and the one check against NumPy.

Every number the course prints is made here, the same way, whoever asks: the benchmark CLI
(``krypton.bench``), the ablation, the autotuner, build.py, the notebooks' plumbing
(``krypton.notebook``) and the training loop's stopwatches.

How a number is made: every contender (a rung, NumPy, PyTorch) gets the same operands; each is
called once to warm up (compile, page in, spin up threads), then the contenders are timed in
interleaved rounds (A, B, C, then C, A, B, ...: each round in its own shuffled order) so that
a burst of noise from a shared machine hits all of them alike, and no contender always follows
the same one. The median of the rounds is reported, and beside it the spread (the slowest and
the fastest round). Two contenders are compared round by round (``compare``): in each round
both ran, how many times faster one was than the other; the median of those ratios is the
comparison, and the middle half of them says whether it is decided. A slow stretch of a shared
machine that lasts a round slows both contenders of that round, so it moves their ratio far less
than either time. NumPy's BLAS runs with the same thread count as the kernel it is compared with
(threadpoolctl). GFLOPS = 2*M*N*K / time.

How a result is checked: against NumPy in float64, with a tolerance of ``1e-5 * sqrt(K)``
(float32 rounding errors of a K-term sum grow like sqrt(K)).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from krypton import machine
from krypton.checks import positive_int
from krypton.kernels import SPECS, aligned_empty, get_kernel

REFERENCES = ("numpy", "torch")
"""Contenders that are not rungs of the ladder."""

IDLE_SECONDS = 0.15
"""How long to wait for idle OpenMP / OpenBLAS threads, which spin a while after each call,
to go to sleep before timing something else on the same cores.

The rule: longer than the longest spin of any library in the race. OpenBLAS's workers spin
for 2^28 cycles (its THREAD_TIMEOUT, about 0.1 s at 3 GHz) before they sleep; libgomp's spin
for GOMP_SPINCOUNT (300,000 polls by default, a few milliseconds), both the kernels' libgomp
and PyTorch's own copy. Each contender is then timed in a block of back-to-back calls (its own
workers stay awake inside it, as they do in real use). Measured on a 2-core guest: without
the pause, the median block right after another library's block was slower than one right
after a block of its own; with it, the two agreed within the machine's noise. Spinning is not
switched off instead: OMP_WAIT_POLICY=passive makes every parallel region of the kernels pay
a wake-up."""

LONG_CALL_SECONDS = 1.0
"""A first call longer than this and than ``max_seconds`` is that contender's one sample: its
one-time costs (page faults on C, cold caches and branch predictors) are micro- to
milliseconds, so a second call would double the time spent and add no information."""

SPREAD_WARNING = 0.10
"""How wide a comparison may be and still say something: two contenders compared round by
round are undecided when the middle half of the rounds' ratios lies on both sides of 1 and
spans more than this share of the median; two with too few rounds in common, when their ranges
(fastest round to slowest) overlap and one spreads wider than this share of its median."""


def quick_mode() -> bool:
    """True when ``KRYPTON_QUICK=1``: smaller sizes and fewer repeats, same code paths."""
    return os.environ.get("KRYPTON_QUICK", "") not in ("", "0")


def gflops(m: int, n: int, k: int, seconds: float) -> float:
    """Billions of floating-point operations per second for an (M x K) @ (K x N) product."""
    return 2.0 * m * n * k / seconds / 1e9 if seconds > 0 else float("nan")


def check_fits_in_memory(m: int, n: int, k: int, what: str = "shape") -> None:
    """Raise ValueError now if A, B and C of an (M, N, K) product need more than half of this
    machine's memory, instead of a MemoryError after minutes of work."""
    for name, size in (("M", m), ("N", n), ("K", k)):
        positive_int(f"{what} {name}", size)
    needed = 4 * (m * k + k * n + m * n)
    memory = _physical_memory()
    if memory and needed > memory // 2:
        raise ValueError(f"{what} M={m} N={n} K={k} needs {needed / 2**30:.1f} GiB for A, B and "
                         f"C, more than half of this machine's {memory / 2**30:.1f} GiB: choose "
                         f"smaller sizes")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


@dataclass
class Measurement:
    """The timing of one contender on one shape with one thread count."""

    kernel: str
    m: int
    n: int
    k: int
    threads: int
    seconds: list[float] = field(default_factory=list)
    layout: str = "nn"   # how A and B lie in memory (LAYOUTS)
    rounds: list[int] = field(default_factory=list)
    """The round each of ``seconds`` was timed in (``measure_shape``; -1 for a first call kept
    as the one sample). Empty: sample i was timed in round i."""

    def round_seconds(self) -> dict[int, float]:
        """The seconds of each round this contender was timed in, by round."""
        rounds = self.rounds or range(len(self.seconds))
        return {r: t for r, t in zip(rounds, self.seconds) if r >= 0}

    @property
    def label(self) -> str:
        """The shape as the bench writes it: ``MxKxN``, and ``:layout`` unless both are plain."""
        return shape_label(self.m, self.n, self.k, self.layout)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def gflops(self) -> float:
        return gflops(self.m, self.n, self.k, self.median_seconds)

    @property
    def gflops_range(self) -> tuple[float, float]:
        """GFLOPS of the slowest and of the fastest round."""
        if not self.seconds:
            return float("nan"), float("nan")
        return (gflops(self.m, self.n, self.k, max(self.seconds)),
                gflops(self.m, self.n, self.k, min(self.seconds)))

    @property
    def spread(self) -> float:
        """(fastest - slowest GFLOPS) / median GFLOPS: 0 when every round agreed."""
        low, high = self.gflops_range
        return (high - low) / self.gflops if self.seconds else float("nan")

    def to_dict(self) -> dict[str, Any]:
        low, high = self.gflops_range
        return {**asdict(self), "median_seconds": self.median_seconds, "gflops": self.gflops,
                "gflops_min": low, "gflops_max": high, "spread": self.spread}


PAIRED_MIN_ROUNDS = 3
"""Rounds two contenders must share before their comparison is made round by round; with
fewer, ``too_noisy_to_compare`` falls back on their ranges (``ranges_too_noisy``)."""


@dataclass(frozen=True)
class Comparison:
    """How ``a`` compared with ``b`` in the rounds both were timed in (``compare``).

    ``ratio`` is the median over those rounds of b's seconds over a's (above 1: ``a`` was
    faster), ``low`` and ``high`` the quartiles of the same ratios (the middle half of the
    rounds), ``ahead`` the rounds in which ``a`` was faster, out of ``rounds``.
    """

    ratio: float
    low: float
    high: float
    ahead: int
    rounds: int

    def undecided(self, threshold: float = SPREAD_WARNING) -> bool:
        """The middle half of the rounds' ratios lies on both sides of 1 and spans more than
        ``threshold`` of the median: neither is faster in most rounds, yet they are not tied
        either. (A middle half on one side of 1 is a decided lead; a narrow one about 1, a
        decided tie.)"""
        return self.low <= 1.0 <= self.high and (self.high - self.low) / self.ratio > threshold


def compare(a: Measurement, b: Measurement) -> Comparison | None:
    """``a`` against ``b`` round by round (see ``Comparison``); None if they share fewer than
    ``PAIRED_MIN_ROUNDS`` rounds (a contender timed once, or measured apart)."""
    return compare_rounds(a.round_seconds(), b.round_seconds())


def compare_rounds(mine: dict[int, float], theirs: dict[int, float]) -> Comparison | None:
    """``compare`` for any two contenders' seconds by round (a training run's epochs, taken in
    turns, by epoch): the ratios are ``theirs[r] / mine[r]`` over the rounds both have."""
    shared = sorted(mine.keys() & theirs.keys())
    if len(shared) < PAIRED_MIN_ROUNDS:
        return None
    ratios = [theirs[r] / mine[r] for r in shared]
    low, median, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return Comparison(ratio=median, low=low, high=high,
                      ahead=sum(ratio > 1.0 for ratio in ratios), rounds=len(ratios))


def too_noisy_to_compare(a: Measurement, b: Measurement,
                         threshold: float = SPREAD_WARNING) -> bool:
    """Whether the comparison of ``a`` and ``b`` means little: round by round it is undecided
    (``Comparison.undecided``); where they share too few rounds for that, their GFLOPS ranges
    overlap and one of them spreads wider than ``threshold`` of its median (overlapping tight
    ranges are a real tie, and a tie is a meaningful ratio)."""
    return too_noisy(compare(a, b), a.gflops_range, a.gflops, b.gflops_range, b.gflops,
                     threshold)


def too_noisy(paired: Comparison | None, range_a: tuple[float, float], median_a: float,
              range_b: tuple[float, float], median_b: float,
              threshold: float = SPREAD_WARNING) -> bool:
    """The rule of ``too_noisy_to_compare`` for any two contenders, in any unit (GFLOPS of
    rounds, seconds of epochs): ``paired.undecided`` where they were compared round by round,
    else ``ranges_too_noisy`` on their (lowest, highest) values and medians."""
    if paired is not None:
        return paired.undecided(threshold)
    return ranges_too_noisy(range_a, median_a, range_b, median_b, threshold)


def ranges_too_noisy(range_a: tuple[float, float], median_a: float,
                     range_b: tuple[float, float], median_b: float,
                     threshold: float = SPREAD_WARNING) -> bool:
    """Whether two contenders' (lowest, highest) values overlap and one spreads wider than
    ``threshold`` of its median, in any unit: the rule for contenders that share too few rounds
    to be compared round by round."""
    (low_a, high_a), (low_b, high_b) = range_a, range_b
    overlap = low_a <= high_b and low_b <= high_a
    spread = max((high_a - low_a) / median_a, (high_b - low_b) / median_b)
    return overlap and spread > threshold


class Stopwatch:
    """Seconds accumulated across many short intervals (``with stopwatch: ...``)."""

    __slots__ = ("seconds", "calls", "_start")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.add(time.perf_counter() - self._start)

    def add(self, seconds: float) -> None:
        """Count one interval of ``seconds`` timed elsewhere."""
        self.seconds += seconds
        self.calls += 1


def torch_available() -> bool:
    """Whether PyTorch can be imported (it is an optional comparison, never a dependency)."""
    try:
        import torch  # noqa: F401  (optional: only its presence is asked)
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """Limit NumPy's BLAS to ``threads`` threads inside the block."""
    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def settle_idle_threads(seconds: float = IDLE_SECONDS) -> None:
    """Let the threads a library left spinning after its last call fall asleep."""
    time.sleep(seconds)


SHARED_CORE_GAP = 0.02
"""Seconds a thread spins between the two calls ``cold_calls`` compares."""

SHARED_CORE_RATIO = 3.0
"""How many times slower the call after the gap must be for ``cold_calls`` to say that
something else ran on the core. The rule: a spinning thread keeps its core busy and touches a
few cache lines, so on a core of its own the call finds its code and data where it left them
and should run about as fast as right after itself. A
core shared with another thread (a hyperthread of another virtual machine on a cloud host, a
process on the sibling) loses them to it within a millisecond. Check it on yours: run
``cold_calls(gap)`` for gaps of 0.1, 1 and 20 ms and see whether the ratio grows with the gap."""


@dataclass(frozen=True)
class ColdCalls:
    """What a pause does to a short call on this core (``cold_calls``): the median seconds of a
    4 KiB NumPy add right after itself (``hot``) and after ``gap`` seconds of spinning
    (``cold``)."""

    hot: float
    cold: float
    gap: float

    @property
    def ratio(self) -> float:
        return self.cold / self.hot

    @property
    def shared(self) -> bool:
        """True when the call after the gap ran ``SHARED_CORE_RATIO`` times slower or more."""
        return self.ratio >= SHARED_CORE_RATIO

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "shared": self.shared}

    def __str__(self) -> str:
        seen = (f"a 4 KiB add took {self.hot * 1e6:.1f} µs right after itself and "
                f"{self.cold * 1e6:.1f} µs after {self.gap * 1e3:g} ms of spinning "
                f"({self.ratio:.1f}x)")
        if self.shared:
            return (f"{seen}: something else ran on this core meanwhile and took over its "
                    "caches, so a short call costs more the longer since the last, and step "
                    "times vary from run to run; compare contenders within one run only")
        return f"{seen}: nothing else seems to run on this core"


def cold_calls(gap: float = SHARED_CORE_GAP, rounds: int = 25) -> ColdCalls:
    """Whether this thread has its core to itself: time a tiny call right after itself and
    after ``gap`` seconds of spinning (busy, not asleep: a sleeping core may lose its caches by
    design), ``rounds`` times each in turn (about ``rounds * gap`` seconds in all)."""
    positive_int("rounds", rounds)
    left, right, out = (np.ones(1024, np.float32) for _ in range(3))
    hot, cold = [], []
    np.add(left, right, out=out)
    for _ in range(rounds):
        start = time.perf_counter()
        np.add(left, right, out=out)
        hot.append(time.perf_counter() - start)
        end = time.perf_counter() + gap
        while time.perf_counter() < end:
            pass
        start = time.perf_counter()
        np.add(left, right, out=out)
        cold.append(time.perf_counter() - start)
    return ColdCalls(statistics.median(hot), statistics.median(cold), gap)


def median_seconds(call: Callable[[], Any], repeats: int) -> float:
    """Median time of ``repeats`` calls of ``call``, after one untimed call (the warm-up)."""
    repeats = positive_int("repeats", repeats)
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def contender(name: str, a: np.ndarray, b: np.ndarray, threads: int,
              **knobs: Any) -> Callable[[], Any]:
    """A no-argument function that computes ``a @ b`` with ``name`` ("numpy", "torch" or a rung)."""
    if name == "numpy":
        return lambda: np.matmul(a, b)
    if name == "torch":
        import torch  # optional dependency

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


def is_threaded(name: str) -> bool:
    """Whether contender ``name`` runs on more than one thread when asked to."""
    return name in REFERENCES or SPECS[name].threaded


LAYOUTS = ("nn", "nt", "tn", "tt")
"""How the operands of a product lie in memory, as BLAS's transa/transb say it: "n" a plain
row-major matrix, "t" the transposed view of one (``w.T``). A training step multiplies views:
a layer's forward is ``x @ W.T`` ("nt"), its weight gradient ``dY.T @ x`` ("tn"), its input
gradient ``dY @ W`` ("nn"); the kernels read each layout in place or pack it in its own way."""


def shape_label(m: int, n: int, k: int, layout: str = "nn") -> str:
    """``MxKxN``, with ``:layout`` unless both operands are plain (``128x784x256:nt``)."""
    return f"{m}x{k}x{n}" + ("" if layout == "nn" else f":{layout}")


def random_operands(m: int, n: int, k: int, seed: int = 0,
                    layout: str = "nn") -> tuple[np.ndarray, np.ndarray]:
    """A (M, K) and a (K, N) float32 matrix, uniform in [-1, 1), from ``seed``, each starting
    on a cache line (``kernels.aligned_empty``); with ``layout`` "t" for an operand it is the
    transposed view of such a matrix (``LAYOUTS``). Where NumPy puts an array depends on what
    was allocated and freed before it, and a kernel that reads rows in place with vector loads
    runs slower when every load straddles two lines: left to chance, the same product measured
    in two runs could differ by more than the kernels being compared. Measure: ``small`` on a
    128 x 256 @ 256 x 784 product, B from ``aligned_empty`` against B 16 bytes past a line."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    rng = np.random.default_rng(seed)

    def matrix(rows: int, cols: int, transposed: str) -> np.ndarray:
        stored = aligned_empty((cols, rows) if transposed == "t" else (rows, cols))
        stored[...] = rng.uniform(-1, 1, stored.shape)
        return stored.T if transposed == "t" else stored

    return matrix(m, k, layout[0]), matrix(k, n, layout[1])


def measure_shape(names: Sequence[str], m: int, n: int, k: int, threads: int, repeats: int,
                  max_seconds: float = 20.0, seed: int = 0,
                  knobs: dict[str, dict[str, Any]] | None = None,
                  min_block_seconds: float = 0.02, gap_seconds: float | None = None,
                  others: dict[str, Callable[[np.ndarray, np.ndarray], Any]] | None = None,
                  layout: str = "nn") -> list[Measurement]:
    """Time each contender on one (M, N, K) shape in interleaved rounds; return the timings.

    ``layout`` says how A and B lie in memory (``LAYOUTS``: "nt" multiplies by a transposed
    view of B, as a layer's forward ``x @ W.T`` does); every contender gets the same views.

    Each round gives every contender one block: after a pause (``gap_seconds``; by default
    0.15 s after a block that ran on several threads, so that library's idle threads, which
    spin for a while after each call, have gone to sleep and do not compete for the cores; a
    single-threaded block leaves no threads spinning, so none follows it; a ``gap_seconds``
    given explicitly comes before every block), one
    untimed call wakes its threads and caches, then calls are timed back to back for at least
    ``min_block_seconds``; the block's mean is one sample, and the median of the rounds is
    reported. Each sample keeps the round it was timed in (``Measurement.rounds``), so that two
    contenders can be compared round by round (``compare``). Contenders slower than
    ``max_seconds`` per round are timed fewer rounds (at least one), so the naive rung does not
    take minutes at large sizes; one whose first call alone takes longer than ``max_seconds``
    (and ``LONG_CALL_SECONDS``) keeps that call as its one sample.

    ``others`` adds contenders by label: functions of (a, b), such as a ``Kernel`` compiled
    with ``kernels.compile_source`` (they are timed as running on ``threads`` threads).
    The contenders take their turns in a different order each round, shuffled from ``seed``
    (which also makes the operands): noise that follows one library (a pool still spinning,
    a clock still ramping) does not always land on the same neighbour.
    """
    threads = machine.check_threads("threads", threads)
    repeats = positive_int("repeats", repeats)
    a, b = random_operands(m, n, k, seed, layout)
    knobs = knobs or {}
    gap_after_every_block = gap_seconds is not None
    if gap_seconds is None:
        gap_seconds = IDLE_SECONDS if threads > 1 else 0.0
    others = others or {}
    results = {name: Measurement(name, m, n, k, threads if is_threaded(name) else 1,
                                 layout=layout) for name in names}
    results.update({label: Measurement(label, m, n, k, threads, layout=layout)
                    for label in others})
    settle_idle_threads()  # threads left spinning by whatever ran before this call
    with blas_threads(threads):
        calls = {name: contender(name, a, b, threads, **knobs.get(name, {})) for name in names}
        calls.update({label: functools.partial(call, a, b) for label, call in others.items()})
        one_call = {}
        for name, call in calls.items():  # first call: compile, page in, learn the duration
            start = time.perf_counter()
            call()
            one_call[name] = max(time.perf_counter() - start, 1e-7)
        sampled_once = {name for name, seconds in one_call.items()
                        if seconds > max(max_seconds, LONG_CALL_SECONDS)}
        for name in sampled_once:
            results[name].seconds.append(one_call[name])
            results[name].rounds.append(-1)   # a first call, in no round
        order = random.Random(seed)
        previous_spun = True  # the first calls just ran, the threaded ones among them
        for round_index in range(repeats):
            names_in_round = list(calls)
            order.shuffle(names_in_round)
            for name in names_in_round:
                call = calls[name]
                if name in sampled_once or (round_index > 0
                                            and one_call[name] * (round_index + 1) > max_seconds):
                    continue
                if gap_seconds and (gap_after_every_block or previous_spun):
                    time.sleep(gap_seconds)
                previous_spun = results[name].threads > 1
                if one_call[name] < 1.0:
                    call()
                calls_in_block = max(1, int(min_block_seconds / one_call[name]))
                start = time.perf_counter()
                for _ in range(calls_in_block):
                    call()
                elapsed = time.perf_counter() - start
                results[name].seconds.append(elapsed / calls_in_block)
                results[name].rounds.append(round_index)
                one_call[name] = min(one_call[name], elapsed / calls_in_block)
    return list(results.values())


def tolerance(k: int) -> float:
    """How far a float32 product with K-term sums may be from the float64 one: 1e-5 sqrt(K)."""
    return 1e-5 * max(1, k) ** 0.5


CHECK_SHAPES = ((1, 1, 1), (7, 13, 5), (64, 64, 64), (97, 131, 61))
"""(M, N, K) shapes a check uses unless told: 1, primes, and one power of two."""


def check_against_numpy(product: Callable[[np.ndarray, np.ndarray], np.ndarray],
                        shapes: Iterable[tuple[int, int, int]] = CHECK_SHAPES, seed: int = 0,
                        transposed_b: bool = False) -> list[dict[str, Any]]:
    """Run ``product(a, b)`` on (M, N, K) shapes and compare with NumPy in float64.

    ``transposed_b`` hands B over as the transposed view of an (N, K) array, as the
    backward pass does. Returns one row per shape: the shape, the largest absolute error,
    the tolerance (``tolerance(K)``) and whether the product passed.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for m, n, k in shapes:
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        if transposed_b:
            b = rng.uniform(-1, 1, (n, k)).astype(np.float32).T
        else:
            b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        c = np.asarray(product(a, b))
        error = float(np.abs(c - a.astype(np.float64) @ b).max()) if c.size else 0.0
        rows.append({"shape": (m, n, k), "max_error": error, "tolerance": tolerance(k),
                     "ok": error <= tolerance(k)})
    return rows
