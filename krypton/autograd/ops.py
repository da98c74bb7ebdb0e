"""The Tensor and its operations: each one computes its value with NumPy and records how to
send a gradient back to its inputs.

Read it with the engine (``krypton/autograd/engine.py``) beside it: an operation calls
``Tensor._result(value, inputs, name, backward)``, which makes the result a node of the graph
when an input requires a gradient; ``backward`` is a small closure that turns the gradient of
the result into gradients of the inputs (the chain rule, one operation at a time), summed back
over the axes NumPy broadcast (``_unbroadcast``). Matrix products go through
``krypton.backends.matmul``: forward and both backward products run on the kernel ladder.

Names and semantics follow PyTorch (``requires_grad``, ``.grad``, ``.backward()``, ``.detach()``,
``.item()``), so what is learned here transfers.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

import numpy as np

from krypton import backends, fused
from krypton.autograd import engine

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
"""What a tensor of numbers holds (boolean and integer tensors are masks and indices)."""

_UFUNC_OPERATORS = {np.add: operator.add, np.subtract: operator.sub,
                    np.multiply: operator.mul, np.true_divide: operator.truediv,
                    np.matmul: operator.matmul}
"""The NumPy functions behind ``ndarray + tensor`` and its kin, done as Tensor operations."""


class Tensor:
    """An n-dimensional array that can record the operations made on it.

    Args:
        data: a NumPy array, a nested list or a number. The dtype follows PyTorch: a NumPy
            array keeps its dtype and its memory (no copy, like ``torch.from_numpy``) when it
            is float32, float64, boolean or integer; Python numbers and lists become float32
            (PyTorch's default float type; PyTorch would make int64 of a list of ints, Krypton's
            tensors of numbers are always float). Other NumPy floats (float16) become float32.
        requires_grad: record operations on this tensor so ``backward`` can reach it. Only
            float tensors can (boolean and integer tensors are masks and indices).
        dtype: ``np.float32`` or ``np.float64``: convert to it. Any other dtype is refused.

    Boolean and integer tensors exist to index with, as in NumPy: ``x[mask]`` selects where
    ``mask`` is true, ``x[indices]`` picks entries. Indexing with a float tensor is refused.

    NumPy sees a Tensor as what it is: ``np.asarray(t)`` is ``t.data`` (for a tensor that does
    not require grad, as ``torch.Tensor.__array__``), and ``ndarray + t`` (``-``, ``*``, ``/``,
    ``@``) is a Tensor operation. Other NumPy functions (``np.exp(t)``) are refused with a
    TypeError naming the Tensor method to use, instead of an array of Tensor objects.
    """

    __slots__ = ("data", "requires_grad", "grad", "_parents", "_backward", "_op",
                 "_retains_grad", "__weakref__")

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None):
        self.data = _as_array(data, dtype)
        if requires_grad and self.data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"only float tensors can require grad, this one is {self.dtype} (a "
                            f"mask or indices): pass dtype=np.float32 to make it numbers")
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
        if engine.is_grad_enabled() and any(p.requires_grad for p in parents):
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

    # ---- backward: the engine's walk (krypton/autograd/engine.py) -----------------------

    backward = engine.backward

    def _accumulate(self, grad: np.ndarray) -> None:
        if self.grad is None:
            # A copy: the same array may reach several tensors (x + x), or be a read-only view.
            self.grad = Tensor(np.array(grad, dtype=self.dtype))
        elif self.grad.data.flags.writeable and self.grad.shape == self.shape:
            np.add(self.grad.data, grad, out=self.grad.data)  # in place, as PyTorch: no new array
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
        if _fusable(self.data):  # one pass in C (csrc/fused.c); the same formulas as below
            flat = self.data.reshape(1, -1)
            out = fused.bias_relu(flat).reshape(self.shape)
            return Tensor._result(out, (self,), "ReLU", lambda g: (
                fused.bias_relu_backward(g.reshape(1, -1), out.reshape(1, -1),
                                         with_bias=False)[0].reshape(out.shape),))
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
        """NumPy indexing: ints, slices, boolean masks and integer arrays (or tensors of them)."""
        a = self
        index = _index_of(index)

        def backward(g: np.ndarray):
            full = np.zeros_like(a.data)
            np.add.at(full, index, g)  # add.at: an index that repeats gets every contribution
            return (full,)

        return Tensor._result(a.data[index], (a,), "Index", backward)

    # ---- NumPy interoperation ---------------------------------------------------------------

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if self.requires_grad:
            raise TypeError("cannot make a NumPy array of a tensor that requires grad (NumPy "
                            "would not record the operation): use t.detach().numpy() or t.data")
        if copy is False and dtype is not None and np.dtype(dtype) != self.dtype:
            raise ValueError(f"np.asarray(copy=False) cannot give {np.dtype(dtype)} without a "
                             f"copy; this tensor is {self.dtype}")
        array = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return array.copy() if copy else array

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any):
        operator = _UFUNC_OPERATORS.get(ufunc)
        if operator is not None and method == "__call__" and len(inputs) == 2 and not kwargs:
            like = self
            a, b = (x if isinstance(x, Tensor) else _operand(x, like) for x in inputs)
            if a is NotImplemented or b is NotImplemented:
                return NotImplemented
            return operator(a, b)
        name = getattr(ufunc, "__name__", str(ufunc))
        method_hint = f"t.{name}()" if hasattr(Tensor, name) else "a Tensor operation"
        raise TypeError(f"NumPy's {name} does not record gradients, so it does not take a "
                        f"krypton Tensor: use {method_hint}, or np.{name}(t.data) on the array "
                        f"to leave the graph")


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """``krypton.tensor([[1., 2.]], requires_grad=True)``: a new tensor (its own copy of data)."""
    return Tensor(_as_array(data, dtype).copy(), requires_grad=requires_grad)


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


# --------------------------------------------------------------------------------------------
# Array helpers the operations share


def _as_array(data: Any, dtype: Any = None) -> np.ndarray:
    """``data`` as the array a Tensor holds, by the rule of ``Tensor``'s docstring."""
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be np.float32 or np.float64, got {dtype!r}") from None
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"Tensors of numbers hold float32 or float64, not {dtype}: pass "
                            f"dtype=np.float32 (the default) or dtype=np.float64")
    if isinstance(data, Tensor):
        data = data.data
    from_numpy = isinstance(data, (np.ndarray, np.generic))
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as error:
        raise TypeError(f"cannot make a Tensor from {type(data).__name__}: {error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"a Tensor holds numbers; got {type(data).__name__} with dtype "
                        f"{array.dtype}. Convert it first, e.g. np.asarray(x, dtype=np.float32)")
    if dtype is not None:
        return array.astype(dtype, copy=False)
    if from_numpy and (array.dtype in FLOAT_DTYPES or array.dtype.kind in "biu"):
        return array
    return array.astype(np.float32)


def _index_of(index: Any) -> Any:
    """A Tensor index as the NumPy index it stands for: a boolean mask or integer indices."""
    if isinstance(index, tuple):
        return tuple(_index_of(part) for part in index)
    if not isinstance(index, Tensor):
        return index
    if index.dtype.kind not in "biu":
        raise TypeError(f"a tensor used as an index must hold booleans (a mask) or integers "
                        f"(indices), got {index.dtype}: make it with "
                        f"Tensor(np.array(..., dtype=bool)) or dtype=np.int64, or convert "
                        f"this one with Tensor(t.data.astype(np.int64))")
    return index.data


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


def _fusable(*arrays: np.ndarray) -> bool:
    """Whether the fused C kernels (krypton.fused) take these arrays: float32, on a backend
    that uses them (``krypton.backends.uses_fused``); float64 stays in NumPy, for the checks."""
    return all(a.dtype == np.float32 for a in arrays) and backends.uses_fused()


def _log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(over="ignore"):  # 3e38 - (-3e38) is -inf after the shift: exp gives 0
        shifted = z - np.max(z, axis=axis, keepdims=True) if z.size else z
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(z - np.max(z, axis=axis, keepdims=True)) if z.size else z
    return e / np.sum(e, axis=axis, keepdims=True)
