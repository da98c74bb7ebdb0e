"""The PyTorch twin of a training run: same model, weights, batches, schedule and threads.

PyTorch is an optional comparison, never a dependency: it is imported only when a twin is
built, and ``krypton.timing.torch_available()`` says whether it can be.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from krypton import machine
from krypton.data import Data
from krypton.train.history import History
from krypton.train.loop import EVAL_BATCH, make_plan, run_epochs, timed_step
from krypton.train.model import linear_layers, sizes_of


def build_torch_mlp(model):
    """A PyTorch ``nn.Sequential`` with the same layers and a copy of ``model``'s parameters."""
    import torch  # optional dependency

    layers = []
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


def train_torch(model, data: Data, *, epochs: int = 3, batch_size: int = 128,
                optimizer: str = "sgd", lr: float | None = None, momentum: float = 0.9,
                schedule: str = "cosine", seed: int = 0, threads: int | None = None,
                max_batches: int | None = None, progress: bool = True,
                evaluate_each_epoch: bool = True, log: Callable[[str], None] | None = print,
                callback: Callable[[int, int, float], None] | None = None) -> History:
    """``train``'s twin in PyTorch: same initial weights (copied from ``model``, which is not
    changed), same batches in the same order, same hyper-parameters and schedule, and
    ``torch.set_num_threads(threads)``. Matmul time is not split out (``None``)."""
    import torch  # optional dependency

    plan = make_plan(epochs, batch_size, optimizer, lr, momentum, schedule, seed, max_batches)
    threads = machine.cpu_count() if threads is None else machine.check_threads("threads",
                                                                                threads)
    twin = build_torch_mlp(model)
    history = History("torch", threads, data.dataset, plan.settings(data, sizes_of(model)))
    if plan.optimizer == "sgd":
        opt = torch.optim.SGD(twin.parameters(), lr=plan.lr, momentum=plan.momentum)
    else:
        opt = torch.optim.Adam(twin.parameters(), lr=plan.lr)
    training_step = timed_step(opt, lambda x, y: torch.nn.functional.cross_entropy(
        twin(torch.from_numpy(x)), torch.from_numpy(y)))

    def test_accuracy() -> float:
        images = torch.from_numpy(data.test_images)
        with torch.no_grad():
            predictions = torch.cat([twin(images[start:start + EVAL_BATCH]).argmax(1)
                                     for start in range(0, len(images), EVAL_BATCH)])
        return float(np.mean(predictions.numpy() == data.test_labels))

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            twin(torch.from_numpy(data.train_images[:plan.batch_size]))
        run_epochs(history, plan, data, training_step, test_accuracy, None, progress,
                   evaluate_each_epoch, log, callback)
    except KeyboardInterrupt:  # landed between two epochs: keep the ones that finished
        history.interrupted = True
    finally:
        torch.set_num_threads(previous_threads)
    return history
