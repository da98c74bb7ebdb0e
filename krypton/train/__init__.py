"""Train an MLP or a CNN on (Fashion-)MNIST with any rung of the ladder as its matmul, and time it.

    python -m krypton.train                                  # 784-256-10, 3 epochs, fastest rung
    python -m krypton.train --backend all --compare-torch    # every rung, NumPy, PyTorch, in turns
    python -m krypton.train --dataset fashion-mnist --optimizer adam --lr 1e-3 --json out.json
    python -m krypton.train --model cnn --epochs 5 --compare-torch   # LeNet-style CNN
    python -m krypton.train --help

The model is an MLP (784 -> 256 -> 10 by default) with ReLU between the layers, or with
``--model cnn`` a LeNet-style CNN (``build_cnn``), trained with
cross-entropy and SGD with momentum (or Adam), the learning rate following a cosine from ``lr``
down to 0 over the run. The same run can be repeated with every backend of the autograd engine:
a rung of the ladder ("naive" ... "parallel") or "numpy" (``np.matmul``, i.e. the BLAS NumPy
ships), and with PyTorch for comparison. Every one of them starts from the same initial weights,
sees the same batches in the same order and uses the same hyper-parameters, so their losses and
accuracies agree up to float32 rounding and their epoch times can be compared directly.

Where each part lives (read them in this order):

    krypton.train.model     the models: ``build_mlp``, ``build_cnn``, ``product_shapes``
    krypton.train.history   what a run records: ``EpochResult``, ``History``, ``format_epoch``
    krypton.train.loop      the loop: ``train`` (``train_epochs``), ``evaluate``, ``predict``
    krypton.train.twin      the same run in PyTorch: ``build_torch_twin``, ``train_torch``
    krypton.train.compare   runs taking turns an epoch each: ``take_turns``, ``train_backends``
    krypton.train.report    the summary table and the JSON document: ``format_summary``,
                            ``ratio_to``
    krypton.train.cli       ``python -m krypton.train``: ``build_parser``, ``main``

The dataset wrapper (``Data``, ``CLASS_NAMES``, ``load_data``) lives in ``krypton.data`` and the
matmul clock (``matmul_timer`` here) in ``krypton.backends`` (``matmul_clock``); both are
re-exported below, with every name of the parts above.
"""

from krypton.backends import BACKENDS
from krypton.backends import matmul_clock as matmul_timer
from krypton.data import CLASS_NAMES, Data, load_data
from krypton.train.cli import QUICK_MAX_BATCHES, build_parser, main
from krypton.train.compare import (NAIVE_BATCHES, PAUSE_BETWEEN_BACKENDS, take_turns,
                                   train_backends)
from krypton.train.history import PHASES, EpochResult, History, format_epoch
from krypton.train.loop import (DEFAULT_LR, EVAL_BATCH, OPTIMIZERS, SCHEDULES, Plan, Run,
                                evaluate, learning_rate, make_optimizer, make_plan, predict,
                                resolve_threads, train, train_epochs)
from krypton.train.model import (DEFAULT_SIZES, MODELS, build_cnn, build_mlp, build_model, describe,
                                 initial_parameters, linear_layers, product_shapes)
from krypton.train.report import format_summary, ratio_to, results_document
from krypton.train.twin import build_torch_mlp, build_torch_twin, train_torch, train_torch_epochs

__all__ = [
    "BACKENDS", "CLASS_NAMES", "DEFAULT_LR", "DEFAULT_SIZES", "EVAL_BATCH", "Data",
    "EpochResult", "History", "NAIVE_BATCHES", "OPTIMIZERS", "PAUSE_BETWEEN_BACKENDS", "PHASES",
    "MODELS", "Plan", "QUICK_MAX_BATCHES", "Run", "SCHEDULES", "build_cnn", "build_mlp",
    "build_model", "build_parser", "build_torch_mlp", "build_torch_twin", "describe",
    "product_shapes", "evaluate", "format_epoch", "format_summary", "initial_parameters",
    "learning_rate", "linear_layers", "load_data", "main", "make_optimizer", "make_plan",
    "matmul_timer", "predict", "ratio_to", "resolve_threads", "results_document", "take_turns",
    "train", "train_backends", "train_epochs", "train_torch", "train_torch_epochs",
]
