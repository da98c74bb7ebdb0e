"""A define-by-run autograd engine: ``Tensor``, its operations and ``backward``.

Read it in one sitting, top to bottom:

1. A ``Tensor`` wraps a NumPy array (``.data``, float32 or float64). When an operation runs on
   tensors that require gradients, its result remembers the inputs (``_parents``) and a small
   function (``_backward``) that turns the gradient of the result into gradients of the inputs:
   the chain rule, one operation at a time. That record of operations *is* the graph; it is
   built as the Python code runs ("define by run"), so loops and ifs just work.
2. ``loss.backward()`` sorts the graph so that every node comes before its inputs, then walks it
   once, calling each node's ``_backward`` and adding up the gradients that reach each input.
   Leaves (tensors made by the user, e.g. weights) keep theirs in ``.grad``.
3. Matrix products go through ``krypton.backends.matmul``: forward and both backward products run
   on the kernel ladder.

Names and semantics follow PyTorch (``requires_grad``, ``.grad``, ``.backward()``, ``no_grad``,
``.detach()``, ``.item()``), so what is learned here transfers.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np

from krypton import backends

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# --------------------------------------------------------------------------------------------
# Gradient mode: `with no_grad():` turns graph recording off, per thread (as in PyTorch).

_mode = threading.local()


def is_grad_enabled() -> bool:
    """False inside ``with krypton.no_grad():`` (in this thread), True otherwise."""
    return getattr(_mode, "enabled", True)


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
# The Tensor


class Tensor:
    """An n-dimensional array that can record the operations made on it.

    Args:
        data: a NumPy array, a nested list or a number. Float32 and float64 arrays are used as
            they are (no copy: the tensor shares the array's memory, like ``torch.from_numpy``);
            anything else numeric becomes float32 unless ``dtype`` says otherwise.
        requires_grad: record operations on this tensor so ``backward`` can reach it.
        dtype: ``np.float32`` (the default) or ``np.float64``.
    """

    __slots__ = ("data", "requires_grad", "grad", "_parents", "_backward", "_op",
                 "_retains_grad", "__weakref__")
    __array_priority__ = 1000  # ndarray + Tensor calls Tensor.__radd__, not NumPy's add

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None):
        self.data = _as_float_array(data, dtype)
        self.requires_grad = bool(requires_grad)
        self.grad: Tensor | None = None
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Callable[[np.ndarray], Sequence[np.ndarray | None]] | None = None
        self._op = ""  # "" for a leaf; the operation's name for a computed tensor
        self._retains_grad = False

    @classmethod
    def _result(cls, data: np.ndarray, parents: tuple[Tensor, ...], op: str,
                backward: Callable[[np.ndarray], Sequence[np.ndarray | None]]) -> Tensor:
        """The output of an operation: a graph node if any input needs a gradient."""
        out = cls.__new__(cls)
        out.data = data
        out.grad = None
        out._retains_grad = False
        if is_grad_enabled() and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = parents
            out._backward = backward
            out._op = op
        else:
            out.requires_grad = False
            out._parents = ()
            out._backward = None
            out._op = ""
        return out

    # ---- what a tensor is -----------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def is_leaf(self) -> bool:
        """True for tensors the user made (weights, inputs); False for results of operations."""
        return not self._op

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(", precision=4)
        extras = "" if self.dtype == np.float32 else f", dtype={self.dtype}"
        if self._op:
            extras += f", grad_fn=<{self._op}>"
        elif self.requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({body}{extras})"

    def numpy(self) -> np.ndarray:
        """The underlying NumPy array (shared, not copied)."""
        return self.data

    def item(self) -> float:
        """The value of a one-element tensor as a Python float."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape "
                             f"{self.shape} ({self.data.size} elements)")
        return float(self.data.reshape(()))

    def detach(self) -> Tensor:
        """The same data, cut from the graph (no gradient flows back through it)."""
        return Tensor(self.data)

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this computed (non-leaf) tensor after ``backward``, to look at it."""
        self._retains_grad = True

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if self._op and not requires_grad:
            raise RuntimeError("requires_grad can only be turned off on a leaf tensor; use "
                               ".detach() to cut a computed tensor from the graph")
        self.requires_grad = bool(requires_grad)
        return self

    def float(self) -> Tensor:
        """This tensor as float32 (differentiable)."""
        return self._cast(np.float32)

    def double(self) -> Tensor:
        """This tensor as float64 (differentiable)."""
        return self._cast(np.float64)

    def _cast(self, dtype: Any) -> Tensor:
        if self.dtype == dtype:
            return self
        source = self.dtype
        return Tensor._result(self.data.astype(dtype), (self,), "Cast",
                              lambda g: (g.astype(source),))

    # ---- backward -------------------------------------------------------------------------

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Compute the gradient of this tensor with respect to every leaf that requires one.

        The gradients are *added* to each leaf's ``.grad`` (so they accumulate across calls,
        as in PyTorch, until an optimizer's ``zero_grad``). The graph is freed afterwards
        unless ``retain_graph=True``.

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
            seed = _as_float_array(gradient.data if isinstance(gradient, Tensor) else gradient,
                                   self.dtype)
            if seed.shape != self.shape:
                raise ValueError(f"gradient has shape {seed.shape} but the tensor has shape "
                                 f"{self.shape}; they must match")
        grads: dict[int, np.ndarray] = {id(self): seed}
        for node in reversed(_topological_order(self)):
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

    def _accumulate(self, grad: np.ndarray) -> None:
        if self.grad is None:
            # A copy: the same array may reach several tensors (x + x), or be a read-only view.
            self.grad = Tensor(np.array(grad, dtype=self.dtype))
        else:
            self.grad = Tensor(self.grad.data + grad)

    # ---- arithmetic (with NumPy broadcasting; gradients summed back to each input's shape) -

    def __add__(self, other: Any) -> Tensor:
        other = _operand(other, self)
        if other is NotImplemented:
            return other
        a, b = self, other
        return Tensor._result(a.data + b.data, (a, b), "Add",
                              lambda g: (_unbroadcast(g, a.shape) if a.requires_grad else None,
                                         _unbroadcast(g, b.shape) if b.requires_grad else None))

    def __radd__(self, other: Any) -> Tensor:
        return self.__add__(other)

    def __sub__(self, other: Any) -> Tensor:
        other = _operand(other, self)
        if other is NotImplemented:
            return other
        a, b = self, other
        return Tensor._result(a.data - b.data, (a, b), "Sub",
                              lambda g: (_unbroadcast(g, a.shape) if a.requires_grad else None,
                                         _unbroadcast(-g, b.shape) if b.requires_grad else None))

    def __rsub__(self, other: Any) -> Tensor:
        other = _operand(other, self)
        return other if other is NotImplemented else other.__sub__(self)

    def __mul__(self, other: Any) -> Tensor:
        other = _operand(other, self)
        if other is NotImplemented:
            return other
        a, b = self, other
        return Tensor._result(a.data * b.data, (a, b), "Mul",
                              lambda g: (_unbroadcast(g * b.data, a.shape) if a.requires_grad
                                         else None,
                                         _unbroadcast(g * a.data, b.shape) if b.requires_grad
                                         else None))

    def __rmul__(self, other: Any) -> Tensor:
        return self.__mul__(other)

    def __truediv__(self, other: Any) -> Tensor:
        other = _operand(other, self)
        if other is NotImplemented:
            return other
        a, b = self, other

        def backward(g: np.ndarray):
            ga = _unbroadcast(g / b.data, a.shape) if a.requires_grad else None
            gb = (_unbroadcast(-g * a.data / (b.data * b.data), b.shape) if b.requires_grad
                  else None)
            return ga, gb

        return Tensor._result(a.data / b.data, (a, b), "Div", backward)

    def __rtruediv__(self, other: Any) -> Tensor:
        other = _operand(other, self)
        return other if other is NotImplemented else other.__truediv__(self)

    def __neg__(self) -> Tensor:
        return Tensor._result(-self.data, (self,), "Neg", lambda g: (-g,))

    def __pow__(self, exponent: Any) -> Tensor:
        if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float, np.number)):
            raise TypeError(f"Tensor ** takes a number as the exponent, got "
                            f"{type(exponent).__name__}; for x ** y with a tensor y use "
                            f"(y * x.log()).exp()")
        a, p = self, exponent
        return Tensor._result(a.data ** p, (a,), "Pow",
                              lambda g: (g * (p * a.data ** (p - 1)),))

    # ---- matrix product -------------------------------------------------------------------

    def __matmul__(self, other: Any) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        other = _operand(other, self)
        return other if other is NotImplemented else matmul(other, self)

    # ---- reductions -----------------------------------------------------------------------

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Sum over ``axis`` (all axes by default), as ``np.sum``."""
        a = self
        axes = _axes(axis, a.ndim)
        return Tensor._result(np.sum(a.data, axis=axes, keepdims=keepdims), (a,), "Sum",
                              lambda g: (_expand(g, axes, keepdims, a.shape),))

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Mean over ``axis`` (all axes by default), as ``np.mean``."""
        axes = _axes(axis, self.ndim)
        count = int(np.prod([self.shape[i] for i in axes])) if axes else 1
        return self.sum(axis, keepdims) * (1.0 / count if count else np.nan)  # NaN, as np.mean

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Largest value over ``axis``. Where several entries tie for the maximum, they share
        its gradient equally (as ``torch.amax``)."""
        a = self
        axes = _axes(axis, a.ndim)
        if a.data.size == 0:
            raise ValueError(f"max() of an empty tensor (shape {a.shape}) has no value")
        top = np.max(a.data, axis=axes, keepdims=True)

        def backward(g: np.ndarray):
            winners = a.data == top
            share = winners / np.sum(winners, axis=axes, keepdims=True)
            return (_expand(g, axes, keepdims, a.shape) * share,)

        value = top if keepdims else np.squeeze(top, axis=axes)
        return Tensor._result(value, (a,), "Max", backward)

    # ---- element-wise functions -----------------------------------------------------------

    def exp(self) -> Tensor:
        out = np.exp(self.data)
        return Tensor._result(out, (self,), "Exp", lambda g: (g * out,))

    def log(self) -> Tensor:
        a = self
        return Tensor._result(np.log(a.data), (a,), "Log", lambda g: (g / a.data,))

    def relu(self) -> Tensor:
        a = self
        return Tensor._result(np.maximum(a.data, 0), (a,), "ReLU",
                              lambda g: (g * (a.data > 0),))

    def tanh(self) -> Tensor:
        out = np.tanh(self.data)
        return Tensor._result(out, (self,), "Tanh", lambda g: (g * (1 - out * out),))

    def sigmoid(self) -> Tensor:
        # exp of -|x| only: never overflows, for large positive or negative x alike.
        e = np.exp(-np.abs(self.data))
        out = np.where(self.data >= 0, 1 / (1 + e), e / (1 + e)).astype(self.dtype, copy=False)
        return Tensor._result(out, (self,), "Sigmoid", lambda g: (g * out * (1 - out),))

    def softmax(self, axis: int = -1) -> Tensor:
        out = _softmax(self.data, axis)

        def backward(g: np.ndarray):
            return (out * (g - np.sum(g * out, axis=axis, keepdims=True)),)

        return Tensor._result(out, (self,), "Softmax", backward)

    def log_softmax(self, axis: int = -1) -> Tensor:
        out = _log_softmax(self.data, axis)

        def backward(g: np.ndarray):
            return (g - np.exp(out) * np.sum(g, axis=axis, keepdims=True),)

        return Tensor._result(out, (self,), "LogSoftmax", backward)

    # ---- shape ----------------------------------------------------------------------------

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        a = self
        try:
            out = a.data.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {a.shape} ({a.data.size} "
                             f"elements) into shape {tuple(shape)}") from None
        return Tensor._result(out, (a,), "Reshape", lambda g: (g.reshape(a.shape),))

    def transpose(self, *axes: int) -> Tensor:
        """Permute the axes (all reversed by default), as ``np.transpose``. A view: no copy."""
        order = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        order = order or tuple(reversed(range(self.ndim)))
        inverse = tuple(np.argsort(order))
        return Tensor._result(np.transpose(self.data, order), (self,), "Transpose",
                              lambda g: (np.transpose(g, inverse),))

    @property
    def T(self) -> Tensor:
        """The transpose (axes reversed). A view: the kernels read it without a copy."""
        return self.transpose()

    def __getitem__(self, index: Any) -> Tensor:
        a = self
        if isinstance(index, Tensor):
            index = index.data.astype(np.intp)

        def backward(g: np.ndarray):
            full = np.zeros_like(a.data)
            np.add.at(full, index, g)  # add.at: an index that repeats gets every contribution
            return (full,)

        return Tensor._result(a.data[index], (a,), "Index", backward)


# --------------------------------------------------------------------------------------------
# Functions on tensors


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """``krypton.tensor([[1., 2.]], requires_grad=True)``: a new tensor (its own copy of data)."""
    copied = np.array(data.data if isinstance(data, Tensor) else data, copy=True)
    return Tensor(copied, requires_grad=requires_grad, dtype=dtype)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """The matrix product ``a @ b`` of 2-D tensors (1-D operands as in NumPy).

    Forward and backward both run on the current backend (``krypton.set_backend``): the
    gradient of ``C = A @ B`` is ``dA = dC @ B.T`` and ``dB = A.T @ dC``, two more products of
    the same size, handed to the kernel as transposed views (no copy). A gradient nobody needs
    (the input images', say) is not computed at all.
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"matmul takes two Tensors, got {type(a).__name__} and "
                        f"{type(b).__name__}")
    _same_dtype(a, b, "@")
    if a.ndim == 1:
        return matmul(a.reshape(1, -1), b).reshape(b.shape[1:] if b.ndim == 2 else ())
    if b.ndim == 1:
        return matmul(a, b.reshape(-1, 1)).reshape(a.shape[:-1])
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul multiplies 2-D tensors (and 1-D vectors); got shapes "
                         f"{a.shape} and {b.shape}: reshape them to 2-D first")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not multiply: the first is "
                         f"(M, K) with K = {a.shape[1]}, so the second must be (K, N), but it has "
                         f"{b.shape[0]} rows")

    def backward(g: np.ndarray):
        ga = backends.matmul(g, b.data.T) if a.requires_grad else None
        gb = backends.matmul(a.data.T, g) if b.requires_grad else None
        return ga, gb

    return Tensor._result(backends.matmul(a.data, b.data), (a, b), "MatMul", backward)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` as one graph node: the layer ``nn.Linear`` computes.

    ``weight`` is (out_features, in_features) as in PyTorch. Fusing the three operations into one
    node lets the backward pass produce each gradient in the layout it is stored in, with no
    transposed copies: for Y = X Wᵀ + b,
        dX = dY W        (N, out) @ (out, in)
        dW = dYᵀ X       (out, N) @ (N, in): dYᵀ is a view, the kernel reads it in place
        db = sum of dY over the batch
    """
    if x.ndim != 2 or weight.ndim != 2:  # e.g. a single 1-D sample: the general ops handle it
        y = x @ weight.T
        return y if bias is None else y + bias
    _same_dtype(x, weight, "linear")
    if bias is not None:
        _same_dtype(x, bias, "linear")
        if bias.shape != weight.shape[:1]:
            raise ValueError(f"linear: bias of shape {bias.shape} does not match the weight of "
                             f"shape {weight.shape}; it must be ({weight.shape[0]},)")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} has {x.shape[1]} features but the "
                         f"weight of shape {weight.shape} expects {weight.shape[1]}")
    out = backends.matmul(x.data, weight.data.T)
    if bias is not None:
        out += bias.data
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray):
        gx = backends.matmul(g, weight.data) if x.requires_grad else None
        gw = backends.matmul(g.T, x.data) if weight.requires_grad else None
        gb = g.sum(axis=0) if bias is not None and bias.requires_grad else None
        return gx, gw, gb

    return Tensor._result(out, parents, "Linear", backward)


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
    log_probs = _log_softmax(logits.data, axis=1)
    picked = -log_probs[np.arange(n), labels]
    scale = (1.0 / n if n else 0.0) if reduction == "mean" else 1.0
    loss = picked if reduction == "none" else np.asarray(picked.sum() * scale,
                                                         dtype=logits.dtype)

    def backward(g: np.ndarray):
        grad = np.exp(log_probs)
        grad[np.arange(n), labels] -= 1
        if reduction == "none":
            return (grad * g[:, None],)
        return (grad * (g * scale),)

    return Tensor._result(loss, (logits,), "CrossEntropy", backward)


# --------------------------------------------------------------------------------------------
# Helpers


def _as_float_array(data: Any, dtype: Any = None) -> np.ndarray:
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"Tensors hold float32 or float64, not {dtype}")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as error:
        raise TypeError(f"cannot make a Tensor from {type(data).__name__}: {error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"a Tensor holds numbers; got {type(data).__name__} with dtype "
                        f"{array.dtype}. Convert it first, e.g. np.asarray(x, dtype=np.float32)")
    if dtype is None:
        dtype = array.dtype if array.dtype in FLOAT_DTYPES else np.dtype(np.float32)
    return array.astype(dtype, copy=False)


def _operand(other: Any, like: Tensor) -> Tensor:
    """``other`` as a Tensor for an operation with ``like``; NotImplemented if it cannot be one."""
    if isinstance(other, Tensor):
        _same_dtype(like, other, "an operation")
        return other
    if isinstance(other, (bool, int, float, np.number)) or (
            isinstance(other, np.ndarray) and other.dtype.kind in "biuf"):
        return Tensor(np.asarray(other, dtype=like.dtype))
    if isinstance(other, (list, tuple)):
        return Tensor(other, dtype=like.dtype)
    return NotImplemented


def _same_dtype(a: Tensor, b: Tensor, what: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{what} mixes a {a.dtype} tensor with a {b.dtype} tensor: convert one "
                        f"of them with .float() or .double()")


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes NumPy broadcast, so that it has ``shape`` again."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _axes(axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    normal = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        normal.append(int(a) % ndim)
    return tuple(normal)


def _expand(grad: np.ndarray, axes: tuple[int, ...], keepdims: bool,
            shape: tuple[int, ...]) -> np.ndarray:
    """Spread the gradient of a reduction back over the axes it reduced."""
    if not keepdims:
        grad = np.expand_dims(grad, axes)
    return np.broadcast_to(grad, shape)


def _log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(over="ignore"):  # 3e38 - (-3e38) is -inf after the shift: exp gives 0
        shifted = z - np.max(z, axis=axis, keepdims=True) if z.size else z
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(z - np.max(z, axis=axis, keepdims=True)) if z.size else z
    return e / np.sum(e, axis=axis, keepdims=True)


def _class_indices(target: Any, logits_shape: tuple[int, ...]) -> np.ndarray:
    labels = np.asarray(target.data if isinstance(target, Tensor) else target)
    n, classes = logits_shape
    if labels.shape != (n,):
        raise ValueError(f"target must hold one class index per row of logits, shape ({n},); "
                         f"got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise TypeError(f"target must hold integer class indices, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise ValueError(f"target holds class {bad}, out of range for {classes} classes "
                         f"(0 to {classes - 1})")
    return labels


def _topological_order(root: Tensor) -> list[Tensor]:
    """Every node that needs a gradient, each after all of its inputs (an iterative DFS, so a
    graph thousands of operations deep does not hit Python's recursion limit)."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
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


def graph(root: Tensor) -> tuple[list[Tensor], list[tuple[Tensor, Tensor]]]:
    """The nodes of ``root``'s graph (inputs first) and its edges (input, output): to draw it."""
    nodes = _topological_order(root)
    edges = [(parent, node) for node in nodes for parent in node._parents if parent.requires_grad]
    return nodes, edges

