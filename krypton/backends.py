"""Which kernel computes the matrix products of the autograd engine.

Every ``@`` between Tensors, in the forward pass and in the backward pass (dA = dY·Bᵀ and
dB = Aᵀ·dY), ends in one call of ``matmul`` below, which hands the two NumPy arrays to the
current backend: a rung of the kernel ladder (``krypton.KERNELS``) or ``"numpy"`` (``np.matmul``,
that is the BLAS NumPy ships). Because everything goes through this one function, swapping the
backend swaps the kernel of a whole training run, and timing this function tells how much of a
training step is matrix products: ``with krypton.backends.matmul_clock() as clock: ...`` counts
the seconds and calls of every product inside the block (``krypton.train`` splits its epochs
with it).

    krypton.set_backend("packed")          # from now on, in every thread without its own choice
    with krypton.backend("naive"):         # only inside the block, only in this thread
        loss.backward()

The default backend is the top rung, ``"small"``. The kernels compute in float32; float64
tensors (used to check gradients against finite differences) always multiply with NumPy.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator

import numpy as np

from krypton import kernels, machine
from krypton.kernels import KERNELS
from krypton.timing import Stopwatch

BACKENDS = KERNELS + ("numpy",)
"""Every backend name: the rungs of the ladder, then "numpy"."""

DEFAULT = KERNELS[-1]
_FLOAT32 = np.dtype(np.float32)

_default: tuple[str, dict[str, Any]] = (DEFAULT, {})


class _ThreadChoices(threading.local):
    """What one thread chose with ``with backend(...)`` and ``with fused_kernels(...)``.

    Set in ``__init__`` (which runs once in each thread that looks) rather than read with a
    default by ``getattr``: a missing attribute raises and catches an AttributeError, which
    costs more than the rest of a small product's Python (measure: time ``_current()`` both
    ways)."""

    def __init__(self) -> None:
        self.stack: list[tuple[str, dict[str, Any]]] = []  # pushed by `with backend(...)`
        self.fused: bool | None = None  # None: follow set_fused_kernels


_local = _ThreadChoices()


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
    stack = _local.stack
    stack.append(choice)
    try:
        yield name
    finally:
        stack.pop()


def _current() -> tuple[str, dict[str, Any]]:
    stack = _local.stack
    return stack[-1] if stack else _default


_clocks: list[Stopwatch] = []  # the matmul_clock blocks open now, in any thread
_clocks_lock = threading.Lock()


@contextlib.contextmanager
def matmul_clock() -> Iterator[Stopwatch]:
    """Time every product ``matmul`` computes inside the block, in every thread.

    The stopwatch's ``seconds`` and ``calls`` count the products that ran while the block was
    open (forward and backward alike). Blocks may nest or overlap: each gets every product.
    """
    clock = Stopwatch()
    with _clocks_lock:
        _clocks.append(clock)
    try:
        yield clock
    finally:
        with _clocks_lock:
            _clocks.remove(clock)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for two 2-D arrays of one float dtype, computed by the current backend.

    Views (``w.T``, slices, even the zero strides of ``np.broadcast_to``) are handed to the
    kernels as they are: the kernels read any strides, so a transposed weight is never copied.
    """
    if not _clocks:
        return _compute(a, b)
    start = time.perf_counter()
    try:
        return _compute(a, b)
    finally:
        elapsed = time.perf_counter() - start
        for clock in list(_clocks):
            clock.add(elapsed)


def _compute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # A training step makes a few products of a few microseconds each, so the way to the
    # kernel is kept short: with no knobs but a thread count (krypton.train's backend(name,
    # threads=t)), the compiled kernel itself; kernels.matmul would take keyword arguments
    # apart and look the kernel up again.
    name, knobs = _current()
    if name == "numpy" or a.dtype is not _FLOAT32:   # a float32 dtype of another byte order
        return np.matmul(a, b)                       # is not NumPy's one native float32
    if not knobs or (len(knobs) == 1 and "threads" in knobs):
        return kernels.default_kernel(name)(a, b, knobs.get("threads"))
    return kernels.matmul(a, b, kernel=name, **knobs)



# --------------------------------------------------------------------------------------------
# The fused element-wise kernels (krypton.fused) follow the backend: every rung runs the C
# versions, "numpy" their NumPy references. `with fused_kernels(False):` turns the C ones off
# under any backend, to measure what they buy.

_fused_default = True


def set_fused_kernels(enabled: bool) -> None:
    """Use the fused C kernels (True, the default) or their NumPy references, in every thread
    that has not chosen with ``fused_kernels``."""
    global _fused_default
    _fused_default = _flag(enabled)


@contextlib.contextmanager
def fused_kernels(enabled: bool) -> Iterator[bool]:
    """Use the fused C kernels, or not, inside a ``with`` block, in this thread only."""
    previous = _local.fused
    _local.fused = _flag(enabled)
    try:
        yield _local.fused
    finally:
        _local.fused = previous


def uses_fused() -> bool:
    """True when this thread's element-wise work runs in C: fusion on and a backend not "numpy"."""
    chosen = _local.fused
    return (_fused_default if chosen is None else chosen) and _current()[0] != "numpy"


def kernel_threads() -> int:
    """Threads this thread's backend computes on: the ``threads`` knob of a threaded rung
    (default all cores), 1 for the single-threaded rungs and for "numpy" (the fused updates
    split a large parameter over this many threads, as the products do)."""
    name, knobs = _current()
    if name == "numpy" or not kernels.SPECS[name].threaded:
        return 1
    threads = knobs.get("threads")
    return machine.cpu_count() if threads is None else int(threads)


def _flag(enabled: bool) -> bool:
    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"expected True or False, got {enabled!r}")
    return bool(enabled)
