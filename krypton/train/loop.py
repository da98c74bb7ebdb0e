"""The training loop: one backend, one model, epochs of timed steps; and evaluation.

``train`` runs ``run_epoch`` once per epoch with krypton's forward and backward; the PyTorch
twin (``krypton.train.twin``) runs the same ``run_epoch`` with PyTorch's. ``train_epochs`` is
``train`` as a ``Run``, an epoch per ``next()``, so that several runs can take turns
(``krypton.train.compare``). Every epoch walks the train split in the order
``data.loader(batch_size, seed=seed)`` gives, and the learning rate follows its schedule step
by step over the whole run, so runs with the same settings see the same batches with the same
learning rates.

The step is the ordinary API, nothing special to the CLI: ``model(Tensor(x))`` (a Sequential
runs each Linear + ReLU as one fused node), ``F.cross_entropy``, ``zero_grad``, ``backward``
and the optimizer's ``step``, whose element-wise work runs in krypton.fused's C kernels on every
rung (``fused=False`` runs their NumPy references instead, to measure what fusion buys). A
learner's loop written the same way runs the same code.

How a time is made: the training steps of an epoch are timed (data, forward, backward and
optimizer step separately), the test-set evaluation after each epoch is not. Inside forward and
backward, the time spent in the backend's matrix products is counted by
``krypton.backends.matmul_clock``, so each epoch splits into "matmul" and "everything else".
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from krypton import backends, machine, optim, seam
from krypton.autograd import Tensor, no_grad
from krypton.checks import finite_float, positive_int
from krypton.data import Data
from krypton.kernels import KERNELS, SPECS
from krypton.nn import functional as F
from krypton.timing import Stopwatch, blas_threads
from krypton.train.history import PHASES, EpochResult, History, format_epoch
from krypton.train.model import sizes_of

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}
EVAL_BATCH = 2000

StepFunction = Callable[[np.ndarray, np.ndarray, float, dict], float]
"""One training step: ``step(x, y, lr, clocks) -> loss``, its phases timed on ``clocks``."""


@dataclass(frozen=True)
class Plan:
    """The hyper-parameters and limits of one run, checked, the same for every backend.

    Made by ``make_plan``, the one place a default (the learning rate of each optimizer) is
    filled in and every bound is checked.
    """

    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    schedule: str
    seed: int
    max_batches: int | None

    def batches_per_epoch(self, data: Data) -> int:
        return math.ceil(len(data.train_images) / self.batch_size)

    def batches_run(self, data: Data) -> int:
        full = self.batches_per_epoch(data)
        return full if self.max_batches is None else min(full, self.max_batches)

    def settings(self, data: Data, sizes: Sequence[int]) -> dict[str, Any]:
        return {"sizes": list(sizes), "epochs": self.epochs, "batch_size": self.batch_size,
                "optimizer": self.optimizer, "lr": self.lr, "momentum": self.momentum,
                "schedule": self.schedule, "seed": self.seed, "dataset": data.dataset,
                "batches_per_epoch": self.batches_per_epoch(data),
                "batches_run": self.batches_run(data)}


def make_plan(epochs: int = 3, batch_size: int = 128, optimizer: str = "sgd",
              lr: float | None = None, momentum: float = 0.9, schedule: str = "cosine",
              seed: int = 0, max_batches: int | None = None) -> Plan:
    """Check a run's settings and fill in the default learning rate (``DEFAULT_LR``)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    return Plan(positive_int("epochs", epochs), positive_int("batch_size", batch_size), optimizer,
                finite_float("lr", lr, low=0.0, low_open=True),
                finite_float("momentum", momentum, low=0.0, high=1.0, high_open=True), schedule,
                int(seed), None if max_batches is None else positive_int("max_batches",
                                                                         max_batches))


def learning_rate(lr: float, step: int, total_steps: int, schedule: str = "cosine") -> float:
    """The learning rate at ``step`` of ``total_steps``: constant, or a cosine from lr to 0."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def resolve_threads(backend: str, threads: int | None = None) -> int:
    """Threads a backend's matmul uses: the threaded rungs, NumPy and PyTorch get ``threads``
    (default all cores); the other rungs run on one, and so do the threaded ones in a build
    without OpenMP (``seam.openmp_flags()`` empty)."""
    threads = machine.cpu_count() if threads is None else machine.check_threads("threads", threads)
    if backend in KERNELS and not (SPECS[backend].threaded and seam.openmp_flags()):
        return 1
    return threads


def make_optimizer(model, plan: Plan) -> optim.Optimizer:
    """``krypton.optim.SGD`` (with momentum) or ``krypton.optim.Adam``, as ``plan`` says."""
    if plan.optimizer == "sgd":
        return optim.SGD(model.parameters(), lr=plan.lr, momentum=plan.momentum)
    return optim.Adam(model.parameters(), lr=plan.lr)


def timed_step(optimizer, loss_of: Callable[[np.ndarray, np.ndarray], Any]) -> StepFunction:
    """One training step on a batch, its phases timed: ``loss_of(x, y)`` is the forward pass
    and loss (krypton's or PyTorch's); backward and the optimizer step are the same for both."""

    def training_step(x: np.ndarray, y: np.ndarray, lr: float,
                      clocks: dict[str, Stopwatch]) -> float:
        for group in optimizer.param_groups:  # krypton.optim and torch.optim alike
            group["lr"] = lr
        with clocks["forward"]:
            loss = loss_of(x, y)
        with clocks["backward"]:
            optimizer.zero_grad()
            loss.backward()
        with clocks["step"]:
            optimizer.step()
        return loss.item()

    return training_step


def evaluate(model, images: np.ndarray, labels: np.ndarray, backend: str | None = None,
             batch: int = EVAL_BATCH) -> float:
    """Accuracy (0 to 1) of ``model`` on ``images``, computed with ``backend``."""
    predictions = predict(model, images, backend=backend, batch=batch)
    return float(np.mean(predictions == labels)) if len(labels) else float("nan")


def predict(model, images: np.ndarray, backend: str | None = None,
            batch: int = EVAL_BATCH) -> np.ndarray:
    """The class ``model`` gives each image (argmax of its logits), computed with ``backend``."""
    outputs = []
    chosen = contextlib.nullcontext() if backend is None else backends.backend(backend)
    with chosen, no_grad():
        for start in range(0, len(images), batch):
            logits = model(Tensor(images[start:start + batch]))
            outputs.append(np.argmax(logits.data, axis=1))
    return np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.int64)


def train(model, data: Data, backend: str = "parallel", *, epochs: int = 3,
          batch_size: int = 128, optimizer: str = "sgd", lr: float | None = None,
          momentum: float = 0.9, schedule: str = "cosine", seed: int = 0,
          threads: int | None = None, max_batches: int | None = None, progress: bool = True,
          evaluate_each_epoch: bool = True, log: Callable[[str], None] | None = print,
          callback: Callable[[int, int, float], None] | None = None,
          fused: bool = True) -> History:
    """Train ``model`` on ``data`` with one backend; return what was measured.

    Args:
        model: A krypton MLP, e.g. ``build_mlp()``. It is trained in place.
        data: From ``krypton.data.load_data``.
        backend: A rung of the ladder or "numpy" (see ``krypton.backends.BACKENDS``).
        epochs: Passes over the train split.
        batch_size: Images per step.
        optimizer: "sgd" (with ``momentum``) or "adam".
        lr: Peak learning rate (finite, positive); default ``DEFAULT_LR[optimizer]``.
        momentum: SGD's momentum, in [0, 1).
        schedule: "cosine" (lr down to 0 over the run) or "constant".
        seed: Seed of the batch order (epoch ``e`` shuffled with ``seed + e``).
        threads: Threads of the parallel rung and of NumPy's BLAS (default: all cores).
        max_batches: Stop each epoch after this many batches; the epoch's times are then
            extrapolated to the full epoch and marked as such.
        progress: Show a progress bar per epoch.
        evaluate_each_epoch: Measure test accuracy after each epoch (not part of the time).
        log: Where the one-line summary of each epoch goes (``None``: nowhere).
        callback: Called after every step as ``callback(epoch, step, loss)``; may raise
            ``KeyboardInterrupt`` to stop, as Ctrl-C does.
        fused: Run the element-wise work in the fused C kernels (``krypton.fused``); False
            runs their NumPy references (the "numpy" backend always does).

    Returns:
        A ``History``. If Ctrl-C (or the callback) interrupts the run, the history holds the
        epochs finished so far, plus the interrupted one if it ran any batches (its accuracy not
        measured), and ``interrupted`` is true; the interrupt is not re-raised.
    """
    return train_epochs(model, data, backend, epochs=epochs, batch_size=batch_size,
                        optimizer=optimizer, lr=lr, momentum=momentum, schedule=schedule,
                        seed=seed, threads=threads, max_batches=max_batches, progress=progress,
                        evaluate_each_epoch=evaluate_each_epoch, log=log, callback=callback,
                        fused=fused).finish()


def train_epochs(model, data: Data, backend: str = "parallel", *, epochs: int = 3,
                 batch_size: int = 128, optimizer: str = "sgd", lr: float | None = None,
                 momentum: float = 0.9, schedule: str = "cosine", seed: int = 0,
                 threads: int | None = None, max_batches: int | None = None,
                 progress: bool = True, evaluate_each_epoch: bool = True,
                 log: Callable[[str], None] | None = print,
                 callback: Callable[[int, int, float], None] | None = None,
                 fused: bool = True) -> Run:
    """``train``, one epoch per ``next()``: the same arguments, checked at once, and a ``Run``
    whose every ``next`` trains the next epoch.

    Each epoch enters the run's settings (backend and its threads, NumPy's BLAS threads, the
    fused kernels) and leaves them after it, so several runs can take turns, an epoch each, in
    one process (``krypton.train.compare.take_turns``): a slow stretch of the machine then falls
    on all of them, not on whichever ran during it.
    """
    if backend not in backends.BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of "
                         f"{', '.join(backends.BACKENDS)}")
    plan = make_plan(epochs, batch_size, optimizer, lr, momentum, schedule, seed, max_batches)
    threads = resolve_threads(backend, threads)
    history = History(backend, threads, data.dataset, plan.settings(data, sizes_of(model)))
    training_step = timed_step(make_optimizer(model, plan),
                               lambda x, y: F.cross_entropy(model(Tensor(x)), y))
    threads_knob = {"threads": threads} if backend in KERNELS and SPECS[backend].threaded else {}
    loader = data.loader(plan.batch_size, seed=plan.seed)   # from the pixels, where known

    def test_accuracy() -> float:
        return evaluate(model, data.test_images, data.test_labels)

    def train_epoch(epoch: int) -> None:
        with backends.backend(backend, **threads_knob), blas_threads(threads), \
                backends.fused_kernels(fused):
            # Untimed: loads the kernel (compiles it, the first time), wakes its threads.
            with no_grad():
                model(Tensor(data.train_images[:plan.batch_size]))
            with backends.matmul_clock() as matmul:
                run_epoch(history, plan, data, loader, epoch, training_step, test_accuracy,
                          matmul, progress, evaluate_each_epoch, log, callback)

    return Run(history, plan.epochs, train_epoch)


class Run:
    """A training run, an epoch per ``next()`` (``train_epochs`` and ``train_torch_epochs``
    make them): each ``next`` trains one more epoch and returns ``history``, the run's
    ``History`` (the same object from the start, with no epochs yet), until every epoch has run
    or one was interrupted. ``finish()`` trains the epochs left and returns it.

    Args:
        history: Where the run's epochs are recorded.
        epochs: How many epochs the run has.
        train_epoch: ``train_epoch(epoch)`` trains epoch ``epoch`` (from 0) inside the run's
            settings and records it in ``history``.
    """

    def __init__(self, history: History, epochs: int, train_epoch: Callable[[int], None]):
        self.history = history
        self._epochs = epochs
        self._train_epoch = train_epoch
        self._next_epoch = 0

    def __iter__(self) -> Run:
        return self

    def __next__(self) -> History:
        if self.done:
            raise StopIteration
        try:
            self._train_epoch(self._next_epoch)
        except KeyboardInterrupt:  # landed outside the steps (setup, evaluation)
            self.history.interrupted = True
        self._next_epoch += 1
        return self.history

    @property
    def done(self) -> bool:
        """Every epoch of the run was trained, or one was interrupted: nothing more to train."""
        return self.history.interrupted or self._next_epoch == self._epochs

    def finish(self) -> History:
        """Train the epochs left; the run's ``History``."""
        for _ in self:
            pass
        return self.history


def run_epoch(history: History, plan: Plan, data: Data, loader, epoch: int,
              training_step: StepFunction, test_accuracy: Callable[[], float],
              matmul: Stopwatch | None, progress: bool, evaluate_each_epoch: bool,
              log: Callable[[str], None] | None,
              callback: Callable[[int, int, float], None] | None) -> None:
    """Epoch ``epoch`` (from 0) of a run, the one ``train`` and ``train_torch`` share: its
    batches from ``loader``, its clocks, its record appended to ``history``, Ctrl-C."""
    steps_per_epoch = plan.batches_run(data)
    total_steps = plan.epochs * steps_per_epoch
    clocks = {phase: Stopwatch() for phase in PHASES}
    matmul_before = matmul.seconds if matmul else 0.0
    loss_sum, step = 0.0, 0
    bar = tqdm(total=steps_per_epoch, desc=f"{history.backend} {epoch + 1}/{plan.epochs}",
               unit="batch", leave=False, file=sys.stderr, mininterval=0.5,
               disable=not progress)
    loader.set_epoch(epoch)  # its shuffle, whatever ran before
    start = time.perf_counter()
    try:
        batches = iter(loader)
        while step < steps_per_epoch:
            with clocks["data"]:
                x, y = next(batches)
            lr = learning_rate(plan.lr, epoch * steps_per_epoch + step, total_steps,
                               plan.schedule)
            loss = training_step(x, y, lr, clocks)
            loss_sum += loss
            history.batch_losses.append(loss)
            step += 1
            bar.update()
            if callback is not None:
                callback(epoch, step, loss)
    except KeyboardInterrupt:
        history.interrupted = True
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    if step == 0:
        return
    matmul_seconds = matmul.seconds - matmul_before if matmul else None  # not the eval's
    accuracy = None
    if evaluate_each_epoch and not history.interrupted:
        try:
            accuracy = test_accuracy()
        except KeyboardInterrupt:
            history.interrupted = True
    scale = plan.batches_per_epoch(data) / step
    result = EpochResult(
        epoch=epoch + 1, seconds=elapsed * scale,
        matmul_seconds=None if matmul_seconds is None else matmul_seconds * scale,
        phase_seconds={phase: clock.seconds * scale for phase, clock in clocks.items()},
        train_loss=loss_sum / step, test_accuracy=accuracy, batches=step,
        batches_per_epoch=plan.batches_per_epoch(data), measured_seconds=elapsed)
    history.epochs.append(result)
    if log is not None:
        log(format_epoch(history, result))
