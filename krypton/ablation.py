"""What each small-matrix technique buys: rung 7 rebuilt one technique at a time, beside NumPy.

    python -m krypton.ablation                            # the MLP's shapes, one thread
    python -m krypton.ablation --threads 2                # the same on two threads
    python -m krypton.ablation --shapes 10x128x256 1024 --repeats 11
    python -m krypton.ablation --shapes 32x144x25088 16x9x100352   # the CNN's convolutions

The five loops of rungs 5 and 6 pay for packing before they compute. A large product earns that
back many times over; the small products of training (a batch of 128 rows, a layer of 10
outputs) may not. So rung 7 (csrc/small.c) plans each product: whether to pack each operand and
which kernel to run, and each decision is a macro that can turn it off. Compiling small.c with
the macros below gives the rung as it was before each technique, and timing the variants in
one run (interleaved, medians, beside NumPy, as ``krypton.bench`` does) shows what each one
bought:

    pack both       every operand packed, edge tiles on the full kernel: rung 6 (with C^T for
                    narrow C)
    + A in place    a block of C at most a few panels wide reads A where it is
    + edge kernels  a short last panel of rows joins the full panel above it in one taller
                    tile where the registers allow, other tiles of mr < MR rows run on kernels
                    of fewer rows, a last panel narrower than NR on one with just the vectors
                    that cover it
    + dot           C with fewer than NR/2 columns: dot products along k (kr_dot_rows)
    + B in place    a product of few rows reads B where it is, and takes dot products up to
                    KR_NARROW_DOT columns when B's columns are contiguous (nothing copied)
    + rows outside  a thread that owns whole rows of a block whose B stays in L2 runs the ir
                    loop outside the jr loop: A's micro-panel stays in L1 and C is written
                    along its rows (rung 7 as it is)

Each step keeps the ones above it. All variants compute the same product (the tests check every
one against NumPy); only the time differs.
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from krypton import bench, kernels, machine, timing


@dataclass(frozen=True)
class Step:
    """One variant of rung 7: a label, what it adds, and the macros that switch the rest off."""

    label: str
    adds: str
    macros: dict[str, int]

    def source(self) -> str:
        """C source: the macros, then the rung's own file."""
        defines = "".join(f"#define {name} {value}\n" for name, value in self.macros.items())
        return f'{defines}#include "small.c"\n'


_OFF = {"KR_A_IN_PLACE_PANELS": 0, "KR_EDGE_KERNELS": 0, "KR_NARROW_DOT": 0,
        "KR_B_IN_PLACE_TILES": 0, "KR_ROWS_OUTSIDE_FLOATS": 0}

STEPS: tuple[Step, ...] = (
    Step("pack both", "every operand packed, edge tiles on the full kernel", dict(_OFF)),
    Step("+A in place", "narrow blocks of C read A in place",
         {k: v for k, v in _OFF.items() if k != "KR_A_IN_PLACE_PANELS"}),
    Step("+edge kernels", "edge tiles on kernels of fewer or more rows, or fewer vectors",
         {"KR_NARROW_DOT": 0, "KR_B_IN_PLACE_TILES": 0, "KR_ROWS_OUTSIDE_FLOATS": 0}),
    Step("+dot", "narrow C by dot products along k",
         {"KR_B_IN_PLACE_TILES": 0, "KR_ROWS_OUTSIDE_FLOATS": 0}),
    Step("+B in place", "few-row products read B in place", {"KR_ROWS_OUTSIDE_FLOATS": 0}),
    Step("+rows outside", "ir outside jr where B's block stays in L2 (the rung as it is)", {}),
)
"""The variants, cumulative: each adds one technique to the one before."""

MLP_SHAPES = ((128, 256, 784, "nt"), (128, 10, 256, "nt"), (128, 256, 10, "nn"),
              (10, 256, 128, "tn"), (256, 784, 128, "tn"))
"""(M, N, K, layout) of the five products of one training step of a 784-256-10 MLP with batch
128, as krypton's Linear runs them (written M x K x N): the forward layers x @ W1.T
(128x784x256, B a transposed view: "nt") and h @ W2.T (128x256x10:nt); the backward dY2 @ W2
(128x10x256), the weight gradients dY2.T @ h (10x128x256, A a transposed view: "tn") and
dY1.T @ x (256x128x784:tn). The images need no gradient, so dY1 @ W1 never runs."""


def variant(step: Step, threads: int = 1, **code_knobs: Any) -> Any:
    """``step`` compiled (``code_knobs``: isa, mr, nr) and run on ``threads`` threads. Returns a
    function of (a, b)."""
    # One cached module per source: the seam names each by a hash of what it compiles.
    kernel = kernels.compile_source(step.source(), "kr_sgemm_small", like="small",
                                    name="ablation", exports=kernels.SPECS["small"].exports,
                                    **code_knobs)
    return functools.partial(kernel, threads=threads)


def measure(shapes: Sequence[tuple] = MLP_SHAPES, threads: int = 1,
            repeats: int = 7, steps: Sequence[Step] = STEPS,
            progress: bool = True) -> list[bench.Measurement]:
    """Time every step on every (M, N, K) or (M, N, K, layout) shape beside NumPy (same
    thread count); a layout makes operands transposed views (``bench.parse_product``)."""
    from tqdm.auto import tqdm

    variants = {step.label: variant(step, threads) for step in steps}
    measurements: list[bench.Measurement] = []
    for m, n, k, layout in tqdm([(*shape, "nn")[:4] for shape in shapes], desc="ablation",
                                unit="shape", disable=not progress, file=sys.stderr):
        measurements += bench.measure_shape(["numpy"], m, n, k, threads, repeats,
                                            others=variants, layout=layout)
    return measurements


def format_table(measurements: Sequence[bench.Measurement],
                 steps: Sequence[Step] = STEPS) -> str:
    """Rows: shapes. Columns: GFLOPS of each step, then NumPy; each step's ratio to NumPy."""
    labels = [step.label for step in steps] + ["numpy"]
    width = max(12, *(len(label) + 1 for label in labels))
    header = f"{'M x K x N':>16}" + "".join(f"{label:>{width}}" for label in labels)
    lines = [header, "-" * len(header)]
    shapes = list(dict.fromkeys((x.m, x.n, x.k, x.layout) for x in measurements))
    for shape in shapes:
        row = {x.kernel: x for x in measurements if (x.m, x.n, x.k, x.layout) == shape}
        reference = row.get("numpy")
        cells = []
        for label in labels:
            x = row.get(label)
            value = x.gflops if x else float("nan")
            ratio = ""
            if x and reference and label != "numpy":
                paired = timing.compare(x, reference)   # round by round, else the medians
                ratio = f" {paired.ratio if paired else value / reference.gflops:4.2f}x"
            cells.append(f"{f'{value:.1f}{ratio}':>{width}}")
        lines.append(f"{bench.shape_label(*shape):>16}" + "".join(cells))
    lines.append("GFLOPS, medians of interleaved repeats, and the ratio to NumPy, the median of "
                 "the rounds' ratios (timing.compare); :nt (:tn) marks a B (an A) that is a "
                 "transposed view.")
    return "\n".join(lines)


MAX_OPERAND_BYTES = 2**33
"""The most memory the three matrices of one shape may take (8 GiB): a shape larger than that
is refused before anything is compiled or allocated."""


def _shape_too_large(shape: tuple) -> str | None:
    m, n, k = shape[:3]
    needed = 4 * (m * k + k * n + m * n)
    if needed <= MAX_OPERAND_BYTES:
        return None
    return (f"shape {m}x{k}x{n} (M x K x N) needs {needed / 2**30:,.0f} GiB for A, B and C, "
            f"more than the {MAX_OPERAND_BYTES // 2**30} GiB this tool allows: choose smaller "
            "sizes, e.g. 128x784x256 or 2048")


def main(argv: Sequence[str] | None = None) -> int:
    quick = bench.quick_mode()
    parser = argparse.ArgumentParser(
        prog="python -m krypton.ablation",
        description="Rung 7's small-matrix techniques, added one at a time, timed beside "
                    "NumPy.")
    parser.add_argument("--shapes", nargs="+", type=bench.parse_product, default=None,
                        metavar="MxKxN[:LAYOUT]",
                        help="shapes (default: the five products of one MLP training step, "
                             "in their layouts), e.g. 128x256x10, 128x784x256:nt (B a "
                             "transposed view, as x @ W.T) or 512")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3 if quick else 7,
                        help="timed rounds per shape (median reported)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be positive")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    shapes = args.shapes or list(MLP_SHAPES)
    for shape in shapes:
        if (problem := _shape_too_large(shape)) is not None:
            parser.error(problem)
    print(f"Machine: {machine.describe()}", flush=True)
    print(f"Rung 7 on {args.threads} thread{'s' * (args.threads > 1)}; each column adds one "
          "technique to the one before:", flush=True)
    for step in STEPS:
        print(f"  {step.label:<14} {step.adds}")
    measurements = measure(shapes, args.threads, args.repeats, progress=not args.no_progress)
    print(format_table(measurements))
    return 0


if __name__ == "__main__":
    sys.exit(main())
