"""A define-by-run autograd engine: ``Tensor``, its operations and ``backward``.

Read it in this order:

1. ``krypton/autograd/engine.py``, the engine (about 150 lines, one sitting): gradient mode
   (``no_grad``), the topological order of the graph, and ``backward``, the walk that applies
   the chain rule node by node and adds up the gradients that reach each input.
2. ``krypton/autograd/ops.py``, the catalogue: a ``Tensor`` wraps a NumPy array (``.data``);
   each operation computes its value and records its inputs and a small ``backward`` closure.
   That record *is* the graph, built as the Python code runs ("define by run"). Matrix products
   go through ``krypton.backends.matmul``, so forward and backward run on the kernel ladder.
3. ``krypton/autograd/functions.py``: the fused layers (``linear``, ``linear_relu``) and loss
   (``cross_entropy``), whose element-wise work runs in ``krypton.fused``'s C kernels.
4. ``krypton/autograd/conv.py``: a convolution as one matrix product (im2col, col2im),
   ``conv2d`` and ``max_pool2d``.

Names and semantics follow PyTorch, so what is learned here transfers. Every name of the four
modules a learner or notebook uses is importable from here.
"""

from krypton.autograd.conv import (col2im, conv2d, conv2d_relu, conv2d_relu_pool, im2col,
                                   max_pool2d)
from krypton.autograd.engine import (backward, enable_grad, graph, is_grad_enabled, no_grad,
                                     topological_order)
from krypton.autograd.functions import cross_entropy, linear, linear_relu
from krypton.autograd.ops import FLOAT_DTYPES, Tensor, _unbroadcast, matmul, tensor

_topological_order = topological_order  # the name notebook 07 shows

__all__ = ["FLOAT_DTYPES", "Tensor", "backward", "col2im", "conv2d", "conv2d_relu",
           "conv2d_relu_pool", "cross_entropy",
           "enable_grad", "graph", "im2col", "is_grad_enabled", "linear", "linear_relu", "matmul",
           "max_pool2d", "no_grad", "tensor", "topological_order"]
