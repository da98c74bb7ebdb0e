"""Functions of tensors used to build networks, with PyTorch's names (``import krypton.nn.functional as F``).

Each one is the Tensor operation of the same name in ``krypton.autograd`` (where the forward and
backward formulas live), or a thin wrapper over it. ``linear(x, weight, bias)`` is ``x @ weight.T
+ bias`` as one fused node, with weight (out_features, in_features) as in PyTorch.
"""

from __future__ import annotations

from typing import Any

from krypton import autograd
from krypton.autograd import Tensor, cross_entropy

__all__ = ["conv2d", "conv2d_relu", "conv2d_relu_pool", "cross_entropy", "linear", "linear_relu", "log_softmax", "max_pool2d",
           "mse_loss", "relu", "sigmoid", "softmax", "tanh"]


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias``, weight (out_features, in_features), as ``F.linear``."""
    return autograd.linear(_tensor(input, "linear"), _tensor(weight, "linear", "weight"),
                           None if bias is None else _tensor(bias, "linear", "bias"))


def linear_relu(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``relu(linear(input, weight, bias))`` as one fused node (krypton's; PyTorch has none):
    what ``nn.Sequential`` runs for a Linear followed by a ReLU."""
    return autograd.linear_relu(_tensor(input, "linear_relu"),
                                _tensor(weight, "linear_relu", "weight"),
                                None if bias is None else _tensor(bias, "linear_relu", "bias"))


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
           padding: Any = 0) -> Tensor:
    """The 2-D convolution of ``input`` (N, C, H, W) with ``weight`` (O, C, kh, kw), as
    ``F.conv2d``: im2col and one product on the current backend (``krypton.autograd.conv``)."""
    return autograd.conv2d(input, weight, bias, stride=stride, padding=padding)


def conv2d_relu(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                padding: Any = 0) -> Tensor:
    """``relu(conv2d(input, weight, bias, stride, padding))`` as one node (krypton's; PyTorch
    has none): what ``nn.Sequential`` runs for a Conv2d followed by a ReLU."""
    return autograd.conv2d_relu(input, weight, bias, stride=stride, padding=padding)


def conv2d_relu_pool(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                     padding: Any = 0, pool_size: Any = 2, pool_stride: Any = None) -> Tensor:
    """``max_pool2d(relu(conv2d(input, weight, bias, stride, padding)), pool_size,
    pool_stride)`` as one node (krypton's; PyTorch has none): what ``nn.Sequential`` runs for a
    Conv2d, a ReLU and a MaxPool2d."""
    return autograd.conv2d_relu_pool(input, weight, bias, stride=stride, padding=padding,
                                     pool_size=pool_size, pool_stride=pool_stride)


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None) -> Tensor:
    """The maximum of each ``kernel_size`` window, windows ``stride`` apart (default
    ``kernel_size``), as ``F.max_pool2d``."""
    return autograd.max_pool2d(input, kernel_size, stride)


def relu(x: Tensor) -> Tensor:
    return _tensor(x, "relu").relu()


def tanh(x: Tensor) -> Tensor:
    return _tensor(x, "tanh").tanh()


def sigmoid(x: Tensor) -> Tensor:
    return _tensor(x, "sigmoid").sigmoid()


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    return _tensor(x, "softmax").softmax(axis=dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    return _tensor(x, "log_softmax").log_softmax(axis=dim)


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or sum) of squared differences, as ``torch.nn.functional.mse_loss``."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    diff = _tensor(input, "mse_loss") - target
    if diff.shape != input.shape:
        raise ValueError(f"mse_loss: target of shape {diff.shape} does not match input of shape "
                         f"{input.shape}")
    squared = diff * diff
    return squared.mean() if reduction == "mean" else squared.sum()


def _tensor(x: Any, name: str, argument: str = "input") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: the {argument} must be a Tensor, got {type(x).__name__}: "
                        f"wrap it as krypton.Tensor(x)")
    return x
