"""The fused operations of a network layer and its loss: ``linear``, ``linear_relu`` and
``cross_entropy``.

Each is one node of the graph instead of several, so its backward produces every gradient in
the layout it is stored in and with the closed-form formula (``krypton.nn.functional`` exposes
them under PyTorch's names). Their element-wise work (bias add and ReLU, softmax and the loss)
runs in the fused C kernels of ``krypton.fused`` when the backend uses them
(``krypton.backends.uses_fused``), in NumPy otherwise: the same formulas either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from krypton import backends, fused
from krypton.autograd.ops import Tensor, _fusable, _log_softmax, _same_dtype


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` as one graph node: the layer ``nn.Linear`` computes.

    ``weight`` is (out_features, in_features) as in PyTorch. Fusing the three operations into one
    node lets the backward pass produce each gradient in the layout it is stored in, with no
    transposed copies: for Y = X Wᵀ + b,
        dX = dY W        (N, out) @ (out, in)
        dW = dYᵀ X       (out, N) @ (N, in): dYᵀ is a view, the kernel reads it in place
        db = sum of dY over the batch
    """
    if not _checked_linear(x, weight, bias, "linear"):  # e.g. a 1-D sample: the general ops
        y = x @ weight.T
        return y if bias is None else y + bias
    out = backends.matmul(x.data, weight.data.T)
    if bias is not None:
        out += bias.data
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray):
        gx = backends.matmul(g, weight.data) if x.requires_grad else None
        gw = backends.matmul(g.T, x.data) if weight.requires_grad else None
        gb = g.sum(axis=0) if bias is not None and bias.requires_grad else None
        return gx, _hand_over(weight, gw), _hand_over(bias, gb)

    return Tensor._result(out, parents, "Linear", backward)


def linear_relu(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``relu(x @ weight.T + bias)`` as one graph node: a ``Linear`` then a ``ReLU``.

    ``nn.Sequential`` calls it for every Linear followed by a ReLU. The bias add and the ReLU
    are one pass, in place over the fresh product; the backward masks the gradient and sums
    it for the bias in one pass too, for Y = relu(Z), Z = X Wᵀ + b:
        dZ = dY * (Y > 0);   dX = dZ W;   dW = dZᵀ X;   db = sum of dZ over the batch
    """
    if not _checked_linear(x, weight, bias, "linear_relu") or not _fusable(x.data):
        return linear(x, weight, bias).relu()  # the NumPy reference: two nodes
    out = backends.matmul(x.data, weight.data.T)
    fused.bias_relu(out, None if bias is None else bias.data, out=out)  # in place
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray):
        want_bias = bias is not None and bias.requires_grad
        gz, gb = fused.bias_relu_backward(g, out, with_bias=want_bias)
        gx = backends.matmul(gz, weight.data) if x.requires_grad else None
        gw = backends.matmul(gz.T, x.data) if weight.requires_grad else None
        return gx, _hand_over(weight, gw), _hand_over(bias, gb)

    return Tensor._result(out, parents, "LinearReLU", backward)


def _hand_over(parameter: Tensor | None, grad: np.ndarray | None) -> np.ndarray | None:
    """Give a leaf (a weight, a bias) the gradient array just computed for it, without a copy.

    The engine copies the first gradient a leaf receives, since an array may reach several
    tensors or be a view; the arrays this module's backward passes make are new and go to one
    input only, so a leaf with no gradient yet takes one as its ``.grad`` directly (a weight's
    gradient is the largest array of the step). The engine then gets ``None``: nothing more to
    add. A leaf that already has a gradient gets this one added by the engine, in place.
    """
    if grad is None or not parameter.is_leaf or parameter.grad is not None:
        return grad
    parameter.grad = Tensor(grad)
    return None


def _checked_linear(x: Tensor, weight: Tensor, bias: Tensor | None, name: str) -> bool:
    """Refuse what ``linear`` cannot compute; False for the shapes the general ops handle."""
    for label, value in (("x", x), ("weight", weight), ("bias", bias)):
        if not isinstance(value, Tensor) and not (label == "bias" and value is None):
            raise TypeError(f"{name} takes Tensors, but {label} is a {type(value).__name__}: "
                            f"wrap it as krypton.Tensor({label})")
    if x.ndim != 2 or weight.ndim != 2:
        return False
    _same_dtype(x, weight, name)
    if bias is not None:
        _same_dtype(x, bias, name)
        if bias.shape != weight.shape[:1]:
            raise ValueError(f"{name}: bias of shape {bias.shape} does not match the weight "
                             f"of shape {weight.shape}; it must be ({weight.shape[0]},)")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"{name}: input of shape {x.shape} has {x.shape[1]} features but the "
                         f"weight of shape {weight.shape} expects {weight.shape[1]}")
    return True


def cross_entropy(logits: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """The cross-entropy between ``logits`` (N, C) and class indices ``target`` (N,).

    Fused and numerically stable: the log-softmax is computed as ``z - max(z) - log(sum(exp(z -
    max(z))))``, which never overflows, so logits of 1e30 or -1e30 give finite losses; and the
    gradient is the closed form ``softmax(z) - onehot(target)``, divided by N for the mean.
    """
    if not isinstance(logits, Tensor):
        raise TypeError(f"cross_entropy takes logits as a Tensor, got {type(logits).__name__}")
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy takes logits of shape (N, C), got shape {logits.shape}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    labels = _class_indices(target, logits.shape)
    n = logits.shape[0]
    scale = (1.0 / n if n else 0.0) if reduction == "mean" else 1.0
    if n and _fusable(logits.data):
        return _fused_cross_entropy(logits, labels, reduction, scale)
    _check_classes(labels, logits.shape[1])
    log_probs = _log_softmax(logits.data, axis=1)
    picked = -log_probs[np.arange(n), labels]
    loss = picked if reduction == "none" else np.asarray(picked.sum() * scale,
                                                         dtype=logits.dtype)

    def backward(g: np.ndarray):
        grad = np.exp(log_probs)
        grad[np.arange(n), labels] -= 1
        if reduction == "none":
            return (grad * g[:, None],)
        return (grad * (g * scale),)

    return Tensor._result(loss, (logits,), "CrossEntropy", backward)


def _fused_cross_entropy(logits: Tensor, labels: np.ndarray, reduction: str,
                         scale: float) -> Tensor:
    """``cross_entropy`` through csrc/fused.c: the softmax, saved by the forward pass, is what
    the backward needs (``softmax - onehot``), so neither pass recomputes an exponential."""
    try:
        losses, probs = fused.softmax_cross_entropy(logits.data, labels)
    except ValueError:  # C checks the classes' range as it reads them: name the culprit here
        _check_classes(labels, logits.shape[1])
        raise
    loss = losses if reduction == "none" else np.asarray(losses.sum() * scale,
                                                         dtype=logits.dtype)

    def backward(g: np.ndarray):
        factor = g if reduction == "none" else g * scale
        return (fused.softmax_cross_entropy_backward(probs, labels, factor),)

    return Tensor._result(loss, (logits,), "CrossEntropy", backward)


def _class_indices(target: Any, logits_shape: tuple[int, ...]) -> np.ndarray:
    """``target`` as int64 class indices, one per row of logits (their range is checked by
    ``_check_classes``, or by the fused C kernel as it reads them)."""
    labels = np.asarray(target.data if isinstance(target, Tensor) else target)
    n = logits_shape[0]
    if labels.shape != (n,):
        raise ValueError(f"target must hold one class index per row of logits, shape ({n},); "
                         f"got shape {labels.shape}")
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f"
                                               and np.all(labels == np.round(labels))):
        raise TypeError(f"target must hold integer class indices, got dtype {labels.dtype}")
    if labels.dtype == np.uint64:  # above 2**63 it would wrap to a negative int64
        _check_classes(labels, logits_shape[1])
    return np.ascontiguousarray(labels, dtype=np.int64)


def _check_classes(labels: np.ndarray, classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise ValueError(f"target holds class {bad}, out of range for {classes} classes "
                         f"(0 to {classes - 1})")
