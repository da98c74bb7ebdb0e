"""Several backends in one run: the same model trained with each in turn (then PyTorch).

Backends run one after another, never interleaved, with a short pause between them: on a small
machine the idle threads of OpenMP and OpenBLAS spin for a while after their last call and would
steal the cores from whoever runs next. With several backends the naive rung trains only
``naive_batches`` batches per epoch and its epoch time is extrapolated (marked ``*`` in the
table), so the run takes minutes, not an hour.
"""

from __future__ import annotations

from typing import Any, Sequence

from krypton.data import Data
from krypton.timing import IDLE_SECONDS, settle_idle_threads
from krypton.train.history import History
from krypton.train.loop import resolve_threads, train
from krypton.train.model import DEFAULT_SIZES, build_model
from krypton.train.twin import train_torch

NAIVE_BATCHES = 20
"""Batches per epoch the naive rung is timed on when every backend runs in turn."""
PAUSE_BETWEEN_BACKENDS = IDLE_SECONDS
"""Seconds to let the previous backend's spinning threads fall asleep."""


def train_backends(backends: Sequence[str], data: Data, *, sizes: Sequence[int] = DEFAULT_SIZES,
                   model: str = "mlp", compare_torch: bool = False, naive_batches: int | None = None,
                   pause: float = PAUSE_BETWEEN_BACKENDS, **options: Any) -> list[History]:
    """Train a fresh ``build_model(model, sizes, seed)`` with each backend in turn (then PyTorch).

    Args:
        backends: Names from ``krypton.backends.BACKENDS``, run in this order, one after another.
        data: From ``krypton.data.load_data``.
        sizes: The MLP's layer widths (the CNN takes only the last, its classes).
        model: "mlp" or "cnn" (``krypton.train.model.MODELS``).
        compare_torch: Also train with PyTorch (last), from the same initial weights.
        naive_batches: If given, the naive rung runs only this many batches per epoch and its
            epoch time is extrapolated.
        pause: Seconds between backends, for the previous one's idle threads to go to sleep.
        **options: ``train``'s keyword arguments (epochs, batch_size, lr, max_batches, ...).

    Returns:
        One ``History`` per backend that ran. After an interrupt (Ctrl-C) the list stops with
        the interrupted history, whose ``interrupted`` is true.
    """
    contenders = list(backends) + (["torch"] if compare_torch else [])
    seed = options.get("seed", 0)
    histories: list[History] = []
    for index, name in enumerate(contenders):
        run_options = dict(options)
        if name == "naive" and naive_batches is not None:
            limit = run_options.get("max_batches")
            run_options["max_batches"] = (naive_batches if limit is None
                                          else min(limit, naive_batches))
        try:
            if index and pause:
                settle_idle_threads(pause)
            network = build_model(model, sizes, seed)
            if name == "torch":
                run_options.pop("fused", None)  # krypton's kernels: PyTorch has its own
                history = train_torch(network, data, **run_options)
            else:
                history = train(network, data, name, **run_options)
        except KeyboardInterrupt:  # between backends, or while one was setting up
            history = History(name, resolve_threads(name, options.get("threads")),
                              data.dataset, {}, interrupted=True)
        histories.append(history)
        if history.interrupted:
            break
    return histories
