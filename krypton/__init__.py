"""Krypton: build a fast matrix multiply in C, step by step, and train a neural network on it.

The kernel ladder (csrc/, one C file per rung) is compiled through cffi and run with
``krypton.matmul(a, b, kernel=...)``; ``krypton.KERNELS`` lists the rungs, slowest first.
"""

from krypton import data
from krypton.kernels import KERNELS, Kernel, compile_source, default_knobs, get_kernel, matmul
from krypton.seam import CompileError, CompilerNotFoundError

__version__ = "0.1.0"

__all__ = [
    "KERNELS", "Kernel", "CompileError", "CompilerNotFoundError", "compile_source",
    "data", "default_knobs", "get_kernel", "matmul",
]
