"""The PyTorch twin of a training run: same model (MLP or CNN), weights, batches, schedule and
threads.

PyTorch is an optional comparison, never a dependency: it is imported only when a twin is
built, and ``krypton.timing.torch_available()`` says whether it can be.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from krypton import backends, machine, nn
from krypton.data import Data
from krypton.train.history import History
from krypton.train.loop import EVAL_BATCH, Run, make_plan, run_epoch, timed_step
from krypton.train.model import sizes_of


def build_torch_twin(model):
    """A PyTorch ``nn.Sequential`` with the same layers as the krypton Sequential ``model`` (an
    MLP or the CNN) and a copy of its parameters."""
    import torch  # optional dependency

    layers = []
    for layer in model:
        if isinstance(layer, nn.Linear):
            twin = torch.nn.Linear(layer.in_features, layer.out_features,
                                   bias=layer.bias is not None)
        elif isinstance(layer, nn.Conv2d):
            twin = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                   stride=layer.stride, padding=layer.padding,
                                   bias=layer.bias is not None)
        elif isinstance(layer, nn.MaxPool2d):
            twin = torch.nn.MaxPool2d(layer.kernel_size, layer.stride)
        elif isinstance(layer, nn.Flatten):
            twin = torch.nn.Flatten(layer.start_dim, layer.end_dim)
        elif isinstance(layer, nn.Unflatten):
            twin = torch.nn.Unflatten(layer.dim, layer.unflattened_size)
        elif isinstance(layer, (nn.ReLU, nn.Tanh, nn.Sigmoid)):
            twin = getattr(torch.nn, type(layer).__name__)()
        else:
            raise TypeError(f"no PyTorch twin for a {type(layer).__name__} layer")
        with torch.no_grad():
            for name, parameter in layer.named_parameters():
                getattr(twin, name).copy_(torch.from_numpy(
                    np.array(parameter.data, dtype=np.float32)))
        layers.append(twin)
    return torch.nn.Sequential(*layers)


build_torch_mlp = build_torch_twin
"""The name notebook 08 and the tests know the twin by (it builds the CNN's as well)."""


def train_torch(model, data: Data, *, epochs: int = 3, batch_size: int = 128,
                optimizer: str = "sgd", lr: float | None = None, momentum: float = 0.9,
                schedule: str = "cosine", seed: int = 0, threads: int | None = None,
                max_batches: int | None = None, progress: bool = True,
                evaluate_each_epoch: bool = True, log: Callable[[str], None] | None = print,
                callback: Callable[[int, int, float], None] | None = None) -> History:
    """``train``'s twin in PyTorch: same initial weights (copied from ``model``, which is not
    changed), same batches in the same order, same hyper-parameters and schedule, and
    ``torch.set_num_threads(threads)``. Matmul time is not split out (``None``); the batches are
    the same, gathered by NumPy's indexing."""
    return train_torch_epochs(model, data, epochs=epochs, batch_size=batch_size,
                              optimizer=optimizer, lr=lr, momentum=momentum, schedule=schedule,
                              seed=seed, threads=threads, max_batches=max_batches,
                              progress=progress, evaluate_each_epoch=evaluate_each_epoch,
                              log=log, callback=callback).finish()


def train_torch_epochs(model, data: Data, *, epochs: int = 3, batch_size: int = 128,
                       optimizer: str = "sgd", lr: float | None = None, momentum: float = 0.9,
                       schedule: str = "cosine", seed: int = 0, threads: int | None = None,
                       max_batches: int | None = None, progress: bool = True,
                       evaluate_each_epoch: bool = True,
                       log: Callable[[str], None] | None = print,
                       callback: Callable[[int, int, float], None] | None = None) -> Run:
    """``train_torch``, one epoch per ``next()``, as ``krypton.train.loop.train_epochs``; each
    epoch sets PyTorch's threads and puts the previous number back after it."""
    import torch  # optional dependency

    plan = make_plan(epochs, batch_size, optimizer, lr, momentum, schedule, seed, max_batches)
    threads = machine.cpu_count() if threads is None else machine.check_threads("threads",
                                                                                threads)
    twin = build_torch_twin(model)
    history = History("torch", threads, data.dataset, plan.settings(data, sizes_of(model)))
    if plan.optimizer == "sgd":
        opt = torch.optim.SGD(twin.parameters(), lr=plan.lr, momentum=plan.momentum)
    else:
        opt = torch.optim.Adam(twin.parameters(), lr=plan.lr)
    training_step = timed_step(opt, lambda x, y: torch.nn.functional.cross_entropy(
        twin(torch.from_numpy(x)), torch.from_numpy(y)))
    loader = data.loader(plan.batch_size, seed=plan.seed)

    def test_accuracy() -> float:
        images = torch.from_numpy(data.test_images)
        with torch.no_grad():
            predictions = torch.cat([twin(images[start:start + EVAL_BATCH]).argmax(1)
                                     for start in range(0, len(images), EVAL_BATCH)])
        return float(np.mean(predictions.numpy() == data.test_labels))

    def train_epoch(epoch: int) -> None:
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.no_grad():  # untimed: wakes PyTorch's threads
                # a copy: load_data's train_images are read-only, and PyTorch warns on such views
                twin(torch.from_numpy(data.train_images[:plan.batch_size].copy()))
            # The batches are gathered by NumPy's indexing, as a PyTorch user's loop gathers
            # them, not by krypton's threaded C copy (whose idle threads would spin beside
            # PyTorch's).
            with backends.fused_kernels(False):
                run_epoch(history, plan, data, loader, epoch, training_step, test_accuracy,
                          None, progress, evaluate_each_epoch, log, callback)
        finally:
            torch.set_num_threads(previous_threads)

    return Run(history, plan.epochs, train_epoch)
