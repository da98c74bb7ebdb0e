"""Train an MLP on (Fashion-)MNIST with any rung of the ladder as its matmul, and time it.

    python -m krypton.train                                  # 784-256-10, 3 epochs, fastest rung
    python -m krypton.train --backend all --compare-torch    # every rung, NumPy, then PyTorch
    python -m krypton.train --dataset fashion-mnist --optimizer adam --lr 1e-3 --json out.json
    python -m krypton.train --help

The model is an MLP (784 -> 256 -> 10 by default) with ReLU between the layers, trained with
cross-entropy and SGD with momentum (or Adam), the learning rate following a cosine from ``lr``
down to 0 over the run. The same run can be repeated with every backend of the autograd engine:
a rung of the ladder ("naive" ... "parallel") or "numpy" (``np.matmul``, i.e. the BLAS NumPy
ships), and with PyTorch for comparison. Every one of them starts from the same initial weights
(drawn here, with PyTorch's default ``nn.Linear`` distribution, from ``seed``), sees the same
batches in the same order and uses the same hyper-parameters, so their losses and accuracies
agree up to float32 rounding and their epoch times can be compared directly.

How a time is made: the training steps of an epoch are timed (data, forward, backward and
optimizer step separately), the test-set evaluation after each epoch is not. Inside forward and
backward, the time spent in the backend's matrix products is measured by wrapping the engine's
matmul seam (``matmul_timer``), so each epoch splits into "matmul" and "everything else".
Backends run one after another, never interleaved, with a short pause between them: on a small
machine the idle threads of OpenMP and OpenBLAS spin for a while after their last call and would
steal the cores from whoever runs next. NumPy's BLAS and PyTorch run with as many threads as the
parallel rung (all cores unless ``--threads``).

With ``--backend all`` the naive rung trains only ``--naive-batches`` batches per epoch and its
epoch time is extrapolated from them (marked ``*`` in the table), so the run takes minutes, not an
hour. Ctrl-C stops the run cleanly: what was measured so far is printed, then the exit code is 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from krypton import data as kdata
from krypton import machine
from krypton.bench import blas_threads, quick_mode, torch_available
from krypton.kernels import KERNELS, SPECS

BACKENDS = KERNELS + ("numpy",)
"""What ``--backend`` accepts (besides "all"): a rung of the ladder, or NumPy's own matmul."""

DEFAULT_SIZES = (784, 256, 10)
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}
NAIVE_BATCHES = 20
"""Batches per epoch the naive rung is timed on when every backend runs in turn."""
QUICK_MAX_BATCHES = 60
"""Batches per epoch in quick mode (``KRYPTON_QUICK=1``), for every backend."""
PAUSE_BETWEEN_BACKENDS = 0.2
"""Seconds to let the previous backend's spinning threads fall asleep."""
EVAL_BATCH = 2000


# --------------------------------------------------------------------------------------------
# Data


@dataclass
class Data:
    """The train and test splits of one dataset, standardized, and how they were found."""

    dataset: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    note: str = ""

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASS_NAMES[self.dataset]


CLASS_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
}


def load_data(dataset: str | None = None, root: str | os.PathLike | None = None,
              download: bool = True) -> Data:
    """Load the train and test splits, standardized with the train split's mean and std.

    Args:
        dataset: "mnist" or "fashion-mnist". ``None`` means MNIST when a copy can be found or
            downloaded, and Fashion-MNIST otherwise; ``Data.note`` then says so.
        root: A directory to look in first (see ``krypton.data.load_mnist``).
        download: Whether to try downloading a dataset that is not found locally.

    Raises:
        krypton.data.DatasetNotFoundError: The dataset asked for (or, with ``None``, neither
            dataset) is not available; the message says where it looked and how to get it.
    """
    if dataset is not None:
        return _load_splits(dataset, root, download, note="")
    try:
        return _load_splits("mnist", root, download, note="")
    except kdata.DatasetNotFoundError as mnist_error:
        try:
            return _load_splits(
                "fashion-mnist", root, download,
                note="MNIST is not available here (no local copy, and the download failed: "
                     "offline?), so this run uses Fashion-MNIST, the same format with clothes "
                     "instead of digits. Pass --dataset to choose.")
        except kdata.DatasetNotFoundError as fashion_error:
            raise kdata.DatasetNotFoundError(
                f"{mnist_error}\n\nFashion-MNIST, the fallback, is not available either:\n"
                f"{fashion_error}") from None


def _load_splits(dataset: str, root, download: bool, note: str) -> Data:
    train_images, train_labels = kdata.load_mnist("train", dataset, root, download,
                                                  standardize=True)
    test_images, test_labels = kdata.load_mnist("test", dataset, root, download,
                                                standardize=True)
    return Data(dataset, train_images, train_labels, test_images, test_labels, note)


# --------------------------------------------------------------------------------------------
# The model


def initial_parameters(sizes: Sequence[int] = DEFAULT_SIZES,
                       seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights and biases of an MLP, drawn as PyTorch's ``nn.Linear`` draws them by default.

    Layer ``i`` maps ``sizes[i]`` inputs to ``sizes[i + 1]`` outputs: its weight is
    ``(sizes[i + 1], sizes[i])`` and weight and bias are uniform in ``+-1/sqrt(sizes[i])``.
    Drawn here from ``np.random.default_rng(seed)``, so every backend, PyTorch included, can
    start from exactly the same numbers.
    """
    rng = np.random.default_rng(seed)
    parameters = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        weight = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        bias = rng.uniform(-bound, bound, fan_out).astype(np.float32)
        parameters.append((weight, bias))
    return parameters


def build_mlp(sizes: Sequence[int] = DEFAULT_SIZES, seed: int = 0):
    """A ``krypton.nn.Sequential`` of Linear layers with ReLU between them.

    Its parameters are ``initial_parameters(sizes, seed)``, so two models built with the same
    arguments (or ``build_torch_mlp`` of either) are identical.
    """
    from krypton import nn

    _check_sizes(sizes)
    layers: list[Any] = []
    for index, (weight, bias) in enumerate(initial_parameters(sizes, seed)):
        if index:
            layers.append(nn.ReLU())
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        _set_parameter(linear.weight, weight)
        _set_parameter(linear.bias, bias)
        layers.append(linear)
    return nn.Sequential(*layers)


def _set_parameter(parameter, value: np.ndarray) -> None:
    if parameter.data.shape != value.shape:
        raise ValueError(f"parameter of shape {parameter.data.shape} cannot take a value of "
                         f"shape {value.shape}")
    parameter.data[...] = value


def _check_sizes(sizes: Sequence[int]) -> None:
    if len(sizes) < 2 or any(int(size) < 1 for size in sizes):
        raise ValueError(f"sizes must be at least two positive layer widths, e.g. (784, 256, 10); "
                         f"got {tuple(sizes)}")


def linear_layers(model) -> list:
    """The ``Linear`` layers of a Sequential MLP, in order."""
    from krypton import nn

    return [layer for layer in model if isinstance(layer, nn.Linear)]


def build_torch_mlp(model):
    """A PyTorch ``nn.Sequential`` with the same layers and a copy of ``model``'s parameters."""
    import torch

    layers: list[Any] = []
    for index, linear in enumerate(linear_layers(model)):
        weight = np.array(linear.weight.data, dtype=np.float32)
        bias = np.array(linear.bias.data, dtype=np.float32)
        if index:
            layers.append(torch.nn.ReLU())
        twin = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            twin.weight.copy_(torch.from_numpy(weight))
            twin.bias.copy_(torch.from_numpy(bias))
        layers.append(twin)
    return torch.nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------
# Measuring where the time goes


class _Stopwatch:
    """Seconds accumulated across many short intervals (``with stopwatch: ...``)."""

    __slots__ = ("seconds", "calls", "_start")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._start = 0.0

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds += time.perf_counter() - self._start
        self.calls += 1


@contextlib.contextmanager
def matmul_timer() -> Iterator[_Stopwatch]:
    """Time every matrix product the autograd engine computes inside the block.

    Wraps the engine's matmul seam (``krypton.backends.matmul``, through which every ``@`` of a
    Tensor, forward and backward, goes to the current backend) with a stopwatch, and restores it
    on exit. The stopwatch's ``seconds`` and ``calls`` count what ran inside the block.
    """
    from krypton import backends as engine_backend

    stopwatch = _Stopwatch()
    original = engine_backend.matmul

    def timed_matmul(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            stopwatch.seconds += time.perf_counter() - start
            stopwatch.calls += 1

    engine_backend.matmul = timed_matmul
    try:
        yield stopwatch
    finally:
        engine_backend.matmul = original


# --------------------------------------------------------------------------------------------
# What a run records


PHASES = ("data", "forward", "backward", "step")
"""The parts of a training step that are timed: fetching the batch, forward pass and loss,
zeroing the gradients and backward pass, optimizer step."""


@dataclass
class EpochResult:
    """One epoch of one backend: its time, where the time went, its loss and accuracy.

    Times are for the whole epoch: when only ``batches`` of its ``batches_per_epoch`` batches
    ran (``extrapolated``), they are the measured times scaled by ``batches_per_epoch /
    batches``; ``measured_seconds`` keeps what the clock said.
    """

    epoch: int
    seconds: float
    matmul_seconds: float | None
    phase_seconds: dict[str, float]
    train_loss: float
    test_accuracy: float | None
    batches: int
    batches_per_epoch: int
    measured_seconds: float

    @property
    def extrapolated(self) -> bool:
        return self.batches < self.batches_per_epoch

    @property
    def other_seconds(self) -> float | None:
        return None if self.matmul_seconds is None else self.seconds - self.matmul_seconds

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "extrapolated": self.extrapolated,
                "other_seconds": self.other_seconds}


@dataclass
class History:
    """Everything one backend's training run measured, epoch by epoch."""

    backend: str
    threads: int
    dataset: str
    settings: dict[str, Any]
    epochs: list[EpochResult] = field(default_factory=list)
    batch_losses: list[float] = field(default_factory=list)
    interrupted: bool = False

    @property
    def epoch_seconds(self) -> float:
        """The median epoch time (the first epoch pays for warm-up effects the others do not)."""
        return _median([e.seconds for e in self.epochs])

    @property
    def matmul_seconds(self) -> float | None:
        values = [e.matmul_seconds for e in self.epochs]
        return None if not values or None in values else _median(values)

    @property
    def matmul_share(self) -> float | None:
        if not self.epochs or self.epochs[0].matmul_seconds is None:
            return None
        return (sum(e.matmul_seconds for e in self.epochs)
                / max(sum(e.seconds for e in self.epochs), 1e-12))

    @property
    def extrapolated(self) -> bool:
        return any(e.extrapolated for e in self.epochs)

    @property
    def test_accuracy(self) -> float | None:
        measured = [e.test_accuracy for e in self.epochs if e.test_accuracy is not None]
        return measured[-1] if measured else None

    @property
    def train_loss(self) -> float:
        return self.epochs[-1].train_loss if self.epochs else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "threads": self.threads, "dataset": self.dataset,
            "settings": self.settings, "interrupted": self.interrupted,
            "epoch_seconds": self.epoch_seconds, "matmul_seconds": self.matmul_seconds,
            "matmul_share": self.matmul_share, "extrapolated": self.extrapolated,
            "test_accuracy": self.test_accuracy, "train_loss": self.train_loss,
            "epochs": [e.to_dict() for e in self.epochs], "batch_losses": self.batch_losses,
        }


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------------------------
# Training


def learning_rate(lr: float, step: int, total_steps: int, schedule: str = "cosine") -> float:
    """The learning rate at ``step`` of ``total_steps``: constant, or a cosine from lr to 0."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def resolve_threads(backend: str, threads: int | None = None) -> int:
    """Threads a backend's matmul uses: the parallel rung, NumPy and PyTorch get ``threads``
    (default all cores); the other rungs run on one."""
    if backend in KERNELS and not SPECS[backend].threaded:
        return 1
    return threads or machine.cpu_count()


@dataclass
class _Plan:
    """The hyper-parameters and limits one run uses (the same for every backend)."""

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


def _make_plan(epochs: int, batch_size: int, optimizer: str, lr: float | None,
               momentum: float, schedule: str, seed: int, max_batches: int | None) -> _Plan:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be a positive integer or None, got {max_batches!r}")
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    return _Plan(int(epochs), int(batch_size), optimizer, float(lr), float(momentum), schedule,
                 int(seed), max_batches)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def make_optimizer(model, optimizer: str = "sgd", lr: float | None = None,
                   momentum: float = 0.9):
    """``krypton.optim.SGD`` (with momentum) or ``krypton.optim.Adam`` over the model's
    parameters."""
    from krypton import optim

    lr = DEFAULT_LR[optimizer] if lr is None else lr
    if optimizer == "sgd":
        return optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    if optimizer == "adam":
        return optim.Adam(model.parameters(), lr=lr)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def _set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:  # krypton.optim and torch.optim alike
        group["lr"] = lr


def _timed_step(optimizer, loss_of: Callable[[np.ndarray, np.ndarray], Any]
                ) -> Callable[[np.ndarray, np.ndarray, float, dict], float]:
    """One training step on a batch, its phases timed: ``loss_of(x, y)`` is the forward pass
    and loss (krypton's or PyTorch's); backward and the optimizer step are the same for both."""

    def training_step(x: np.ndarray, y: np.ndarray, lr: float,
                      clocks: dict[str, _Stopwatch]) -> float:
        _set_lr(optimizer, lr)
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
    import krypton

    outputs = []
    with _backend_or_current(backend), krypton.no_grad():
        for start in range(0, len(images), batch):
            logits = model(krypton.Tensor(images[start:start + batch]))
            outputs.append(np.argmax(logits.data, axis=1))
    return np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.int64)


def _backend_or_current(backend: str | None):
    import krypton

    return contextlib.nullcontext() if backend is None else krypton.backend(backend)


def train(model, data: Data, backend: str = "parallel", *, epochs: int = 3,
          batch_size: int = 128, optimizer: str = "sgd", lr: float | None = None,
          momentum: float = 0.9, schedule: str = "cosine", seed: int = 0,
          threads: int | None = None, max_batches: int | None = None, progress: bool = True,
          evaluate_each_epoch: bool = True, log: Callable[[str], None] | None = print,
          callback: Callable[[int, int, float], None] | None = None) -> History:
    """Train ``model`` on ``data`` with one backend; return what was measured.

    Every epoch walks the train split in the order ``krypton.data.DataLoader(..., seed=seed)``
    gives (epoch ``e`` shuffled with ``seed + e``), so runs with the same seed see the same
    batches. The learning rate follows ``schedule`` step by step over the whole run.

    Args:
        model: A krypton MLP, e.g. ``build_mlp()``. It is trained in place.
        data: From ``load_data``.
        backend: A rung of the ladder or "numpy" (see ``BACKENDS``).
        epochs: Passes over the train split.
        batch_size: Images per step.
        optimizer: "sgd" (with ``momentum``) or "adam".
        lr: Peak learning rate; default ``DEFAULT_LR[optimizer]``.
        momentum: SGD's momentum.
        schedule: "cosine" (lr down to 0 over the run) or "constant".
        seed: Seed of the batch order.
        threads: Threads of the parallel rung and of NumPy's BLAS (default: all cores).
        max_batches: Stop each epoch after this many batches; the epoch's times are then
            extrapolated to the full epoch and marked as such.
        progress: Show a progress bar per epoch.
        evaluate_each_epoch: Measure test accuracy after each epoch (not part of the time).
        log: Where the one-line summary of each epoch goes (``None``: nowhere).
        callback: Called after every step as ``callback(epoch, step, loss)``; may raise
            ``KeyboardInterrupt`` to stop, as Ctrl-C does.

    Returns:
        A ``History``. If Ctrl-C (or the callback) interrupts the run, the history holds the
        epochs finished so far, plus the interrupted one if it ran any batches (its accuracy not
        measured), and ``interrupted`` is true; the interrupt is not re-raised.
    """
    import krypton
    from krypton.nn import functional as F

    _check_backend(backend)
    plan = _make_plan(epochs, batch_size, optimizer, lr, momentum, schedule, seed, max_batches)
    threads = resolve_threads(backend, threads)
    history = History(backend, threads, data.dataset, plan.settings(data, _sizes_of(model)))
    opt = make_optimizer(model, plan.optimizer, plan.lr, plan.momentum)

    training_step = _timed_step(opt, lambda x, y: F.cross_entropy(model(krypton.Tensor(x)), y))

    def test_accuracy() -> float:
        return evaluate(model, data.test_images, data.test_labels)

    try:
        with krypton.backend(backend, **_threads_knob(backend, threads)), blas_threads(threads):
            _warm_up(model, data, plan.batch_size)
            with matmul_timer() as matmul_clock:
                _run_epochs(history, plan, data, training_step, test_accuracy, matmul_clock,
                            progress, evaluate_each_epoch, log, callback)
    except KeyboardInterrupt:  # landed between two epochs: keep the ones that finished
        history.interrupted = True
    return history


def _run_epochs(history: History, plan: _Plan, data: Data,
                training_step: Callable[[np.ndarray, np.ndarray, float, dict], float],
                test_accuracy: Callable[[], float], matmul_clock: _Stopwatch | None,
                progress: bool, evaluate_each_epoch: bool, log: Callable[[str], None] | None,
                callback: Callable[[int, int, float], None] | None) -> None:
    """The epoch loop ``train`` and ``train_torch`` share: batches, clocks, records, Ctrl-C."""
    loader = kdata.DataLoader(data.train_images, data.train_labels, plan.batch_size,
                              seed=plan.seed)
    steps_per_epoch = plan.batches_run(data)
    total_steps = plan.epochs * steps_per_epoch
    for epoch in range(plan.epochs):
        clocks = {phase: _Stopwatch() for phase in PHASES}
        matmul_before = matmul_clock.seconds if matmul_clock else 0.0
        loss_sum, step = 0.0, 0
        bar = _progress_bar(steps_per_epoch, f"{history.backend} {epoch + 1}/{plan.epochs}",
                            progress)
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
            break
        matmul = matmul_clock.seconds - matmul_before if matmul_clock else None
        accuracy = None
        if evaluate_each_epoch and not history.interrupted:
            try:
                accuracy = test_accuracy()
            except KeyboardInterrupt:
                history.interrupted = True
        result = _epoch_result(epoch + 1, elapsed, matmul, clocks, loss_sum / step, accuracy,
                               step, plan.batches_per_epoch(data))
        history.epochs.append(result)
        if log is not None:
            log(format_epoch(history, result))
        if history.interrupted:
            break


def _threads_knob(backend: str, threads: int) -> dict[str, int]:
    return {"threads": threads} if backend in KERNELS and SPECS[backend].threaded else {}


def _sizes_of(model) -> list[int]:
    layers = linear_layers(model)
    if not layers:
        return []
    return [layers[0].weight.data.shape[1]] + [layer.weight.data.shape[0] for layer in layers]


def _warm_up(model, data: Data, batch_size: int) -> None:
    """One forward pass, untimed: compiles/loads the kernel, wakes its threads, pages in."""
    import krypton

    with krypton.no_grad():
        model(krypton.Tensor(data.train_images[:batch_size]))


def _epoch_result(epoch: int, elapsed: float, matmul: float | None,
                  clocks: dict[str, _Stopwatch], train_loss: float, accuracy: float | None,
                  batches: int, batches_per_epoch: int) -> EpochResult:
    scale = batches_per_epoch / batches
    return EpochResult(
        epoch=epoch, seconds=elapsed * scale,
        matmul_seconds=None if matmul is None else matmul * scale,
        phase_seconds={phase: clock.seconds * scale for phase, clock in clocks.items()},
        train_loss=train_loss, test_accuracy=accuracy, batches=batches,
        batches_per_epoch=batches_per_epoch, measured_seconds=elapsed)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, description: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="batch", leave=False, file=sys.stderr,
                mininterval=0.5)


def train_torch(model, data: Data, *, epochs: int = 3, batch_size: int = 128,
                optimizer: str = "sgd", lr: float | None = None, momentum: float = 0.9,
                schedule: str = "cosine", seed: int = 0, threads: int | None = None,
                max_batches: int | None = None, progress: bool = True,
                evaluate_each_epoch: bool = True, log: Callable[[str], None] | None = print,
                callback: Callable[[int, int, float], None] | None = None) -> History:
    """``train``'s twin in PyTorch: same initial weights (copied from ``model``, which is not
    changed), same batches in the same order, same hyper-parameters and schedule, and
    ``torch.set_num_threads(threads)``. Matmul time is not split out (``None``)."""
    import torch

    plan = _make_plan(epochs, batch_size, optimizer, lr, momentum, schedule, seed, max_batches)
    threads = threads or machine.cpu_count()
    twin = build_torch_mlp(model)
    history = History("torch", threads, data.dataset, plan.settings(data, _sizes_of(model)))
    if plan.optimizer == "sgd":
        opt = torch.optim.SGD(twin.parameters(), lr=plan.lr, momentum=plan.momentum)
    else:
        opt = torch.optim.Adam(twin.parameters(), lr=plan.lr)

    training_step = _timed_step(opt, lambda x, y: torch.nn.functional.cross_entropy(
        twin(torch.from_numpy(x)), torch.from_numpy(y)))

    def test_accuracy() -> float:
        return _torch_accuracy(twin, data.test_images, data.test_labels)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            twin(torch.from_numpy(data.train_images[:plan.batch_size]))
        _run_epochs(history, plan, data, training_step, test_accuracy, None, progress,
                    evaluate_each_epoch, log, callback)
    except KeyboardInterrupt:  # landed between two epochs: keep the ones that finished
        history.interrupted = True
    finally:
        torch.set_num_threads(previous_threads)
    return history


def _torch_accuracy(twin, test_images: np.ndarray, test_labels: np.ndarray) -> float:
    import torch

    test_images = torch.from_numpy(test_images)
    with torch.no_grad():
        predictions = torch.cat([twin(test_images[start:start + EVAL_BATCH]).argmax(1)
                                 for start in range(0, len(test_images), EVAL_BATCH)])
    return float(np.mean(predictions.numpy() == test_labels))


# --------------------------------------------------------------------------------------------
# Several backends in one run


def train_backends(backends: Sequence[str], data: Data, *, sizes: Sequence[int] = DEFAULT_SIZES,
                   compare_torch: bool = False, naive_batches: int | None = None,
                   pause: float = PAUSE_BETWEEN_BACKENDS, **options: Any) -> list[History]:
    """Train a fresh ``build_mlp(sizes, seed)`` with each backend in turn (then PyTorch).

    Args:
        backends: Names from ``BACKENDS``, run in this order, one after another.
        data: From ``load_data``.
        sizes: The MLP's layer widths.
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
                time.sleep(pause)
            model = build_mlp(sizes, seed)
            if name == "torch":
                history = train_torch(model, data, **run_options)
            else:
                history = train(model, data, name, **run_options)
        except KeyboardInterrupt:  # between backends, or while one was setting up
            history = History(name, resolve_threads(name, options.get("threads")),
                              data.dataset, {}, interrupted=True)
        histories.append(history)
        if history.interrupted:
            break
    return histories


# --------------------------------------------------------------------------------------------
# Reporting


def format_epoch(history: History, result: EpochResult) -> str:
    """One line for one epoch: time, matmul share, loss, accuracy."""
    epochs = history.settings.get("epochs", "?")
    mark = "*" if result.extrapolated else " "
    split = ""
    if result.matmul_seconds is not None:
        split = f" (matmul {result.matmul_seconds:.2f} s, other {result.other_seconds:.2f} s)"
    accuracy = ("test accuracy not measured" if result.test_accuracy is None
                else f"test accuracy {100 * result.test_accuracy:.2f}%")
    note = (f"  [*{result.batches} of {result.batches_per_epoch} batches, time extrapolated]"
            if result.extrapolated else "")
    return (f"{history.backend:>9} epoch {result.epoch}/{epochs}: {result.seconds:7.2f} s{mark}"
            f"{split}  train loss {result.train_loss:.4f}  {accuracy}{note}")


def format_summary(histories: Sequence[History]) -> str:
    """The table at the end of a run: one row per backend, PyTorch beside them.

    Epoch time is the median over epochs; matmul/other split it into the time inside the
    backend's matrix products and the rest (autograd bookkeeping, elementwise ops, loss,
    optimizer, data); "vs torch" is the epoch time divided by PyTorch's (below 1: faster).
    """
    rows = [h for h in histories if h.epochs]
    if not rows:
        return "Nothing was measured."  + "".join(
            f"\n{h.backend}: interrupted (Ctrl-C) before it finished a step"
            for h in histories if h.interrupted)
    torch_row = next((h for h in rows if h.backend == "torch"), None)
    header = (f"{'backend':>9} {'threads':>7} {'epoch time':>11} {'matmul':>8} {'other':>8} "
              f"{'matmul %':>8} {'train loss':>10} {'test acc':>9}"
              + (f" {'vs torch':>8}" if torch_row else ""))
    lines = [header, "-" * len(header)]
    for h in rows:
        mark = "*" if h.extrapolated else " "
        matmul = h.matmul_seconds
        other = None if matmul is None else h.epoch_seconds - matmul
        share = h.matmul_share
        accuracy = h.test_accuracy
        line = (f"{h.backend:>9} {h.threads:>7} {h.epoch_seconds:9.2f} s{mark}"
                f"{_cell(matmul, '{:6.2f} s', 8)} {_cell(other, '{:6.2f} s', 8)}"
                f"{_cell(share, '{:7.0%}', 8)} {h.train_loss:>10.4f}"
                f"{_cell(accuracy, '{:8.2%}', 9)}")
        if torch_row:
            line += f" {h.epoch_seconds / torch_row.epoch_seconds:7.2f}x"
        lines.append(line)
    notes = []
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


# --------------------------------------------------------------------------------------------
# Command line


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _backend_choice(text: str) -> str:
    if text == "all" or text in BACKENDS:
        return text
    raise argparse.ArgumentTypeError(
        f"unknown backend {text!r}; choose one of {', '.join(BACKENDS)}, or all")


def build_parser() -> argparse.ArgumentParser:
    quick = quick_mode()
    parser = argparse.ArgumentParser(
        prog="python -m krypton.train",
        description="Train an MLP on MNIST (Fashion-MNIST when MNIST is not available) with "
                    "the kernel ladder as its matmul; print epoch time, loss and test accuracy "
                    "per epoch and a summary table, optionally beside PyTorch.")
    parser.add_argument("--backend", nargs="+", type=_backend_choice, default=["parallel"],
                        metavar="NAME",
                        help=f"one or more of {', '.join(BACKENDS)}, or all (every one in "
                             "turn); default parallel")
    parser.add_argument("--dataset", choices=kdata.DATASETS, default=None,
                        help="default: mnist if it can be found or downloaded, else "
                             "fashion-mnist")
    parser.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                        help="a directory holding the IDX files (looked in first)")
    parser.add_argument("--sizes", nargs="+", type=_positive_int, default=list(DEFAULT_SIZES),
                        metavar="N", help="layer widths, input first (default: 784 256 10)")
    parser.add_argument("--epochs", type=_positive_int, default=3, help="default 3")
    parser.add_argument("--batch-size", type=_positive_int, default=128, help="default 128")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                        help="sgd (with momentum) or adam; default sgd")
    parser.add_argument("--lr", type=_positive_float, default=None,
                        help="peak learning rate (default: 0.05 for sgd, 0.001 for adam)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum, default 0.9")
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                        help="learning rate: cosine from lr to 0 over the run (default), or "
                             "constant")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights and the batch order (default 0)")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="threads of the parallel rung, NumPy's BLAS and PyTorch "
                             f"(default: all {machine.cpu_count()} cores)")
    parser.add_argument("--max-batches", type=_positive_int,
                        default=QUICK_MAX_BATCHES if quick else None, metavar="N",
                        help="stop each epoch after N batches and extrapolate its time "
                             f"(default: whole epochs; {QUICK_MAX_BATCHES} under KRYPTON_QUICK=1)")
    parser.add_argument("--naive-batches", type=_positive_int, default=NAIVE_BATCHES,
                        metavar="N",
                        help="with several backends, time the naive rung on N batches per "
                             f"epoch and extrapolate (default {NAIVE_BATCHES})")
    parser.add_argument("--compare-torch", action="store_true",
                        help="also train with PyTorch: same model, init, batches, "
                             "hyper-parameters and threads")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="write every number measured to FILE as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    backends = list(BACKENDS) if "all" in args.backend else list(dict.fromkeys(args.backend))
    if len(args.sizes) < 2:
        parser.error("--sizes needs at least two widths (input and classes), e.g. 784 256 10")
    if args.compare_torch and not torch_available():
        parser.error("--compare-torch: PyTorch is not installed (pip install torch)")

    try:
        data = load_data(args.dataset, args.data_root)
    except kdata.DatasetNotFoundError as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted before training started.")
        return 130
    if data.note:
        print(data.note)
    if args.sizes[0] != data.train_images.shape[1]:
        parser.error(f"--sizes must start with the image size {data.train_images.shape[1]}, "
                     f"got {args.sizes[0]}")
    if args.sizes[-1] < 10:
        parser.error(f"--sizes must end with at least 10 outputs (one per class), got "
                     f"{args.sizes[-1]}")

    threads = args.threads or machine.cpu_count()
    options = dict(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                   lr=args.lr, momentum=args.momentum, schedule=args.schedule, seed=args.seed,
                   threads=threads, max_batches=args.max_batches,
                   progress=not args.no_progress)
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    print(f"Machine: {machine.describe()}")
    print(f"Dataset: {data.dataset}, {len(data.train_images)} train and "
          f"{len(data.test_images)} test images")
    print(f"Model: MLP {'-'.join(map(str, args.sizes))} with ReLU; {args.optimizer} lr {lr:g} "
          f"({args.schedule})" + (f" momentum {args.momentum:g}" if args.optimizer == "sgd"
                                  else "")
          + f"; batch {args.batch_size}, {args.epochs} epoch{'s' * (args.epochs > 1)}, "
          f"seed {args.seed}, {threads} thread{'s' * (threads > 1)} for the parallel rung, "
          "NumPy and PyTorch", flush=True)

    histories = train_backends(
        backends, data, sizes=args.sizes, compare_torch=args.compare_torch,
        naive_batches=args.naive_batches if len(backends) > 1 else None, **options)
    interrupted = any(h.interrupted for h in histories)
    print()
    if interrupted:
        print("Interrupted (Ctrl-C): what was measured so far:")
    print(format_summary(histories))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results_document(histories, data), indent=2))
        print(f"Saved {args.json}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
