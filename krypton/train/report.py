"""The report of a training run: the summary table and the JSON document of ``--json``."""

from __future__ import annotations

import time
from typing import Any, Sequence

from krypton import machine
from krypton.data import Data
from krypton.timing import SPREAD_WARNING, Comparison, compare_rounds, too_noisy
from krypton.train.history import History


def format_summary(histories: Sequence[History]) -> str:
    """The table at the end of a run: one row per backend, PyTorch beside them.

    Epoch time is the median over epochs, "min-max" the shortest and longest epoch;
    matmul/other split the median into the time inside the backend's matrix products and the
    rest (autograd bookkeeping, elementwise ops, loss, optimizer, data); "vs torch" is the epoch
    time over PyTorch's (below 1: faster), epoch by epoch where the runs share at least three
    (``timing.compare_rounds``: the runs take turns an epoch at a time, so epoch e of each ran
    in the same round; the median of the ratios), else the ratio of the medians; a warning under
    the table names the runs whose ratio is undecided (``Comparison.undecided``; with fewer
    epochs, whose epochs overlap PyTorch's and spread widely, ``timing.ranges_too_noisy``).
    """
    rows = [h for h in histories if h.epochs]
    if not rows:
        return "Nothing was measured." + "".join(
            f"\n{h.backend}: interrupted (Ctrl-C) before it finished a step"
            for h in histories if h.interrupted)
    torch_row = next((h for h in rows if h.backend == "torch"), None)
    header = (f"{'backend':>9} {'threads':>7} {'epoch time':>11} {'min-max':>11} "
              f"{'matmul':>8} {'other':>8} "
              f"{'matmul %':>8} {'train loss':>10} {'test acc':>9}"
              + (f" {'vs torch':>8}" if torch_row else ""))
    lines = [header, "-" * len(header)]
    for h in rows:
        mark = "*" if h.extrapolated else " "
        matmul = h.matmul_seconds
        other = None if matmul is None else h.epoch_seconds - matmul
        share = h.matmul_share
        accuracy = h.test_accuracy
        low, high = h.epoch_range
        span = f"{low:.2f}-{high:.2f} s" if len(h.epochs) > 1 else "-"
        line = (f"{h.backend:>9} {h.threads:>7} {h.epoch_seconds:9.2f} s{mark} {span:>11}"
                f"{_cell(matmul, '{:6.2f} s', 8)} {_cell(other, '{:6.2f} s', 8)}"
                f"{_cell(share, '{:7.0%}', 8)} {h.train_loss:>10.4f}"
                f"{_cell(accuracy, '{:8.2%}', 9)}")
        if torch_row:
            line += f" {ratio_to(h, torch_row):7.2f}x"
        lines.append(line)
    notes = []
    for h in rows:
        reason = _undecided(h, torch_row) if torch_row and h is not torch_row else None
        if reason:
            notes.append(f"warning: the ratio to PyTorch of {h.backend} is undecided: {reason} "
                         f"(more --epochs, or a quieter machine)")
    for h in rows:
        if h.extrapolated:
            shortest = min(e.batches for e in h.epochs)
            full = h.epochs[0].batches_per_epoch
            notes.append(f"* {h.backend}: timed on {shortest} of {full} batches per epoch, "
                         f"epoch time extrapolated; its loss and accuracy are after those "
                         f"batches only")
    for h in histories:
        if h.interrupted:
            notes.append(f"{h.backend}: interrupted (Ctrl-C)"
                         + ("; its last epoch is partial" if h.epochs
                            else " before it finished a step"))
    return "\n".join(lines + notes)


def ratio_to(history: History, reference: History) -> float:
    """``history``'s epoch time over ``reference``'s (below 1: faster): epoch by epoch where the
    two share at least three epochs (the median of the ratios, ``timing.compare_rounds``; runs
    that take turns ran their epoch e in the same round), else the ratio of the median epochs."""
    paired = _by_epoch(history, reference)
    return paired.ratio if paired else history.epoch_seconds / reference.epoch_seconds


def _by_epoch(history: History, reference: History) -> Comparison | None:
    return compare_rounds({e.epoch: e.seconds for e in reference.epochs},
                          {e.epoch: e.seconds for e in history.epochs})


def _undecided(history: History, reference: History) -> str | None:
    """Why ``ratio_to(history, reference)`` says little (``timing.too_noisy``); None where it
    says something, or where one epoch leaves no spread to judge by."""
    if len(history.epochs) < 2:
        return None
    paired = _by_epoch(history, reference)
    if not too_noisy(paired, history.epoch_range, history.epoch_seconds,
                     reference.epoch_range, reference.epoch_seconds):
        return None
    if paired is not None:
        return (f"epoch by epoch the middle half of its ratios is {paired.low:.2f}-"
                f"{paired.high:.2f}, either side of 1 and wider than {SPREAD_WARNING:.0%}")
    return (f"too few epochs to pair, and their times overlap PyTorch's and spread over "
            f"{SPREAD_WARNING:.0%} of the median")


def _cell(value: float | None, pattern: str, width: int) -> str:
    text = "-" if value is None else pattern.format(value)
    return " " + text.rjust(width)


def results_document(histories: Sequence[History], data: Data) -> dict[str, Any]:
    """The JSON the CLI writes with ``--json``: the machine, the dataset and every run."""
    return {
        "machine": machine.machine_info(),
        "dataset": data.dataset,
        "dataset_note": data.note,
        "runs": [h.to_dict() for h in histories],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
