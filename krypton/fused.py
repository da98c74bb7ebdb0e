"""The fused element-wise kernels of a training step (csrc/fused.c), each beside its NumPy
reference; and, at the end, a convolution's pixel moves (csrc/conv.c: im2col, col2im,
max-pooling with its argmax), whose NumPy references are in ``krypton.autograd.conv``.

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
             "kr_softmax_xent_backward", "kr_sgd_step", "kr_adam_step", "kr_gather_rows",
             "kr_gather_pixels")
"""What Python calls in csrc/fused.c (the two gathers through ``krypton.batches``)."""
SOURCE = seam.CSRC / "fused.c"
HEADER = seam.CSRC / "kr_fused.h"
FLAGS = ("-ffp-contract=off", "-fno-math-errno")
"""a*b + c rounded twice, as NumPy computes it, not fused into one FMA: the C and NumPy paths
then give the same float32 numbers (up to the order of sums). Without errno to set, sqrtf is
one vector instruction and the Adam loop vectorizes."""


_FLOAT32 = np.dtype(np.float32)


@functools.lru_cache(maxsize=None)
def compiled() -> seam.CompiledModule:
    """csrc/fused.c compiled through the seam (cached on disk; the first call compiles)."""
    return seam.compile_c(SOURCE.read_text(), seam.cdef_for(FUNCTIONS, header=HEADER),
                          name="fused", flags=list(FLAGS))


# --------------------------------------------------------------------------------------------
# Checks the wrappers share: every problem named before C sees a pointer


def _float32(name: str, array: Any, writable: bool = False) -> np.ndarray:
    # The common case, a float32 array C can use as it is, passes a few identity tests (each
    # step makes a dozen of these calls); anything else takes the checks below, with messages.
    if type(array) is np.ndarray and array.dtype is _FLOAT32 and array.flags.c_contiguous \
            and (array.flags.writeable or not writable):
        return array
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
    """Integer class indices as C reads them; their range is C's to check (one pass there),
    and ``_labels_refused`` names the culprit when C refuses them."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    _same_shape("labels", labels, (rows,))
    return np.ascontiguousarray(labels, dtype=np.int64)


def _labels_refused(code: int, labels: np.ndarray, cols: int, function: str) -> None:
    if code != 0 and labels.size and (labels.min() < 0 or labels.max() >= cols):
        raise ValueError(f"labels must be class indices in 0..{cols - 1}, got values from "
                         f"{labels.min()} to {labels.max()}")
    _check(code, function)


def _pointer(ffi: Any, ctype: str, array: np.ndarray | None) -> Any:
    """``array``'s data as C reads it, typed (``ctype`` "float[]": C sees a ``float *``)."""
    return ffi.NULL if array is None else ffi.from_buffer(ctype, array)


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
    _check(module.lib.kr_bias_relu_forward(rows, cols, _pointer(ffi, "float[]", x),
                                           _pointer(ffi, "float[]", bias),
                                           _pointer(ffi, "float[]", y)), "kr_bias_relu_forward")
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
    _check(module.lib.kr_bias_relu_backward(rows, cols, _pointer(ffi, "float[]", grad),
                                            _pointer(ffi, "float[]", y),
                                            _pointer(ffi, "float[]", grad_x),
                                            _pointer(ffi, "float[]", grad_bias)),
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
    _labels_refused(module.lib.kr_softmax_xent_forward(
        rows, cols, _pointer(ffi, "float[]", logits), _pointer(ffi, "int64_t[]", labels),
        _pointer(ffi, "float[]", probs), _pointer(ffi, "float[]", losses)), labels, cols,
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
    _labels_refused(module.lib.kr_softmax_xent_backward(
        rows, cols, _pointer(ffi, "float[]", probs), _pointer(ffi, "int64_t[]", labels),
        _pointer(ffi, "float[]", np.ascontiguousarray(scale)), stride,
        _pointer(ffi, "float[]", grad)), labels, cols, "kr_softmax_xent_backward")
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


def _update_operands(ffi: Any, params: Any, grads: Any, **states: Any) -> tuple[Any, ...]:
    """Check the lists of an update (one entry per parameter, a state entry None where it is
    not needed) and return what C reads: the sizes, then one C array of pointers per list.
    A strided gradient is copied once; the copies are returned last, to live through the call.
    The parameters and their states are the same arrays step after step, so their pointers are
    checked and built once (``_stable_operands``); only the gradients' are built every step."""
    for name, arrays in (("grads", grads), *states.items()):
        if len(arrays) != len(params):
            raise ValueError(f"{name} has {len(arrays)} entries for {len(params)} parameters")
    sizes, *stable = _stable_operands(ffi, params, states)
    copies, pointers = [], []
    for param, grad in zip(params, grads):
        checked = _float32("grad", grad)
        if checked is not grad:
            copies.append(checked)
        _same_shape("grad", checked, param.shape)
        pointers.append(ffi.from_buffer("float[]", checked))
    return (sizes, stable[0], ffi.new("float *[]", pointers), *stable[1:], copies)


def _stable_operands(ffi: Any, params: Any, states: dict[str, Any]) -> tuple[Any, ...]:
    """The sizes and the pointer arrays of the parameters and of each state list, checked and
    built once per set of arrays (each checked as the wrappers check, the first time). The key
    is the arrays' identities, and the entry holds the arrays: none of them can be freed while
    the entry lives, nor resized (NumPy refuses to resize an array another object refers to),
    so every pointer stays inside an array of the size C is told. (Checking each array's shape
    and flags again every step would cost as much as building the pointers.)"""
    arrays = (*params, *(array for entries in states.values() for array in entries))
    key = (tuple(states), tuple(map(id, arrays)))
    cached = _STABLE_OPERANDS.get(key)
    if cached is not None:
        return cached[0]
    lists = {name: [] for name in ("params", *states)}
    for index, param in enumerate(params):
        shape = _float32("param", param, writable=True).shape
        lists["params"].append(ffi.from_buffer("float[]", param))
        for name, entries in states.items():
            array, entry = entries[index], name.removesuffix("s")   # "buffers" -> "buffer"
            if array is not None:
                _same_shape(entry, _float32(entry, array, writable=True), shape)
            lists[name].append(ffi.NULL if array is None else ffi.from_buffer("float[]", array))
    operands = (ffi.new("int64_t[]", [param.size for param in params]),
                *(ffi.new("float *[]", pointers) for pointers in lists.values()))
    if len(_STABLE_OPERANDS) >= 16:   # many optimizers, or arrays replaced: start again
        _STABLE_OPERANDS.clear()
    _STABLE_OPERANDS[key] = operands, arrays
    return operands


_STABLE_OPERANDS: dict[tuple, tuple[tuple[Any, ...], tuple]] = {}
"""``_stable_operands``' entries: the C arrays, and the arrays they point into."""


def _threads(threads: Any) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


def sgd_steps(params: Any, grads: Any, buffers: Any, firsts: Any, lr: float,
              momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
              nesterov: bool = False, threads: int = 1) -> None:
    """One SGD step on each parameter of a list, in place, in one C call (what
    ``optim.SGD.step`` makes for a group): ``buffers[i]`` is parameter i's momentum (updated in
    place; needed when ``momentum`` > 0, else None) and ``firsts[i]`` says it holds nothing yet.
    The large parameters are split over up to ``threads`` threads (the results are the same)."""
    params, buffers, firsts = list(params), list(buffers), [bool(first) for first in firsts]
    threads = _threads(threads)
    if momentum and any(buffer is None for buffer in buffers):
        raise ValueError("sgd_step with momentum needs a buffer: pass np.empty_like(param) "
                         "and first=True on the first step")
    if len(firsts) != len(params):
        raise ValueError(f"firsts has {len(firsts)} entries for {len(params)} parameters")
    module = compiled()
    sizes, param_list, grad_list, buffer_list, copies = _update_operands(
        module.ffi, params, list(grads), buffers=buffers)
    _check(module.lib.kr_sgd_step(len(params), sizes, param_list, grad_list, buffer_list,
                                  module.ffi.new("int32_t[]", firsts), lr, momentum, dampening,
                                  weight_decay, bool(nesterov), threads), "kr_sgd_step")


def sgd_steps_numpy(params: Any, grads: Any, buffers: Any, firsts: Any, lr: float,
                    momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                    nesterov: bool = False, threads: int = 1) -> None:
    """The NumPy reference of ``sgd_steps``: ``sgd_step_numpy`` on each parameter."""
    for param, grad, buffer, first in zip(params, grads, buffers, firsts):
        sgd_step_numpy(param, grad, buffer, lr, momentum, dampening, weight_decay, nesterov,
                       first)


def sgd_step(param: np.ndarray, grad: np.ndarray, buffer: np.ndarray | None, lr: float,
             momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
             nesterov: bool = False, first: bool = False, threads: int = 1) -> None:
    """One SGD step on ``param`` in place, one pass; ``buffer`` (the momentum, updated in
    place) is needed when ``momentum`` > 0, and ``first`` says it holds nothing yet. A large
    parameter is split over up to ``threads`` threads (the result is the same)."""
    sgd_steps([param], [grad], [buffer], [first], lr, momentum, dampening, weight_decay,
              nesterov, threads)


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


def adam_steps(params: Any, grads: Any, exp_avgs: Any, exp_avg_sqs: Any, steps: Any,
               lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
               weight_decay: float = 0.0, threads: int = 1) -> None:
    """Adam's step on each parameter of a list and its two moments, in place, in one C call
    (what ``optim.Adam.step`` makes for a group); ``steps[i]`` is parameter i's step number
    (from 1). The bias corrections are computed here in double precision."""
    params, steps = list(params), list(steps)
    threads = _threads(threads)
    if len(steps) != len(params):
        raise ValueError(f"steps has {len(steps)} entries for {len(params)} parameters")
    for step in steps:
        if not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"step counts from 1, got {step!r}")
    module = compiled()
    ffi = module.ffi
    sizes, param_list, grad_list, moment_list, square_list, copies = _update_operands(
        ffi, params, list(grads), exp_avgs=list(exp_avgs), exp_avg_sqs=list(exp_avg_sqs))
    _check(module.lib.kr_adam_step(
        len(params), sizes, param_list, grad_list, moment_list, square_list,
        ffi.new("double[]", [lr / (1 - beta1 ** step) for step in steps]),
        ffi.new("double[]", [math.sqrt(1 - beta2 ** step) for step in steps]), beta1, beta2,
        eps, weight_decay, threads), "kr_adam_step")


def adam_steps_numpy(params: Any, grads: Any, exp_avgs: Any, exp_avg_sqs: Any, steps: Any,
                     lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                     weight_decay: float = 0.0, threads: int = 1) -> None:
    """The NumPy reference of ``adam_steps``: ``adam_step_numpy`` on each parameter."""
    for param, grad, exp_avg, exp_avg_sq, step in zip(params, grads, exp_avgs, exp_avg_sqs,
                                                      steps):
        adam_step_numpy(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                        weight_decay)


def adam_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
              exp_avg_sq: np.ndarray, step: int, lr: float, beta1: float = 0.9,
              beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
              threads: int = 1) -> None:
    """Adam's step number ``step`` (from 1) on ``param`` and its two moments, in place, one
    pass (a large parameter split over up to ``threads`` threads)."""
    adam_steps([param], [grad], [exp_avg], [exp_avg_sq], [step], lr, beta1, beta2, eps,
               weight_decay, threads)


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
    # times the reciprocal, rounded once to the moment's dtype, as csrc/fused.c does for
    # float32 (PyTorch divides)
    unroot2 = exp_avg_sq.dtype.type(1 / math.sqrt(1 - beta2 ** step))
    denominator = np.sqrt(exp_avg_sq) * unroot2 + eps
    param -= step_size * (exp_avg / denominator)


# --------------------------------------------------------------------------------------------
# A convolution's pixel moves: im2col, col2im, max-pooling with its argmax (csrc/conv.c).
# Their NumPy references are krypton.autograd.conv's im2col, col2im and max_pool2d, which
# the autograd runs on the "numpy" backend and for float64; these take float32 images whose
# (n, c) planes are H x W row-major blocks (batch-first or channels-first, kr_conv.h), and
# split a large image's planes over up to ``threads`` threads (the results do not change).

CONV_FUNCTIONS = ("kr_im2col", "kr_col2im", "kr_maxpool2d_forward", "kr_maxpool2d_backward")
CONV_SOURCE = seam.CSRC / "conv.c"
CONV_HEADER = seam.CSRC / "kr_conv.h"


@functools.lru_cache(maxsize=None)
def compiled_conv() -> seam.CompiledModule:
    """csrc/conv.c compiled through the seam (cached on disk; the first call compiles)."""
    return seam.compile_c(CONV_SOURCE.read_text(),
                          seam.cdef_for(CONV_FUNCTIONS, header=CONV_HEADER), name="conv")


def _image(name: str, array: Any) -> np.ndarray:
    """A float32 (N, C, H, W) array whose planes are row-major blocks: returned as it is when
    it is one (batch-first or channels-first views alike), else copied once."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(array).__name__}")
    if array.ndim != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {array.shape}")
    if array.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {array.dtype}: pass "
                        f"{name}.astype(np.float32), or use the NumPy reference "
                        f"(krypton.autograd.conv) for other dtypes")
    if not _planes_are_blocks(array):
        array = np.ascontiguousarray(array)
    return array


def _planes_are_blocks(array: np.ndarray) -> bool:
    if array.size == 0:
        return True  # nothing to read or write (NumPy gives empty arrays zero strides)
    n, c, h, w = array.shape
    sn, sc, sh, sw = array.strides
    return ((w <= 1 or sw == 4) and (h <= 1 or sh == 4 * w) and sn >= 0 and sc >= 0
            and sn % 4 == 0 and sc % 4 == 0)


def _address(ffi: Any, ctype: str, array: np.ndarray | None) -> Any:
    """A pointer to ``array``'s first element, for views that are not C-contiguous as a whole
    (a channels-first (N, C, H, W) view), which ``ffi.from_buffer`` refuses."""
    return ffi.NULL if array is None else ffi.cast(ctype, array.__array_interface__["data"][0])


def _plane_steps(array: np.ndarray) -> tuple[int, int]:
    """(plane_n, plane_c): how many floats apart the planes (n + 1, c) and (n, c + 1) are."""
    return array.strides[0] // 4, array.strides[1] // 4


def _windows(kernel: Any, stride: Any, padding: Any) -> tuple[tuple[int, int], ...]:
    pairs = []
    for label, value, low in (("kernel", kernel, 1), ("stride", stride, 1),
                              ("padding", padding, 0)):
        pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
        if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair) \
                or min(pair) < low:
            raise ValueError(f"{label} must be an int or a pair of ints >= {low}, got "
                             f"{value!r}")
        pairs.append((int(pair[0]), int(pair[1])))
    return tuple(pairs)


def _positions(shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int]) -> tuple[int, int]:
    _, _, h, w = shape
    padded = (h + 2 * padding[0], w + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(f"kernel {kernel[0]}x{kernel[1]} is larger than the padded input "
                         f"{padded[0]}x{padded[1]} (input of shape {shape}, padding {padding})")
    if h * w >= 2 ** 31:
        raise ValueError(f"an image plane of {h}x{w} pixels is too large (int32 offsets)")
    return ((padded[0] - kernel[0]) // stride[0] + 1, (padded[1] - kernel[1]) // stride[1] + 1)


def _conv_check(code: int, function: str) -> None:
    if code != 0:  # the wrappers check everything C does, so this is a bug, not bad input
        raise RuntimeError(f"{function} refused its arguments (code {code})")


def im2col(x: np.ndarray, kernel: Any, stride: Any, padding: Any,
           threads: int = 1) -> np.ndarray:
    """The patches of ``x`` (N, C, H, W) as the columns of a (C·kh·kw, N·Ho·Wo) array, as
    ``krypton.autograd.conv.im2col`` (the reference) computes them, in one pass (a large
    image's planes shared by up to ``threads`` threads; the result is the same)."""
    x = _image("x", x)
    kernel, stride, padding = _windows(kernel, stride, padding)
    ho, wo = _positions(x.shape, kernel, stride, padding)
    n, c, h, w = x.shape
    cols = np.empty((c * kernel[0] * kernel[1], n * ho * wo), dtype=np.float32)
    module = compiled_conv()
    _conv_check(module.lib.kr_im2col(n, c, h, w, _address(module.ffi, "float *", x),
                                     *_plane_steps(x), *kernel, *stride, *padding, ho, wo,
                                     _address(module.ffi, "float *", cols), _threads(threads)),
                "kr_im2col")
    return cols


def col2im(cols: np.ndarray, shape: tuple[int, int, int, int], kernel: Any, stride: Any,
           padding: Any, threads: int = 1) -> np.ndarray:
    """The adjoint of ``im2col``: an (N, C, H, W) array, channels first in memory, each
    column added back onto its patch, as ``krypton.autograd.conv.col2im`` (the reference)."""
    cols = _matrix("cols", _float32("cols", cols))
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or min(shape) < 0:
        raise ValueError(f"shape must be (N, C, H, W), got {shape!r}")
    kernel, stride, padding = _windows(kernel, stride, padding)
    ho, wo = _positions(shape, kernel, stride, padding)
    n, c, h, w = shape
    _same_shape("cols", cols, (c * kernel[0] * kernel[1], n * ho * wo))
    image = np.empty((c, n, h, w), dtype=np.float32).transpose(1, 0, 2, 3)
    module = compiled_conv()
    _conv_check(module.lib.kr_col2im(n, c, h, w, _address(module.ffi, "float *", cols),
                                     *kernel, *stride, *padding, ho, wo,
                                     _address(module.ffi, "float *", image),
                                     *_plane_steps(image), _threads(threads)), "kr_col2im")
    return image


def max_pool2d(x: np.ndarray, kernel: Any, stride: Any, bias: np.ndarray | None = None,
               relu: bool = False, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The maximum of each window of ``x`` (N, C, H, W) and where it is: ``(out, argmax)``,
    both (N, C, Ho, Wo) in ``x``'s layout (channels first if ``x`` is), argmax an int32
    offset into its plane. ``bias`` (C,) is added to each channel first and ``relu`` takes
    max(., 0) after: ``relu(max_pool(x + bias))``, what a Conv2d, ReLU, MaxPool2d computes."""
    x = _image("x", x)
    kernel, stride, _ = _windows(kernel, stride, (0, 0))
    ho, wo = _positions(x.shape, kernel, stride, (0, 0))
    n, c, h, w = x.shape
    if bias is not None:
        bias = _float32("bias", bias)
        _same_shape("bias", bias, (c,))
    channels_first = x.strides[0] < x.strides[1]
    layout = (c, n, ho, wo) if channels_first else (n, c, ho, wo)
    out, argmax = np.empty(layout, np.float32), np.empty(layout, np.int32)
    if channels_first:
        out, argmax = out.transpose(1, 0, 2, 3), argmax.transpose(1, 0, 2, 3)
    module = compiled_conv()
    ffi = module.ffi
    _conv_check(module.lib.kr_maxpool2d_forward(
        n, c, h, w, _address(ffi, "float *", x), *_plane_steps(x), *kernel, *stride, ho, wo,
        _address(ffi, "float *", bias), bool(relu), _address(ffi, "float *", out),
        _address(ffi, "int32_t *", argmax), *_plane_steps(out), _threads(threads)),
        "kr_maxpool2d_forward")
    return out, argmax


def max_pool2d_backward(grad: np.ndarray, argmax: np.ndarray, shape: tuple[int, ...],
                        out: np.ndarray | None = None, with_bias: bool = False,
                        channels_first: bool = True,
                        threads: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """The gradient of ``max_pool2d``: an array of ``shape`` (the input's; channels first in
    memory unless ``channels_first=False``), zero but where a window's maximum was, which gets
    that window's ``grad`` (overlapping windows add). With ``out`` (the forward's output) the
    gradient is first multiplied by ``out > 0`` (the ReLU's backward); ``with_bias`` also
    returns it summed over each channel (the bias gradient), else ``None``."""
    grad = _image("grad", grad)
    if not isinstance(argmax, np.ndarray) or argmax.dtype != np.int32 \
            or not _planes_are_blocks(argmax.view(np.float32)):
        raise TypeError("argmax must be the int32 array max_pool2d returned")
    _same_shape("argmax", argmax, grad.shape)
    if out is not None:
        out = _image("out", out)
        _same_shape("out", out, grad.shape)
        if out.strides != argmax.strides:
            raise ValueError("out and argmax must be the arrays max_pool2d returned together")
    n, c, h, w = (int(s) for s in shape)
    if grad.shape[:2] != (n, c):
        raise ValueError(f"grad of shape {grad.shape} does not pool an input of shape {shape}")
    layout = (c, n, h, w) if channels_first else (n, c, h, w)
    grad_x = np.empty(layout, np.float32)
    if channels_first:
        grad_x = grad_x.transpose(1, 0, 2, 3)
    grad_bias = np.empty(c, np.float32) if with_bias else None
    module = compiled_conv()
    ffi = module.ffi
    _conv_check(module.lib.kr_maxpool2d_backward(
        n, c, h, w, grad.shape[2], grad.shape[3], _address(ffi, "float *", grad),
        *_plane_steps(grad), _address(ffi, "int32_t *", argmax),
        _address(ffi, "float *", out), *_plane_steps(argmax.view(np.float32)),
        _address(ffi, "float *", grad_x), *_plane_steps(grad_x),
        _address(ffi, "float *", grad_bias), _threads(threads)), "kr_maxpool2d_backward")
    return grad_x, grad_bias
