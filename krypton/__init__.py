"""Krypton: build a fast matrix multiply in C, step by step, and train a neural network on it.

The kernel ladder (csrc/, one C file per rung) is compiled through cffi and run with
``krypton.matmul(a, b, kernel=...)``; ``krypton.KERNELS`` lists the rungs, slowest first.
The autograd engine (``krypton.Tensor``, ``krypton.nn``, ``krypton.optim``) does its matrix
products on the rung chosen with ``krypton.set_backend`` or ``with krypton.backend(...)``.

Where things live, lowest layer first (each module imports only from those before it):
``seam`` (C through cffi) -> ``machine`` (CPU, caches, probes) -> ``tuning`` (measured
defaults) -> ``kernels`` (the ladder, ``matmul``) -> ``timing`` (how every number is made)
-> ``backends`` (which kernel ``@`` uses) -> ``autograd`` (engine, tensor, functions) ->
``nn``, ``optim`` -> ``batches``, ``data`` -> ``train``; on top, the commands and figures ``bench``,
``ablation``, ``autotune``, ``plotting``, and the notebooks' ``notebook`` and ``cachesim``.
README.md's Layout section has the table.
"""

from krypton import data
from krypton.backends import BACKENDS, backend, get_backend, set_backend
from krypton.kernels import KERNELS, Kernel, compile_source, default_knobs, get_kernel, matmul
from krypton.seam import CompileError, CompilerNotFoundError
from krypton.autograd import Tensor, enable_grad, is_grad_enabled, no_grad, tensor
from krypton import nn, optim
from krypton.nn import manual_seed

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "KERNELS", "Kernel", "CompileError", "CompilerNotFoundError", "Tensor",
    "backend", "compile_source", "data", "default_knobs", "enable_grad", "get_backend",
    "get_kernel", "is_grad_enabled", "manual_seed", "matmul", "nn", "no_grad", "optim",
    "set_backend", "tensor",
]
