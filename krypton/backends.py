"""Which kernel computes the matrix products of the autograd engine.

Every ``@`` between Tensors, in the forward pass and in the backward pass (dA = dY·Bᵀ and
dB = Aᵀ·dY), ends in one call of ``matmul`` below, which hands the two NumPy arrays to the
current backend: a rung of the kernel ladder (``krypton.KERNELS``) or ``"numpy"`` (``np.matmul``,
that is the BLAS NumPy ships). Because everything goes through this one function, swapping the
backend swaps the kernel of a whole training run, and timing this function (as
``krypton.train.matmul_timer`` does) tells how much of a training step is matrix products.

    krypton.set_backend("packed")          # from now on, in every thread without its own choice
    with krypton.backend("naive"):         # only inside the block, only in this thread
        loss.backward()

The default backend is the top rung, ``"small"``. The kernels compute in float32; float64
tensors (used to check gradients against finite differences) always multiply with NumPy.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import numpy as np

from krypton import kernels
from krypton.kernels import KERNELS

BACKENDS = KERNELS + ("numpy",)
"""Every backend name: the rungs of the ladder, then "numpy"."""

DEFAULT = KERNELS[-1]

_default: tuple[str, dict[str, Any]] = (DEFAULT, {})
_local = threading.local()  # a stack of (name, knobs) pushed by `with backend(...)`, per thread


def _validated(name: str, knobs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "numpy":
        if knobs:
            raise ValueError(f"the numpy backend takes no knobs, got {sorted(knobs)}: set NumPy's "
                             "BLAS threads with threadpoolctl instead")
        return name, {}
    # One tiny product compiles the kernel now and checks the knobs, so that a mistake shows up
    # here and not in the middle of a training step.
    one = np.ones((1, 1), dtype=np.float32)
    kernels.matmul(one, one, kernel=name, **knobs)
    return name, dict(knobs)


def set_backend(name: str, **knobs: Any) -> None:
    """Make ``name`` (a rung or "numpy") the backend of every thread that has not chosen its own.

    ``knobs`` go to every call of the kernel, e.g. ``set_backend("parallel", threads=1)`` or
    ``set_backend("packed", kc=256)``. Raises ValueError for an unknown name or knob.
    """
    global _default
    _default = _validated(name, knobs)


def get_backend() -> str:
    """The name of the backend ``@`` uses in this thread right now."""
    return _current()[0]


@contextlib.contextmanager
def backend(name: str, **knobs: Any) -> Iterator[str]:
    """Use backend ``name`` (with ``knobs``) inside a ``with`` block, in this thread only."""
    choice = _validated(name, knobs)
    stack = _stack()
    stack.append(choice)
    try:
        yield name
    finally:
        stack.pop()


def _stack() -> list[tuple[str, dict[str, Any]]]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _current() -> tuple[str, dict[str, Any]]:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else _default


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for two 2-D arrays of one float dtype, computed by the current backend.

    Views (``w.T``, slices, even the zero strides of ``np.broadcast_to``) are handed to the
    kernels as they are: the kernels read any strides, so a transposed weight is never copied.
    """
    name, knobs = _current()
    if name == "numpy" or a.dtype != np.float32:
        return np.matmul(a, b)
    return kernels.matmul(a, b, kernel=name, **knobs)

