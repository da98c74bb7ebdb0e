"""The models of the training run: an MLP of ``krypton.nn.Linear`` layers with ReLU between
them, or a LeNet-style CNN (``build_cnn``) whose convolutions are matrix products too.

Every backend (and PyTorch's twin, ``krypton.train.twin``) starts from the same weights:
``build_mlp(sizes, seed)`` and ``build_cnn(seed)`` seed the generator the layers draw from, so
two models built with the same arguments are identical. ``product_shapes`` lists the matrix
products one training step of a model makes, with their FLOPs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from krypton import nn
from krypton.autograd import Tensor
from krypton.autograd.conv import output_size
from krypton.checks import positive_int
from krypton.timing import shape_label

DEFAULT_SIZES = (784, 256, 10)
"""Layer widths, input first: 784 pixels, one hidden layer of 256, 10 classes."""

MODELS = ("mlp", "cnn")
"""The models ``build_model`` makes (``python -m krypton.train --model``)."""

IMAGE_SHAPE = (1, 28, 28)
"""(channels, height, width) of an (Fashion-)MNIST image; the data holds them flat (784)."""


def build_mlp(sizes: Sequence[int] = DEFAULT_SIZES, seed: int = 0) -> nn.Sequential:
    """A ``krypton.nn.Sequential`` of Linear layers with ReLU between them.

    Layer ``i`` maps ``sizes[i]`` inputs to ``sizes[i + 1]`` outputs, initialised as PyTorch's
    ``nn.Linear`` is by default (uniform in +-1/sqrt(fan_in)), after ``krypton.manual_seed(seed)``:
    the weights depend only on ``sizes`` and ``seed``. (Like ``torch.manual_seed``, this seeds
    the generator every later ``nn.Linear`` draws from.)
    """
    _check_sizes(sizes)
    nn.manual_seed(seed)
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if index:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(int(fan_in), int(fan_out)))
    return nn.Sequential(*layers)


def build_cnn(seed: int = 0, classes: int = 10) -> nn.Sequential:
    """A LeNet-style CNN for (N, 784) images: unflatten to (N, 1, 28, 28), conv 1->16 3x3
    (padding 1), ReLU, max-pool 2, conv 16->32 3x3 (padding 1), ReLU, max-pool 2, flatten
    (32·7·7 = 1568), Linear 1568->128, ReLU, Linear 128->``classes``.

    Initialised as PyTorch's layers are by default, after ``krypton.manual_seed(seed)``.
    Why these widths: LeNet-5's 6 and 16 channels of 5x5 stop near 89% on Fashion-MNIST after 5
    epochs; 16 and 32 channels of 3x3 pass 90.5% with the default SGD schedule (PyTorch probes
    of both, 5 epochs, seed 0), for about 4x LeNet's convolution FLOPs (``product_shapes``).
    """
    nn.manual_seed(seed)
    return nn.Sequential(
        nn.Unflatten(1, IMAGE_SHAPE),
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, positive_int("classes", classes)))


def describe(model: nn.Sequential) -> str:
    """The layers of ``model`` in one line, e.g. "conv 1->16 3x3 pad 1, relu, max-pool 2, ...,
    linear 128->10" (what ``--json`` and the CLI's "Model:" line name)."""
    parts = []
    for layer in model:
        if isinstance(layer, nn.Conv2d):
            (kh, kw), (sh, _), (ph, _) = layer.kernel_size, layer.stride, layer.padding
            parts.append(f"conv {layer.in_channels}->{layer.out_channels} {kh}x{kw}"
                         + (f" stride {sh}" if sh != 1 else "") + (f" pad {ph}" if ph else ""))
        elif isinstance(layer, nn.Linear):
            parts.append(f"linear {layer.in_features}->{layer.out_features}")
        elif isinstance(layer, nn.MaxPool2d):
            parts.append(f"max-pool {layer.kernel_size[0]}")
        elif not isinstance(layer, (nn.Flatten, nn.Unflatten)):
            parts.append(type(layer).__name__.lower())
    return ", ".join(parts)


def build_model(model: str = "mlp", sizes: Sequence[int] = DEFAULT_SIZES,
                seed: int = 0) -> nn.Sequential:
    """``build_mlp(sizes, seed)`` for "mlp", ``build_cnn(seed, classes=sizes[-1])`` for "cnn"."""
    if model == "mlp":
        return build_mlp(sizes, seed)
    if model == "cnn":
        return build_cnn(seed, classes=sizes[-1])
    raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")


def product_shapes(model: nn.Sequential, batch: int,
                   input_shape: Sequence[int] = (784,)) -> list[dict]:
    """The matrix products one training step of ``model`` makes on a batch, in order.

    One dict per product: ``layer`` (its index in the Sequential), ``kind`` ("conv" or
    "linear"), ``product`` ("forward", "dW" or "dX"; the first layer's dX is not computed, its
    input needs no gradient), ``m``, ``k``, ``n`` (an (M, K) @ (K, N) product), ``layout``
    (which operands are transposed views, as ``krypton.timing.LAYOUTS`` writes it: a Linear's
    forward is ``x @ W.T``, "nt") and ``flops`` (2·M·K·N). ``shape`` is the product as
    ``python -m krypton.bench --shapes`` takes it. A convolution's products are those of
    ``krypton.autograd.conv``: forward W @ cols, dWᵀ = cols @ dYᵀ (dW computed as its
    transpose), dcols = Wᵀ @ dY.
    """
    shape = (positive_int("batch", batch),) + tuple(input_shape)
    products: list[dict] = []

    def add(index: int, kind: str, product: str, m: int, k: int, n: int, layout: str) -> None:
        products.append({"layer": index, "kind": kind, "product": product, "m": m, "k": k,
                         "n": n, "layout": layout, "shape": shape_label(m, n, k, layout),
                         "flops": 2 * m * k * n})

    for index, layer in enumerate(model):
        first = not products
        if isinstance(layer, nn.Conv2d):
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
            ho = output_size(shape[2], kh, sh, ph)
            wo = output_size(shape[3], kw, sw, pw)
            patch, columns = layer.in_channels * kh * kw, shape[0] * ho * wo
            add(index, "conv", "forward", layer.out_channels, patch, columns, "nn")
            add(index, "conv", "dW", patch, columns, layer.out_channels, "nt")  # as dWᵀ
            if not first:
                add(index, "conv", "dX", patch, layer.out_channels, columns, "tn")
            shape = (shape[0], layer.out_channels, ho, wo)
        elif isinstance(layer, nn.Linear):
            rows = int(np.prod(shape[:-1]))
            add(index, "linear", "forward", rows, layer.in_features, layer.out_features, "nt")
            add(index, "linear", "dW", layer.out_features, rows, layer.in_features, "tn")
            if not first:
                add(index, "linear", "dX", rows, layer.out_features, layer.in_features, "nn")
            shape = shape[:-1] + (layer.out_features,)
        elif isinstance(layer, nn.MaxPool2d):
            (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
            shape = shape[:2] + (output_size(shape[2], kh, sh, 0),
                                 output_size(shape[3], kw, sw, 0))
        elif isinstance(layer, (nn.Flatten, nn.Unflatten)):
            shape = shape[:1] + layer(Tensor(np.zeros((1,) + shape[1:], np.float32))).shape[1:]
    return products


def initial_parameters(sizes: Sequence[int] = DEFAULT_SIZES,
                       seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (weight, bias) of each layer of ``build_mlp(sizes, seed)``, as float32 arrays."""
    return [(layer.weight.data, layer.bias.data)
            for layer in linear_layers(build_mlp(sizes, seed))]


def linear_layers(model: nn.Sequential) -> list[nn.Linear]:
    """The ``Linear`` layers of a Sequential MLP, in order."""
    return [layer for layer in model if isinstance(layer, nn.Linear)]


def sizes_of(model: nn.Sequential) -> list[int]:
    """The layer widths of an MLP, input first (``[]`` for a model without Linear layers)."""
    layers = linear_layers(model)
    if not layers:
        return []
    return [layers[0].in_features] + [layer.out_features for layer in layers]


def _check_sizes(sizes: Sequence[int]) -> None:
    if isinstance(sizes, (str, bytes)) or len(sizes) < 2:
        raise ValueError(f"sizes must be at least two positive layer widths, e.g. (784, 256, 10); "
                         f"got {sizes!r}")
    for index, size in enumerate(sizes):
        positive_int(f"sizes[{index}]", size)
