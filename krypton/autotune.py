"""Autotuning: search the block sizes and micro-tile of the top rungs on this machine.

    python -m krypton.autotune            # search, print what each step found, save the best
    python -m krypton.autotune --show     # print the saved tuning for this machine
    python -m krypton.autotune --reset    # forget it (back to the cache-size formulas)

The defaults of ``packed`` and ``parallel`` come from formulas over the cache sizes
(``krypton.kernels.default_knobs``). A formula is a good start, not the optimum: the best
sizes also depend on the cache's associativity, the TLB, the prefetchers and the clock. The
search is a coordinate descent: starting from the formula's values, it tries each compiled
micro-tile shape (MR x NR), then each kc, then mc, then nc, keeping the best of each before
moving to the next. The score is the geometric mean of single-thread GFLOPS over a few
shapes: a square one and the shapes of an MLP's training step, so the result serves both.

The winner is saved by ``krypton.tuning`` (``~/.config/krypton/tuning.json`` or
``$KRYPTON_CONFIG``, keyed by CPU, ISA and compiler) and becomes the default of ``packed`` and
``parallel`` on this machine only. This module is the search and its command; the file, its
validation and its cache live in ``krypton.tuning``.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Sequence

from tqdm.auto import tqdm

from krypton import machine, timing
from krypton.bench import parse_shape
from krypton.checks import positive_int
from krypton.kernels import default_knobs, forget_defaults, registers_needed
from krypton.tuning import load_tuned, machine_key, reset, save_tuned, tuning_path

__all__ = ["DEFAULT_SHAPES", "KC_CHOICES", "MC_CHOICES", "MICROTILES", "NC_CHOICES", "autotune",
           "load_tuned", "machine_key", "main", "reset", "save_tuned", "score", "tuning_path"]
"""``load_tuned``, ``save_tuned``, ``reset``, ``machine_key`` and ``tuning_path`` are
``krypton.tuning``'s (where the saved defaults live), re-exported for the command's users."""

# Micro-tile shapes worth trying per ISA; each fits the register file (see registers_needed).
MICROTILES = {
    "avx512": [(12, 32), (14, 32), (8, 48), (6, 64), (4, 64), (6, 32)],
    "avx2": [(6, 16), (4, 24), (3, 32), (8, 8)],
    "neon": [(8, 12), (4, 16), (12, 8)],
    "scalar": [(4, 2), (2, 4)],
}
KC_CHOICES = (128, 192, 256, 320, 384, 512)
MC_CHOICES = (96, 192, 288, 384, 576, 768, 960)
NC_CHOICES = (1024, 2048, 4096, 8192)
DEFAULT_SHAPES = ((1024, 1024, 1024), (128, 256, 784), (784, 256, 128), (128, 784, 256))
"""(M, N, K) shapes scored: square, and the MLP's forward and backward products."""


def score(knobs: dict[str, int], isa: str, shapes: Sequence[tuple[int, int, int]],
          repeats: int) -> float:
    """Geometric mean GFLOPS of ``packed`` (one thread) with ``knobs`` over ``shapes``."""
    results = []
    for m, n, k in shapes:
        measured = timing.measure_shape(["packed"], m, n, k, threads=1, repeats=repeats,
                                        knobs={"packed": dict(knobs, isa=isa)})
        results.append(measured[0].gflops)
    return math.exp(sum(math.log(g) for g in results) / len(results))


def autotune(isa: str | None = None, shapes: Sequence[tuple[int, int, int]] = DEFAULT_SHAPES,
             repeats: int = 3, microtiles: Sequence[tuple[int, int]] | None = None,
             kc_choices: Sequence[int] = KC_CHOICES, mc_choices: Sequence[int] = MC_CHOICES,
             nc_choices: Sequence[int] = NC_CHOICES, save: bool = True,
             progress: bool = True) -> dict[str, Any]:
    """Search mr/nr, kc, mc, nc in turn for the best single-thread speed; optionally save it.

    Returns a dict with the best ``knobs``, their ``score`` (GFLOPS, geometric mean), the
    ``baseline`` score of the formula defaults, and the ``steps`` tried.
    """
    repeats = positive_int("repeats", repeats)
    isa = isa or machine.native_isa()
    formula = default_knobs("packed", isa, tuned=False)
    best = {key: formula[key] for key in ("mr", "nr", "mc", "kc", "nc")}
    candidates = [t for t in (microtiles or MICROTILES[isa])
                  if registers_needed(*t, isa) <= machine.VECTOR_REGISTERS[isa]
                  and t[1] % machine.VECTOR_WIDTH[isa] == 0]
    plan = ([("microtile", t) for t in candidates] + [("kc", v) for v in kc_choices]
            + [("mc", v) for v in mc_choices] + [("nc", v) for v in nc_choices])
    bar = tqdm(total=len(plan) + 1, desc="autotune", disable=not progress, file=sys.stderr)
    baseline = best_score = score(best, isa, shapes, repeats)
    bar.update()
    steps = [{"knobs": dict(best), "gflops": baseline}]
    for name, value in plan:
        trial = dict(best)
        if name == "microtile":
            trial["mr"], trial["nr"] = value
        else:
            trial[name] = value
        if trial["mc"] % trial["mr"]:
            trial["mc"] = max(trial["mr"], trial["mc"] // trial["mr"] * trial["mr"])
        if trial != best:
            gflops = score(trial, isa, shapes, repeats)
            steps.append({"knobs": dict(trial), "gflops": gflops})
            if gflops > best_score:
                best, best_score = trial, gflops
        bar.set_postfix_str(f"best {best_score:.0f} GFLOPS")
        bar.update()
    bar.close()
    result = {"isa": isa, "knobs": best, "score": best_score, "baseline": baseline,
              "formula": {k: formula[k] for k in best}, "steps": steps}
    if save:
        result["path"] = str(save_tuned(isa, best, best_score))
        forget_defaults()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m krypton.autotune",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--isa", choices=list(machine.ISA_MACROS), default=None,
                        help="ISA to tune (default: this machine's widest)")
    parser.add_argument("--repeats", type=int, default=2 if timing.quick_mode() else 3,
                        help="timed rounds per shape and candidate (median kept)")
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=None,
                        metavar="MxKxN", help="shapes to score (default: 1024^3 and MLP shapes)")
    parser.add_argument("--dry-run", action="store_true", help="search but do not save")
    parser.add_argument("--show", action="store_true", help="print the saved tuning and exit")
    parser.add_argument("--reset", action="store_true", help="forget the saved tuning and exit")
    args = parser.parse_args(argv)
    try:
        positive_int("--repeats", args.repeats)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    isa = args.isa or machine.native_isa()
    if isa not in machine.available_isas():
        parser.error(f"--isa {isa} is not available here; choose from {machine.available_isas()}")
    if args.show:
        print(f"{tuning_path()}: {load_tuned(isa) or 'no tuning saved for this machine'}")
        return 0
    if args.reset:
        reset(isa)
        print(f"Forgot the tuning for {machine_key(isa)}")
        return 0
    shapes = args.shapes or ([(256, 256, 256), (128, 256, 784)] if timing.quick_mode()
                             else list(DEFAULT_SHAPES))
    print(f"Tuning packed/parallel for {machine.describe()} ({isa}), single thread, on "
          + ", ".join(f"{m}x{k}x{n}" for m, n, k in shapes), flush=True)
    result = autotune(isa, shapes, args.repeats, save=not args.dry_run)
    print(f"\n{'mr':>4} {'nr':>4} {'mc':>5} {'kc':>5} {'nc':>6} {'GFLOPS':>8}")
    for step in result["steps"]:
        k = step["knobs"]
        print(f"{k['mr']:>4} {k['nr']:>4} {k['mc']:>5} {k['kc']:>5} {k['nc']:>6} "
              f"{step['gflops']:8.1f}")
    print(f"\nFormula defaults: {result['formula']} -> {result['baseline']:.1f} GFLOPS")
    print(f"Best found:       {result['knobs']} -> {result['score']:.1f} GFLOPS "
          f"({100 * (result['score'] / result['baseline'] - 1):+.1f}%)")
    if "path" in result:
        print(f"Saved as this machine's defaults in {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
