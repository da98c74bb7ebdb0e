"""The engine of autograd: gradient mode, the order of the graph, and ``backward``.

This is the part of the engine a learner reads in one sitting; the operations that build the
graph (``krypton.autograd.ops`` and ``krypton.autograd.functions``) only ever do two things
it relies on. Each result of an operation on tensors that require gradients remembers its
inputs (``_parents``) and a function (``_backward``) that turns the gradient of the result into
gradients of the inputs. ``backward`` then sorts the graph so that every node comes after its
inputs, and walks it once from the end, calling each node's ``_backward`` and adding up the
gradients that reach each input. Leaves (tensors the user made, e.g. weights) keep theirs in
``.grad``.

The engine knows nodes only by those attributes (``_parents``, ``_backward``, ``_op``,
``requires_grad``, ``is_leaf``, ``_accumulate``), so it does not import the Tensor class.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------
# Gradient mode: `with no_grad():` turns graph recording off, per thread (as in PyTorch).

class _Mode(threading.local):
    def __init__(self) -> None:  # runs once in each thread: every thread starts recording
        self.enabled = True


_mode = _Mode()


def is_grad_enabled() -> bool:
    """False inside ``with krypton.no_grad():`` (in this thread), True otherwise."""
    return _mode.enabled


class _GradMode:
    _enabled = True

    def __enter__(self) -> None:
        self._previous = is_grad_enabled()
        _mode.enabled = self._enabled

    def __exit__(self, *exc_info: Any) -> None:
        _mode.enabled = self._previous


class no_grad(_GradMode):
    """``with krypton.no_grad(): ...`` computes without recording a graph (evaluation, updates)."""

    _enabled = False


class enable_grad(_GradMode):
    """Turn recording back on inside a ``no_grad`` block."""

    _enabled = True


# --------------------------------------------------------------------------------------------
# The walk


def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
    """Compute the gradient of this tensor with respect to every leaf that requires one.

    The gradients are *added* to each leaf's ``.grad`` (so they accumulate across calls,
    as in PyTorch, until an optimizer's ``zero_grad``). The graph is freed afterwards
    unless ``retain_graph=True``. (``Tensor.backward`` is this function.)

    Args:
        gradient: d(something)/d(this tensor), same shape. Needed unless this tensor holds
            a single element (a loss), where it defaults to 1.
    """
    if not self.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require grad: no input of "
                           "the computation had requires_grad=True (or it ran under "
                           "no_grad())")
    if gradient is None:
        if self.data.size != 1:
            raise RuntimeError(
                f"backward() without a gradient works only on a one-element tensor (a "
                f"loss); this one has shape {self.shape}. Pass the gradient of what you "
                f"differentiate, e.g. y.backward(np.ones({self.shape}))")
        seed = np.ones_like(self.data)
    else:
        seed = _seed(gradient, self.dtype)
        if seed.shape != self.shape:
            raise ValueError(f"gradient has shape {seed.shape} but the tensor has shape "
                             f"{self.shape}; they must match")
    grads: dict[int, np.ndarray] = {id(self): seed}
    for node in reversed(topological_order(self)):
        grad = grads.pop(id(node), None)
        if grad is None:
            continue
        if node.is_leaf or node._retains_grad:
            node._accumulate(grad)
        if node.is_leaf:
            continue
        if node._backward is None:
            raise RuntimeError(
                f"trying to backward through the graph a second time (through a "
                f"{node._op}): its saved values were freed by the first backward(). "
                f"Recompute the forward pass, or call backward(retain_graph=True) the "
                f"first time")
        for parent, parent_grad in zip(node._parents, node._backward(grad)):
            if parent_grad is None or not parent.requires_grad:
                continue
            if parent_grad.shape != parent.shape:
                raise RuntimeError(
                    f"the backward of {node._op} returned a gradient of shape "
                    f"{parent_grad.shape} for an input of shape {parent.shape}; a gradient "
                    f"must have its input's shape")
            key = id(parent)
            grads[key] = grads[key] + parent_grad if key in grads else parent_grad
        if not retain_graph:
            node._backward = None  # frees what the closure saved (inputs, masks)


def _seed(gradient: Any, dtype: np.dtype) -> np.ndarray:
    values = np.asarray(getattr(gradient, "data", gradient))
    if values.dtype.kind not in "biuf":
        raise TypeError(f"gradient must hold numbers, got {type(gradient).__name__} with dtype "
                        f"{values.dtype}")
    return values.astype(dtype, copy=False)


def topological_order(root: Any) -> list[Any]:
    """Every node that needs a gradient, each after all of its inputs (an iterative DFS, so a
    graph thousands of operations deep does not hit Python's recursion limit)."""
    order: list[Any] = []
    seen: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for parent in node._parents:
            if parent.requires_grad and id(parent) not in seen:
                stack.append((parent, False))
    return order


def graph(root: Any) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """The nodes of ``root``'s graph (inputs first) and its edges (input, output): to draw it."""
    nodes = topological_order(root)
    edges = [(parent, node) for node in nodes for parent in node._parents if parent.requires_grad]
    return nodes, edges
