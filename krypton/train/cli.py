"""The command line of ``python -m krypton.train``: parse, check everything, train, report.

Every argument is checked before any data is loaded or any step runs (an unwritable ``--json``
or an infinite ``--lr`` costs a second, not a training run); the results file is written
atomically. Ctrl-C stops the run cleanly: what was measured so far is printed, then the exit
code is 130.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from krypton import machine, seam
from krypton.backends import BACKENDS, DEFAULT
from krypton.data import DATASETS, DatasetNotFoundError, load_data
from krypton.files import atomic_write, check_writable
from krypton.timing import check_fits_in_memory, cold_calls, quick_mode, torch_available
from krypton.train.compare import NAIVE_BATCHES, train_backends
from krypton.train.loop import OPTIMIZERS, SCHEDULES, make_plan
from krypton.train.model import (DEFAULT_SIZES, IMAGE_SHAPE, MODELS, build_model, describe,
                                 product_shapes)
from krypton.train.report import format_summary, results_document

QUICK_MAX_BATCHES = 60
"""Batches per epoch in quick mode (``KRYPTON_QUICK=1``), for every backend."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _threads(text: str) -> int:
    value = _positive_int(text)
    if value > machine.MAX_THREADS:
        raise argparse.ArgumentTypeError(
            f"expected at most {machine.MAX_THREADS} threads, got {value}: pass at most the "
            f"core count ({machine.cpu_count()} here)")
    return value


def _in_range(text: str, low: float, high: float, high_open: bool, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not (math.isfinite(value) and low <= value and (value < high if high_open
                                                        else value <= high)):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def _lr(text: str) -> float:
    value = _in_range(text, 0.0, math.inf, True, "a finite positive number")
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text}")
    return value


def _momentum(text: str) -> float:
    return _in_range(text, 0.0, 1.0, True, "a number in [0, 1), e.g. 0.9")


def _backend_choice(text: str) -> str:
    if text == "all" or text in BACKENDS:
        return text
    raise argparse.ArgumentTypeError(
        f"unknown backend {text!r}; choose one of {', '.join(BACKENDS)}, or all")


def build_parser() -> argparse.ArgumentParser:
    quick = quick_mode()
    parser = argparse.ArgumentParser(
        prog="python -m krypton.train",
        description="Train an MLP or a CNN on MNIST (Fashion-MNIST when MNIST is not "
                    "available) with "
                    "the kernel ladder as its matmul; print epoch time, loss and test accuracy "
                    "per epoch and a summary table, optionally beside PyTorch.")
    parser.add_argument("--backend", nargs="+", type=_backend_choice, default=[DEFAULT],
                        metavar="NAME",
                        help=f"one or more of {', '.join(BACKENDS)}, or all (every one); "
                             f"several take turns, an epoch each; default {DEFAULT}, the top "
                             f"rung")
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="default: mnist if it can be found or downloaded, else "
                             "fashion-mnist")
    parser.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                        help="a directory holding the IDX files (looked in first)")
    parser.add_argument("--model", choices=MODELS, default="mlp",
                        help="mlp (default), or cnn: a LeNet-style network, conv 1->16 3x3 pad "
                             "1, ReLU, max-pool 2, conv 16->32 3x3 pad 1, ReLU, max-pool 2, "
                             "Linear 1568->128->10, its convolutions im2col products")
    parser.add_argument("--sizes", nargs="+", type=_positive_int, default=None,
                        metavar="N", help="the MLP's layer widths, input first (default: 784 256 "
                                          "10)")
    parser.add_argument("--epochs", type=_positive_int, default=3, help="default 3")
    parser.add_argument("--batch-size", type=_positive_int, default=128, help="default 128")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                        help="sgd (with momentum) or adam; default sgd")
    parser.add_argument("--lr", type=_lr, default=None,
                        help="peak learning rate, finite and positive (default: 0.05 for sgd, "
                             "0.001 for adam)")
    parser.add_argument("--momentum", type=_momentum, default=0.9,
                        help="SGD momentum in [0, 1), default 0.9")
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                        help="learning rate: cosine from lr to 0 over the run (default), or "
                             "constant")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights and the batch order (default 0)")
    parser.add_argument("--threads", type=_threads, default=None,
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
    parser.add_argument("--no-fused", action="store_true",
                        help="run the element-wise work of each step (bias + ReLU, softmax + "
                             "cross-entropy, the optimizer update) with NumPy instead of the "
                             "fused C kernels, to measure what fusion buys")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="write every number measured to FILE as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    backends = list(BACKENDS) if "all" in args.backend else list(dict.fromkeys(args.backend))
    if args.model == "cnn" and args.sizes is not None:
        parser.error("--sizes sets the MLP's widths; the cnn's layers are fixed (see --help)")
    if args.sizes is None:
        args.sizes = list(DEFAULT_SIZES)
    if len(args.sizes) < 2:
        parser.error("--sizes needs at least two widths (input and classes), e.g. 784 256 10")
    if args.compare_torch and not torch_available():
        parser.error("--compare-torch: PyTorch is not installed (pip install torch)")
    try:
        if args.json is not None:
            check_writable(args.json, "--json")
        plan = make_plan(args.epochs, args.batch_size, args.optimizer, args.lr, args.momentum,
                         args.schedule, args.seed, args.max_batches)
        if args.model == "mlp":
            for fan_in, fan_out in zip(args.sizes[:-1], args.sizes[1:]):  # one layer's product
                check_fits_in_memory(plan.batch_size, fan_out, fan_in, "--sizes layer")
        else:  # a batch's im2col products grow with it
            for product in product_shapes(build_model("cnn"), plan.batch_size):
                check_fits_in_memory(product["m"], product["n"], product["k"], "--batch-size")
    except (TypeError, ValueError) as error:
        parser.error(str(error))

    try:
        data = load_data(args.dataset, args.data_root)
    except DatasetNotFoundError as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted before training started.")
        return 130
    if data.note:
        print(data.note)
    if args.model == "cnn" and data.train_images.shape[1] != int(np.prod(IMAGE_SHAPE)):
        parser.error(f"--model cnn takes {'x'.join(map(str, IMAGE_SHAPE[1:]))} images, the "
                     f"dataset's have {data.train_images.shape[1]} pixels")
    if args.model == "mlp" and args.sizes[0] != data.train_images.shape[1]:
        parser.error(f"--sizes must start with the image size {data.train_images.shape[1]}, "
                     f"got {args.sizes[0]}")
    if args.sizes[-1] < 10:
        parser.error(f"--sizes must end with at least 10 outputs (one per class), got "
                     f"{args.sizes[-1]}")

    threads = args.threads or machine.cpu_count()
    print(f"Machine: {machine.describe()}")
    print(f"This core: {cold_calls()}")
    print(f"Dataset: {data.dataset}, {len(data.train_images)} train and "
          f"{len(data.test_images)} test images")
    architecture = describe(build_model(args.model, args.sizes))
    layers = f"{args.model.upper()} {architecture}"
    print(f"Model: {layers}; {plan.optimizer} lr "
          f"{plan.lr:g} ({plan.schedule})"
          + (f" momentum {plan.momentum:g}" if plan.optimizer == "sgd" else "")
          + f"; batch {plan.batch_size}, {plan.epochs} epoch{'s' * (plan.epochs > 1)}, "
          f"seed {plan.seed}, {threads} thread{'s' * (threads > 1)} for the threaded rungs, "
          "NumPy and PyTorch; element-wise work "
          + ("in NumPy (--no-fused)" if args.no_fused else "in the fused C kernels"),
          flush=True)
    if threads > 1 and not seam.openmp_flags():
        print(f"No OpenMP in this build ({seam.compiler_version()}): the threaded rungs run on one "
              f"thread, NumPy and PyTorch on {threads}. {seam.OPENMP_HINT}", flush=True)

    histories = train_backends(
        backends, data, sizes=args.sizes, model=args.model, compare_torch=args.compare_torch,
        naive_batches=args.naive_batches if len(backends) > 1 else None,
        epochs=plan.epochs, batch_size=plan.batch_size, optimizer=plan.optimizer, lr=plan.lr,
        momentum=plan.momentum, schedule=plan.schedule, seed=plan.seed, threads=threads,
        max_batches=plan.max_batches, progress=not args.no_progress, fused=not args.no_fused)
    interrupted = any(h.interrupted for h in histories)
    print()
    if interrupted:
        print("Interrupted (Ctrl-C): what was measured so far:")
    print(format_summary(histories))
    if args.json is not None:
        with atomic_write(args.json, "w") as file:
            document = {"model": args.model, "architecture": architecture,
                        **results_document(histories, data)}
            json.dump(document, file, indent=2)
        print(f"Saved {args.json}")
    return 130 if interrupted else 0
