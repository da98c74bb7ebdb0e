"""The model of the training run: an MLP of ``krypton.nn.Linear`` layers with ReLU between them.

Every backend (and PyTorch's twin, ``krypton.train.twin``) starts from the same weights:
``build_mlp(sizes, seed)`` seeds the generator ``nn.Linear`` draws from, so two models built
with the same arguments are identical.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from krypton import nn
from krypton.checks import positive_int

DEFAULT_SIZES = (784, 256, 10)
"""Layer widths, input first: 784 pixels, one hidden layer of 256, 10 classes."""


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
