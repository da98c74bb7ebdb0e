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

from typing import Any, Iterator, Sequence

from krypton.data import Data
from krypton.timing import IDLE_SECONDS, settle_idle_threads
from krypton.train.history import History
from krypton.train.loop import resolve_threads, train_epochs
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
    backends taking turns an epoch at a time.

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
    seed = options.get("seed", 0)
    runs: dict[str, Iterator[History]] = {}
    histories: dict[str, History] = {}
    finished: set[str] = set()
    first_turn, this_round = True, 0
    while len(finished) < len(contenders):
        for place in range(len(contenders)):
            name = contenders[(this_round + place) % len(contenders)]
            if name in finished:
                continue
            try:
                if not first_turn and pause:
                    settle_idle_threads(pause)
                first_turn = False
                if name not in runs:
                    runs[name] = _start(name, data, sizes, model, seed, naive_batches, options)
                history = next(runs[name], None)  # its next epoch (None: it had run them all)
            except KeyboardInterrupt:  # between turns, or while one was setting up
                history = histories.setdefault(name, History(
                    name, resolve_threads(name, options.get("threads")), data.dataset, {}))
                history.interrupted = True
            if history is None:
                finished.add(name)
                continue
            histories[name] = history
            if history.interrupted:  # every backend stops
                return [histories[name] for name in contenders if name in histories]
            if len(history.epochs) == history.settings["epochs"]:
                finished.add(name)
        this_round += 1
    return [histories[name] for name in contenders if name in histories]


def _start(name: str, data: Data, sizes: Sequence[int], model: str, seed: int,
           naive_batches: int | None, options: dict[str, Any]) -> Iterator[History]:
    """The epochs of one contender's run (``train_epochs`` or ``train_torch_epochs``)."""
    run_options = dict(options)
    if name == "naive" and naive_batches is not None:
        limit = run_options.get("max_batches")
        run_options["max_batches"] = (naive_batches if limit is None
                                      else min(limit, naive_batches))
    network = build_model(model, sizes, seed)
    if name == "torch":
        run_options.pop("fused", None)  # krypton's kernels: PyTorch has its own
        return train_torch_epochs(network, data, **run_options)
    return train_epochs(network, data, name, **run_options)
