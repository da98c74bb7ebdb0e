"""The fused element-wise kernels of a training step (csrc/fused.c), each beside its NumPy
reference.

Once the matrix products run on the ladder, the rest of a step is a few element-wise passes:
bias add and ReLU (and their backward), softmax with cross-entropy (and its backward), the
optimizer's update. NumPy does each as several passes with a temporary array between them;
each C function here does it in one pass, in place where the output may overwrite its input.

Every operation comes twice, with the same arguments and results:

- ``name(...)``: validates its arguments (dtype, shape, contiguity; a clear error, never a
  crash) and calls C. The arrays must be float32 (labels int64); inputs that are not
  C-contiguous are copied once, outputs updated in place must be C-contiguous.
- ``name_numpy(...)``: the same formula in NumPy, the readable reference (and the fallback:
  ``krypton.backend("numpy")`` and float64 tensors run these).

The callers (``krypton.autograd`` and ``krypton.optim``) choose between them with
``krypton.backends.uses_fused()``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from krypton import seam

FUNCTIONS = ("kr_bias_relu_forward", "kr_bias_relu_backward", "kr_softmax_xent_forward",
             "kr_softmax_xent_backward", "kr_sgd_step", "kr_adam_step")
SOURCE = seam.CSRC / "fused.c"
HEADER = seam.CSRC / "kr_fused.h"
FLAGS = ("-ffp-contract=off", "-fno-math-errno")
"""a*b + c rounded twice, as NumPy computes it, not fused into one FMA: the C and NumPy paths
then give the same float32 numbers (up to the order of sums). Without errno to set, sqrtf is
one vector instruction and the Adam loop vectorizes."""


@functools.lru_cache(maxsize=None)
def compiled() -> seam.CompiledModule:
    """csrc/fused.c compiled through the seam (cached on disk; the first call compiles)."""
    return seam.compile_c(SOURCE.read_text(), seam.cdef_for(FUNCTIONS, header=HEADER),
                          name="fused", flags=list(FLAGS))


# --------------------------------------------------------------------------------------------
# Checks the wrappers share: every problem named before C sees a pointer


def _float32(name: str, array: Any, writable: bool = False) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(array).__name__}")
    if array.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {array.dtype}: pass "
                        f"{name}.astype(np.float32), or use the NumPy reference "
                        f"(krypton.fused.*_numpy) for other dtypes")
    if writable:
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError(f"{name} is updated in place, so it must be a writeable "
                             f"C-contiguous array; got strides {array.strides}, writeable="
                             f"{array.flags.writeable}: pass np.ascontiguousarray({name})")
        return array
    return np.ascontiguousarray(array)


def _same_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")


def _matrix(name: str, array: np.ndarray) -> np.ndarray:
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, cols), got shape {array.shape}: reshape "
                         f"it, e.g. {name}.reshape(1, -1)")
    return array


def _labels(labels: Any, rows: int, cols: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    _same_shape("labels", labels, (rows,))
    if labels.size and (labels.min() < 0 or labels.max() >= cols):
        raise ValueError(f"labels must be class indices in 0..{cols - 1}, got values from "
                         f"{labels.min()} to {labels.max()}")
    return np.ascontiguousarray(labels, dtype=np.int64)


def _pointer(ffi: Any, ctype: str, array: np.ndarray | None) -> Any:
    return ffi.NULL if array is None else ffi.cast(ctype, ffi.from_buffer(array))


def _check(code: int, function: str) -> None:
    if code != 0:  # the wrappers check everything C does, so this is a bug, not bad input
        raise RuntimeError(f"{function} refused its arguments (code {code})")


def _out(name: str, out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.float32)
    out = _float32(name, out, writable=True)
    _same_shape(name, out, shape)
    return out


# --------------------------------------------------------------------------------------------
# Bias add + ReLU


def bias_relu(x: np.ndarray, bias: np.ndarray | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
    """``max(x + bias, 0)`` (bias over the rows; ``None``: a plain ReLU) in one pass.

    ``out`` may be ``x`` itself (the fresh product of a Linear layer): then no new array.
    """
    x = _matrix("x", _float32("x", x))
    rows, cols = x.shape
    if bias is not None:
        bias = _float32("bias", bias)
        _same_shape("bias", bias, (cols,))
    y = _out("out", out, x.shape)
    module = compiled()
    ffi = module.ffi
    _check(module.lib.kr_bias_relu_forward(rows, cols, _pointer(ffi, "float *", x),
                                           _pointer(ffi, "float *", bias),
                                           _pointer(ffi, "float *", y)), "kr_bias_relu_forward")
    return y


def bias_relu_numpy(x: np.ndarray, bias: np.ndarray | None = None,
                    out: np.ndarray | None = None) -> np.ndarray:
    """The NumPy reference of ``bias_relu``: the same arguments, the same results."""
    return np.maximum(x if bias is None else x + bias, 0, out=out)


def bias_relu_backward(grad: np.ndarray, y: np.ndarray,
                       with_bias: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The gradients of ``y = max(x + bias, 0)``: ``grad * (y > 0)`` and, if ``with_bias``,
    its sum over the rows (the bias gradient), in one pass."""
    grad = _matrix("grad", _float32("grad", grad))
    y = _float32("y", y)
    _same_shape("y", y, grad.shape)
    rows, cols = grad.shape
    grad_x = np.empty_like(grad)
    grad_bias = np.empty(cols, dtype=np.float32) if with_bias else None
    module = compiled()
    ffi = module.ffi
    _check(module.lib.kr_bias_relu_backward(rows, cols, _pointer(ffi, "float *", grad),
                                            _pointer(ffi, "float *", y),
                                            _pointer(ffi, "float *", grad_x),
                                            _pointer(ffi, "float *", grad_bias)),
           "kr_bias_relu_backward")
    return grad_x, grad_bias


def bias_relu_backward_numpy(grad: np.ndarray, y: np.ndarray,
                             with_bias: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The NumPy reference of ``bias_relu_backward``: the same arguments, the same results."""
    grad_x = grad * (y > 0)  # a product, not np.where: NaN * 0 stays NaN
    return grad_x, grad_x.sum(axis=0) if with_bias else None


# --------------------------------------------------------------------------------------------
# Softmax + cross-entropy


def softmax_cross_entropy(logits: np.ndarray, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-row losses ``-log softmax(logits)[i, labels[i]]`` and the softmax (saved for the
    backward), in one pass per row; shifted by the row maximum, so it never overflows."""
    logits = _matrix("logits", _float32("logits", logits))
    rows, cols = logits.shape
    if rows and not cols:
        raise ValueError(f"logits of shape {logits.shape} have no classes")
    labels = _labels(labels, rows, cols)
    probs = np.empty_like(logits)
    losses = np.empty(rows, dtype=np.float32)
    module = compiled()
    ffi = module.ffi
    _check(module.lib.kr_softmax_xent_forward(rows, cols, _pointer(ffi, "float *", logits),
                                              _pointer(ffi, "int64_t *", labels),
                                              _pointer(ffi, "float *", probs),
                                              _pointer(ffi, "float *", losses)),
           "kr_softmax_xent_forward")
    return losses, probs


def softmax_cross_entropy_numpy(logits: np.ndarray, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """The NumPy reference of ``softmax_cross_entropy``: the same arguments, the same results."""
    with np.errstate(over="ignore", invalid="ignore"):  # -inf and NaN rows give NaN, as C
        shifted = logits - np.max(logits, axis=1, keepdims=True)
        log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    labels = np.asarray(labels)
    return -log_probs[np.arange(len(labels)), labels], np.exp(log_probs)


def softmax_cross_entropy_backward(probs: np.ndarray, labels: Any, scale: Any) -> np.ndarray:
    """``(probs - onehot(labels)) * scale``: ``scale`` one number (1/N for the mean) or one
    per row (the incoming gradient of an unreduced loss)."""
    probs = _matrix("probs", _float32("probs", probs))
    rows, cols = probs.shape
    labels = _labels(labels, rows, cols)
    scale = np.asarray(scale, dtype=np.float32)
    if scale.shape not in ((), (rows,)):
        raise ValueError(f"scale must be one number or one per row ({rows},), got shape "
                         f"{scale.shape}")
    stride = 0 if scale.ndim == 0 else 1
    grad = np.empty_like(probs)
    module = compiled()
    ffi = module.ffi
    _check(module.lib.kr_softmax_xent_backward(rows, cols, _pointer(ffi, "float *", probs),
                                               _pointer(ffi, "int64_t *", labels),
                                               _pointer(ffi, "float *",
                                                        np.ascontiguousarray(scale)),
                                               stride, _pointer(ffi, "float *", grad)),
           "kr_softmax_xent_backward")
    return grad


def softmax_cross_entropy_backward_numpy(probs: np.ndarray, labels: Any,
                                         scale: Any) -> np.ndarray:
    """The NumPy reference of ``softmax_cross_entropy_backward``: the same arguments, the same results."""
    grad = probs.copy()
    labels = np.asarray(labels)
    grad[np.arange(len(labels)), labels] -= 1
    scale = np.asarray(scale, dtype=probs.dtype)
    return grad * (scale if scale.ndim == 0 else scale[:, None])


# --------------------------------------------------------------------------------------------
# Optimizer updates, in place: PyTorch's rules (krypton/optim.py states them)


def _update_operands(param: np.ndarray, grad: np.ndarray,
                     **state: np.ndarray | None) -> np.ndarray:
    _float32("param", param, writable=True)
    grad = _float32("grad", grad)
    _same_shape("grad", grad, param.shape)
    for name, array in state.items():
        if array is not None:
            _float32(name, array, writable=True)
            _same_shape(name, array, param.shape)
    return grad


def _threads(threads: Any) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


def sgd_step(param: np.ndarray, grad: np.ndarray, buffer: np.ndarray | None, lr: float,
             momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
             nesterov: bool = False, first: bool = False, threads: int = 1) -> None:
    """One SGD step on ``param`` in place, one pass; ``buffer`` (the momentum, updated in
    place) is needed when ``momentum`` > 0, and ``first`` says it holds nothing yet. A large
    parameter is split over up to ``threads`` threads (the result is the same)."""
    grad = _update_operands(param, grad, buffer=buffer)
    threads = _threads(threads)
    if momentum and buffer is None:
        raise ValueError("sgd_step with momentum needs a buffer: pass np.empty_like(param) "
                         "and first=True on the first step")
    module = compiled()
    ffi = module.ffi
    _check(module.lib.kr_sgd_step(param.size, _pointer(ffi, "float *", param),
                                  _pointer(ffi, "float *", grad),
                                  _pointer(ffi, "float *", buffer), lr, momentum, dampening,
                                  weight_decay, bool(nesterov), bool(first), threads),
           "kr_sgd_step")


def sgd_step_numpy(param: np.ndarray, grad: np.ndarray, buffer: np.ndarray | None,
                   lr: float, momentum: float = 0.0, dampening: float = 0.0,
                   weight_decay: float = 0.0, nesterov: bool = False,
                   first: bool = False, threads: int = 1) -> None:
    """The NumPy reference of ``sgd_step``: the same arguments (``threads`` unused: NumPy's
    element-wise operations run on one), the same results."""
    if weight_decay:
        grad = grad + weight_decay * param
    if momentum:
        if first:
            buffer[...] = grad
        else:
            buffer *= momentum
            buffer += (1 - dampening) * grad if dampening else grad
        grad = grad + momentum * buffer if nesterov else buffer
    param -= lr * grad


def adam_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
              exp_avg_sq: np.ndarray, step: int, lr: float, beta1: float = 0.9,
              beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
              threads: int = 1) -> None:
    """Adam's step number ``step`` (from 1) on ``param`` and its two moments, in place, one
    pass (a large parameter split over up to ``threads`` threads); the bias corrections are
    computed here in double precision."""
    grad = _update_operands(param, grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
    threads = _threads(threads)
    if not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step counts from 1, got {step!r}")
    module = compiled()
    ffi = module.ffi
    _check(module.lib.kr_adam_step(param.size, _pointer(ffi, "float *", param),
                                   _pointer(ffi, "float *", grad),
                                   _pointer(ffi, "float *", exp_avg),
                                   _pointer(ffi, "float *", exp_avg_sq), beta1, beta2, eps,
                                   weight_decay, lr / (1 - beta1 ** step),
                                   math.sqrt(1 - beta2 ** step), threads), "kr_adam_step")


def adam_step_numpy(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
                    exp_avg_sq: np.ndarray, step: int, lr: float, beta1: float = 0.9,
                    beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                    threads: int = 1) -> None:
    """The NumPy reference of ``adam_step``: the same arguments (``threads`` unused), the same
    results."""
    if weight_decay:
        grad = grad + weight_decay * param
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * (grad * grad)
    step_size = lr / (1 - beta1 ** step)
    denominator = np.sqrt(exp_avg_sq) / math.sqrt(1 - beta2 ** step) + eps
    param -= step_size * (exp_avg / denominator)
