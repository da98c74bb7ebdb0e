"""Several backends in one run: the same model trained with each, taking turns (then PyTorch).

The backends take turns an epoch at a time: every one trains its first epoch, then every one its
second, and so on, the order of each round turned by one (A B C, then B C A, ...), as
``python -m krypton.bench`` interleaves its rounds. A slow stretch of a shared machine, which
can last seconds, then lands on an epoch of each rather than on every epoch of whichever backend
ran during it; each backend's epoch time is the median of its epochs. Never two at once, and
with a short pause before each turn: on a small machine the idle threads of OpenMP and OpenBLAS
spin for a while after their last call and would steal the cores from whoever runs next. With
several backends the naive rung trains only ``naive_batches`` batches per epoch and its epoch
time is extrapolated (marked ``*`` in the table), so the run takes minutes, not an hour.
"""

from __future__ import annotations

from typing import Any, Sequence

from krypton.data import Data
from krypton.timing import IDLE_SECONDS, settle_idle_threads
from krypton.train.history import History
from krypton.train.loop import Run, resolve_threads, train_epochs
from krypton.train.model import DEFAULT_SIZES, build_model
from krypton.train.twin import train_torch_epochs

NAIVE_BATCHES = 20
"""Batches per epoch the naive rung is timed on when every backend runs in turn."""
PAUSE_BETWEEN_BACKENDS = IDLE_SECONDS
"""Seconds to let the previous backend's spinning threads fall asleep."""


def train_backends(backends: Sequence[str], data: Data, *, sizes: Sequence[int] = DEFAULT_SIZES,
                   model: str = "mlp", compare_torch: bool = False, naive_batches: int | None = None,
                   pause: float = PAUSE_BETWEEN_BACKENDS, **options: Any) -> list[History]:
    """Train a fresh ``build_model(model, sizes, seed)`` with each backend (then PyTorch), the
    backends taking turns an epoch at a time (``take_turns``).

    Args:
        backends: Names from ``krypton.backends.BACKENDS``; the first round runs them in this
            order, each later round starts one further along.
        data: From ``krypton.data.load_data``.
        sizes: The MLP's layer widths (the CNN takes only the last, its classes).
        model: "mlp" or "cnn" (``krypton.train.model.MODELS``).
        compare_torch: Also train with PyTorch (last in the first round), from the same initial
            weights.
        naive_batches: If given, the naive rung runs only this many batches per epoch and its
            epoch time is extrapolated.
        pause: Seconds before each turn, for the previous one's idle threads to go to sleep.
        **options: ``train``'s keyword arguments (epochs, batch_size, lr, max_batches, ...).

    Returns:
        One ``History`` per backend, in the order of ``backends``. After an interrupt (Ctrl-C)
        every backend stops: the list holds those that had started, the interrupted one with
        ``interrupted`` true.
    """
    contenders = list(backends) + (["torch"] if compare_torch else [])
    runs: dict[str, Run] = {}
    for name in contenders:
        try:
            runs[name] = _run(name, data, sizes, model, naive_batches, options)
        except KeyboardInterrupt:  # while one was setting up (PyTorch's import takes seconds)
            interrupted = History(name, resolve_threads(name, options.get("threads")),
                                  data.dataset, {}, interrupted=True)
            return [interrupted]
    return list(take_turns(runs, pause).values())


def take_turns(runs: dict[str, Run], pause: float = PAUSE_BETWEEN_BACKENDS) -> dict[str, History]:
    """Train every run of ``runs`` an epoch at a time, in turns, until each has run its epochs.

    Round r runs them in the order of ``runs`` turned r places (A B C, then B C A, ...), and
    ``pause`` seconds pass before each turn (``krypton.timing.settle_idle_threads``). Returns
    each run's ``History`` by name, in the order of ``runs``. An interrupt (Ctrl-C) stops
    every run; the one it landed in, or the one whose turn was next, is marked interrupted, and
    the runs that had not started are left out.
    """
    names = list(runs)
    pending = set(names)
    this_round, first_turn = 0, True
    while pending:
        for place in range(len(names)):
            name = names[(this_round + place) % len(names)]
            if name not in pending:
                continue
            run = runs[name]
            try:
                if not first_turn and pause:
                    settle_idle_threads(pause)
                first_turn = False
                next(run)  # one epoch
                if run.done:
                    pending.discard(name)
            except KeyboardInterrupt:  # between two turns: the run is not left to finish
                run.history.interrupted = True
            if run.history.interrupted:
                return {name: runs[name].history for name in names
                        if runs[name].history.epochs or runs[name].history.interrupted}
        this_round += 1
    return {name: runs[name].history for name in names}


def _run(name: str, data: Data, sizes: Sequence[int], model: str, naive_batches: int | None,
         options: dict[str, Any]) -> Run:
    """One contender's run, not started (``train_epochs`` or ``train_torch_epochs``)."""
    run_options = dict(options)
    if name == "naive" and naive_batches is not None:
        limit = run_options.get("max_batches")
        run_options["max_batches"] = (naive_batches if limit is None
                                      else min(limit, naive_batches))
    network = build_model(model, sizes, options.get("seed", 0))
    if name == "torch":
        run_options.pop("fused", None)  # krypton's kernels: PyTorch has its own
        return train_torch_epochs(network, data, **run_options)
    return train_epochs(network, data, name, **run_options)
