"""A convolution is a matrix product: ``conv2d`` and ``max_pool2d`` as autograd operations.

im2col copies every k x k patch of the (padded) input into one column of a matrix, so the whole
convolution of a batch becomes one product with the weight, on the current backend (the kernel
ladder):

    cols    (C·k·k, N·Ho·Wo)    row (c, i, j), column (n, ho, wo): x[n, c, s·ho + i, s·wo + j]
    Y       = W @ cols           (O, C·k·k) @ (C·k·k, N·Ho·Wo) -> (O, N·Ho·Wo)
    dWᵀ     = cols @ dYᵀ          (C·k·k, N·Ho·Wo) @ (N·Ho·Wo, O): dYᵀ is a view, no copy
    dcols   = Wᵀ @ dY             (C·k·k, O) @ (O, N·Ho·Wo)
    dx      = col2im(dcols)       every patch's gradient added back where the patch came from

The columns are laid out (C·k·k, N·Ho·Wo) so that the copy im2col makes, and the one col2im
adds, run along the output's width (contiguous in the columns, stride ``s`` in the image)
rather than along a 5-wide kernel row. The weight, (O, C, k, k) as in PyTorch, is already the
(O, C·k·k) matrix: no copy. The products are short and wide: O and C·k·k are tens, N·Ho·Wo is a
batch times an image, which is the small-matrix rung's kind of product.

col2im needs no ``np.add.at``: patches overlap, but for one kernel offset (i, j) the pixels
the columns came from are distinct, so the k·k offsets each add one strided slice.

Channels first in memory: the product Y is (O, N·Ho·Wo), that is the output's channels
outermost. ``conv2d`` hands it on as the (N, O, Ho, Wo) tensor PyTorch's layers expect, but as
a transposed *view* (no copy); ReLU, max-pooling and the next im2col keep or read that layout,
so the next im2col's copy runs along contiguous memory, and the gradients coming back have the
same layout, so dY is a (O, N·Ho·Wo) matrix without a copy. (Check: ``y.data.base`` is the
product; ``y.data.transpose(1, 0, 2, 3).flags.c_contiguous`` is True.)

The NumPy functions below are the readable reference (the "numpy" backend and float64 run
them). On float32 with the fused kernels on, im2col, col2im and max-pooling run in C
(csrc/conv.c through ``krypton.fused``), one pass each, and max-pooling keeps where each
window's maximum was, so its backward is one scatter; ``conv2d_relu_pool`` makes a Conv2d,
ReLU and MaxPool2d one node. ``python -m krypton.train --model cnn --no-fused`` measures
what that buys.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from krypton import backends, fused
from krypton.autograd.ops import Tensor, _fusable, _same_dtype


def as_pair(name: str, value: Any, low: int) -> tuple[int, int]:
    """An int or a pair of ints (height, width), each at least ``low``, as PyTorch takes them."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints (height, width), got "
                        f"{value!r}")
    if min(pair) < low:
        raise ValueError(f"{name} must be at least {low}, got {value!r}")
    return int(pair[0]), int(pair[1])


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output positions along one axis: ``(size + 2·padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def _check_window(what: str, shape: tuple[int, ...], kernel: tuple[int, int],
                  padding: tuple[int, int]) -> None:
    padded = (shape[2] + 2 * padding[0], shape[3] + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(f"{what}: kernel {kernel[0]}x{kernel[1]} is larger than the padded "
                         f"input {padded[0]}x{padded[1]} (input of shape {shape}, padding "
                         f"{padding}): use a smaller kernel, more padding or a larger image")


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int]) -> np.ndarray:
    """The patches of ``x`` (N, C, H, W) as columns: a (C·kh·kw, N·Ho·Wo) array (a copy).

    Row ``(c, i, j)``, column ``(n, ho, wo)`` holds ``x[n, c, s·ho + i - p, s·wo + j - p]``
    (zero outside the image). One strided view of the padded input, one copy: no Python loop.
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    padded = x.transpose(1, 0, 2, 3)  # (C, N, H, W): a view; contiguous if x is channels-first
    if ph or pw:
        padded = np.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
        padded[:, :, ph:ph + h, pw:pw + w] = x.transpose(1, 0, 2, 3)
    windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    # (C, N, Ho, Wo, kh, kw) -> (C, kh, kw, N, Ho, Wo): the copy runs along Wo.
    ho, wo = windows.shape[2], windows.shape[3]
    return windows.transpose(0, 4, 5, 1, 2, 3).reshape(c * kh * kw, n * ho * wo)


def col2im(cols: np.ndarray, shape: tuple[int, int, int, int], kernel: tuple[int, int],
           stride: tuple[int, int], padding: tuple[int, int]) -> np.ndarray:
    """The adjoint of ``im2col``: add each column back onto the patch it was copied from.

    Returns an (N, C, H, W) array, channels first in memory (a transposed view, as
    ``conv2d``'s outputs are); where patches overlap, their values add up (that is the gradient
    of the input: each pixel feeds every patch it is in).
    """
    n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    patches = cols.reshape(c, kh, kw, n, ho, wo)
    padded = np.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):  # one strided slice per kernel offset: distinct pixels, so += is exact
        for j in range(kw):
            padded[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += patches[:, i, j]
    return padded[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
           padding: Any = 0) -> Tensor:
    """The 2-D convolution (cross-correlation, as PyTorch's) of ``x`` (N, C, H, W) with
    ``weight`` (O, C, kh, kw), plus ``bias`` (O,): an (N, O, Ho, Wo) tensor, one graph node.

    Forward is im2col and one product on the current backend; backward is two products
    (dW and dcols) and col2im, the input's only when it requires a gradient. The result is
    channels first in memory (see the module's docstring).
    """
    return _convolve("conv2d", x, weight, bias, stride, padding, relu=False)


def conv2d_relu(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                padding: Any = 0) -> Tensor:
    """``relu(conv2d(x, weight, bias, stride, padding))`` as one graph node: what
    ``nn.Sequential`` runs for a Conv2d followed by a ReLU. The ReLU runs in place over the
    fresh product, and its backward masks dY before the products: no (N, O, Ho, Wo) copies."""
    return _convolve("conv2d_relu", x, weight, bias, stride, padding, relu=True)


def _checked(name: str, x: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    for label, value in (("input", x), ("weight", weight), ("bias", bias)):
        if not isinstance(value, Tensor) and not (label == "bias" and value is None):
            raise TypeError(f"{name} takes Tensors, but the {label} is a "
                            f"{type(value).__name__}: wrap it as krypton.Tensor({label})")
    if x.ndim != 4:
        raise ValueError(f"{name} takes an input of shape (N, C, H, W), got shape {x.shape}: "
                         f"reshape it, e.g. x.reshape(N, 1, 28, 28) for flat 28x28 images")
    if weight.ndim != 4:
        raise ValueError(f"{name} takes a weight of shape (out_channels, in_channels, kh, kw), "
                         f"got shape {weight.shape}")
    if min(weight.shape) < 1:
        raise ValueError(f"{name}: the weight of shape {weight.shape} is empty; every size "
                         f"(out_channels, in_channels, kh, kw) must be at least 1")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"{name}: the input of shape {x.shape} has {x.shape[1]} channels but "
                         f"the weight of shape {weight.shape} expects {weight.shape[1]}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"{name}: bias of shape {bias.shape} does not match the weight of "
                         f"shape {weight.shape}; it must be ({weight.shape[0]},)")
    _same_dtype(x, weight, name)
    if bias is not None:
        _same_dtype(x, bias, name)


def _convolve(name: str, x: Tensor, weight: Tensor, bias: Tensor | None, stride: Any,
              padding: Any, relu: bool) -> Tensor:
    stride, padding = as_pair("stride", stride, 1), as_pair("padding", padding, 0)
    _checked(name, x, weight, bias)
    out_channels, _, kh, kw = weight.shape
    kernel = (kh, kw)
    _check_window(name, x.shape, kernel, padding)
    n, _, h, w = x.shape
    ho, wo = output_size(h, kh, stride[0], padding[0]), output_size(w, kw, stride[1], padding[1])
    # The C kernels (csrc/conv.c, csrc/fused.c) or NumPy's reference: the same values.
    in_c = _fusable(x.data, weight.data)
    cols = (fused.im2col(x.data, kernel, stride, padding, threads=backends.kernel_threads())
            if in_c else im2col(x.data, kernel, stride, padding))
    weights = weight.data.reshape(out_channels, -1)  # (O, C·kh·kw): a view
    out = backends.matmul(weights, cols)  # (O, N·Ho·Wo)
    if bias is not None:
        out += bias.data[:, None]
    if relu:
        if in_c:
            fused.bias_relu(out, None, out=out)
        else:
            np.maximum(out, 0, out=out)
    y = out.reshape(out_channels, n, ho, wo).transpose(1, 0, 2, 3)  # a view: channels first
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray):
        grad = g.transpose(1, 0, 2, 3).reshape(out_channels, -1)  # no copy if channels first
        if relu:
            grad = (fused.bias_relu_backward(grad, out, with_bias=False)[0] if in_c
                    else grad * (out > 0))
        gb = grad.sum(axis=1) if bias is not None and bias.requires_grad else None
        gx, gw = _products_backward(grad, cols, x, weight, stride, padding, in_c)
        return gx, gw, gb

    return Tensor._result(y, parents, "Conv2dReLU" if relu else "Conv2d", backward)


def _products_backward(grad: np.ndarray, cols: np.ndarray, x: Tensor, weight: Tensor,
                       stride: tuple[int, int], padding: tuple[int, int],
                       in_c: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """dx and dW of a convolution from dY as an (O, N·Ho·Wo) matrix: two products and col2im,
    each only when its input requires a gradient."""
    weights = weight.data.reshape(weight.shape[0], -1)
    gw = None
    if weight.requires_grad:
        # dWᵀ = cols @ dYᵀ, the transpose of dW = dY @ colsᵀ: the same sums, a long reduction
        # over N·Ho·Wo to a tiny result, whose columns are the O output channels (a few dozen:
        # one panel of NR or two, which the small rung's edge kernels fill; with 16 or fewer,
        # its dot products, which take the orientation that fills their tiles best). dYᵀ is a
        # transposed view, as the bench measures with ":nt"; which orientation is faster
        # depends on the rung and the machine: measure both, e.g. for the CNN's second layer
        # `python -m krypton.bench --shapes 144x25088x32:nt 32x25088x144:nt`. The transpose
        # back is a tiny copy.
        gw = backends.matmul(cols, grad.T).T.reshape(weight.shape)
    gx = None
    if x.requires_grad:
        dcols = backends.matmul(weights.T, grad)
        gx = (fused.col2im(dcols, x.shape, weight.shape[2:], stride, padding,
                           threads=backends.kernel_threads()) if in_c
              else col2im(dcols, x.shape, weight.shape[2:], stride, padding))
    return gx, gw


def conv2d_relu_pool(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                     padding: Any = 0, pool_size: Any = 2, pool_stride: Any = None) -> Tensor:
    """``max_pool2d(relu(conv2d(x, weight, bias, stride, padding)), pool_size, pool_stride)``
    as one graph node: what ``nn.Sequential`` runs for a Conv2d, a ReLU and a MaxPool2d.

    The ReLU moves after the pooling, where it sees a quarter of the values (2 x 2 windows):
    ``max(relu(v)) = relu(max(v))``, and the window's winner gets the gradient exactly when the
    ReLU lets it through. So the forward pass is the product, then one C pass that adds the
    bias, takes each window's maximum (remembering where it was) and the ReLU; the backward
    pass scatters each window's gradient, masked by the ReLU, into dY and sums it for the
    bias, in one pass, and the full-size ReLU output and its mask are never made. The fused
    C kernels only (csrc/conv.c); the NumPy reference is the three operations in turn.
    """
    pool_size = as_pair("pool_size", pool_size, 1)
    pool_stride = pool_size if pool_stride is None else as_pair("pool_stride", pool_stride, 1)
    stride, padding = as_pair("stride", stride, 1), as_pair("padding", padding, 0)
    _checked("conv2d_relu_pool", x, weight, bias)
    if not _fusable(x.data, weight.data):
        return max_pool2d(conv2d_relu(x, weight, bias, stride, padding), pool_size, pool_stride)
    out_channels, _, kh, kw = weight.shape
    _check_window("conv2d_relu_pool", x.shape, (kh, kw), padding)
    n, _, h, w = x.shape
    ho, wo = output_size(h, kh, stride[0], padding[0]), output_size(w, kw, stride[1], padding[1])
    _check_window("conv2d_relu_pool (its max-pooling)", (n, out_channels, ho, wo), pool_size,
                  (0, 0))
    threads = backends.kernel_threads()  # the C passes split planes as the products split rows
    cols = fused.im2col(x.data, (kh, kw), stride, padding, threads=threads)
    out = backends.matmul(weight.data.reshape(out_channels, -1), cols)  # (O, N·Ho·Wo)
    conv = out.reshape(out_channels, n, ho, wo).transpose(1, 0, 2, 3)  # channels first
    pooled, argmax = fused.max_pool2d(conv, pool_size, pool_stride,
                                      None if bias is None else bias.data, relu=True,
                                      threads=threads)
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray):
        want_bias = bias is not None and bias.requires_grad
        gz, gb = fused.max_pool2d_backward(g, argmax, conv.shape, out=pooled,
                                           with_bias=want_bias, threads=threads)
        grad = gz.transpose(1, 0, 2, 3).reshape(out_channels, -1)  # channels first: a view
        gx, gw = _products_backward(grad, cols, x, weight, stride, padding, True)
        return gx, gw, gb

    return Tensor._result(pooled, parents, "Conv2dReLUMaxPool2d", backward)


def max_pool2d(x: Tensor, kernel_size: Any, stride: Any = None) -> Tensor:
    """The largest value of each ``kernel_size`` window of ``x`` (N, C, H, W), windows
    ``stride`` apart (default: ``kernel_size``, windows side by side), as ``F.max_pool2d``.

    Computed as im2col would see it, one kernel offset at a time: the (i, j) entries of every
    window form one strided slice of ``x``, so the maximum is kh·kw element-wise maxima of
    output-sized arrays (no copy of the windows). The gradient goes to the first largest entry
    of each window, in row-major order (PyTorch's choice); windows that overlap (stride <
    kernel) add their gradients.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"max_pool2d takes a Tensor, got {type(x).__name__}: wrap it as "
                        f"krypton.Tensor(x)")
    kernel = as_pair("kernel_size", kernel_size, 1)
    stride = kernel if stride is None else as_pair("stride", stride, 1)
    if x.ndim != 4:
        raise ValueError(f"max_pool2d takes an input of shape (N, C, H, W), got shape "
                         f"{x.shape}")
    _check_window("max_pool2d", x.shape, kernel, (0, 0))
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = output_size(x.shape[2], kh, sh, 0), output_size(x.shape[3], kw, sw, 0)

    if _fusable(x.data):  # one pass in C that keeps each window's argmax (csrc/conv.c)
        threads = backends.kernel_threads()
        top, argmax = fused.max_pool2d(x.data, kernel, stride, threads=threads)
        return Tensor._result(top, (x,), "MaxPool2d", lambda g: (
            fused.max_pool2d_backward(g, argmax, x.shape, threads=threads,
                                      channels_first=_channels_first(x.data))[0],))

    def offset(array: np.ndarray, i: int, j: int) -> np.ndarray:
        return array[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]

    out = offset(x.data, 0, 0).copy(order="K")  # keeps x's layout (channels first)
    for i in range(kh):
        for j in range(kw):
            np.maximum(out, offset(x.data, i, j), out=out)

    def backward(g: np.ndarray):
        gx = np.zeros_like(x.data)
        unclaimed = np.ones(out.shape, dtype=bool)  # windows whose maximum has no gradient yet
        side_by_side = sh >= kh and sw >= kw  # then each offset's slices of gx are disjoint
        for i in range(kh):
            for j in range(kw):
                first = np.equal(offset(x.data, i, j), out)
                first &= unclaimed
                unclaimed ^= first
                if side_by_side:
                    np.multiply(g, first, out=offset(gx, i, j))
                else:
                    offset(gx, i, j)[...] += g * first
        return (gx,)

    return Tensor._result(out, (x,), "MaxPool2d", backward)


def _channels_first(array: np.ndarray) -> bool:
    """Whether an (N, C, H, W) array has its channels outermost in memory, as conv2d's
    outputs do (a gradient is made in its input's layout, so products read it in place)."""
    return array.strides[0] < array.strides[1]
