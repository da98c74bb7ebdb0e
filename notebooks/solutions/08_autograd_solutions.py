"""Reference solutions to notebook 08's exercises: read them after trying, not before.

Import from the notebook (its folder is the working directory) with
``solutions = importlib.import_module("solutions.08_autograd_solutions")`` and check any of
them as the notebook checks yours, e.g. ``exercises.check_backward("add", solutions.add_backward)``.
"""

from __future__ import annotations

import time

import numpy as np

import krypton


# Build it yourself (section 12): each backward adds (+=) into its inputs' gradients, so a
# value used twice, or a leaf reached along two paths, collects the sum of both contributions.

def add_backward(a, b, out):
    """out = a + b: the local derivative is 1 for both inputs."""
    a.grad += out.grad
    b.grad += out.grad


def mul_backward(a, b, out):
    """out = a * b (element-wise): each input's local derivative is the other input."""
    a.grad += b.data * out.grad
    b.grad += a.data * out.grad


def matmul_backward(a, b, out):
    """out = a @ b: dA = dY B^T (M x K), dB = A^T dY (K x N), read off the shapes."""
    a.grad += out.grad @ b.data.T
    b.grad += a.data.T @ out.grad


# Exercise 1: abs and softplus, written as leaky_relu is.

def abs_(x):
    data = x.numpy()
    return krypton.Tensor._result(np.abs(data), (x,), "Abs", lambda g: (g * np.sign(data),))


def softplus(x):
    data = x.numpy()
    # log(1 + e^x) without overflow for large x: max(x, 0) + log1p(e^-|x|).
    out = np.maximum(data, 0) + np.log1p(np.exp(-np.abs(data)))
    sigmoid = 1 / (1 + np.exp(-data))
    return krypton.Tensor._result(out, (x,), "Softplus", lambda g: (g * sigmoid,))


# Exercise 2 has no code to hand in: a backward without the slope is flagged on the negative
# inputs only (by about slope * |G|); one without g is off everywhere; and an add that skips
# _unbroadcast returns a (4, 3) gradient for the (3,) input, which backward() refuses with a
# message naming the operation and both shapes: the line to blame is the one returning g for b.


# Exercise 3: the backward pass's share of a step's matmul time.

def backward_matmul_share(training_step, phase: dict, steps: int = 20,
                          backend: str = "packed") -> tuple[float, float]:
    """(share of matmul seconds, share of matmul FLOPs) spent in the backward pass.

    ``training_step`` and ``phase`` are notebook 08's: the step sets ``phase["now"]`` to
    "forward", "backward" or "step". Each product is timed by wrapping the seam, as
    ``record_matmuls`` wraps it to record shapes.
    """
    from krypton import backends

    seconds = {"forward": 0.0, "backward": 0.0}
    flops = {"forward": 0, "backward": 0}
    original = backends.matmul

    def timed_matmul(a, b):
        start = time.perf_counter()
        out = original(a, b)
        part = "backward" if phase["now"] == "backward" else "forward"
        seconds[part] += time.perf_counter() - start
        flops[part] += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return out

    with krypton.backend(backend):
        training_step()  # warm-up, untimed: the first call loads the kernel and its buffers
    backends.matmul = timed_matmul
    try:
        with krypton.backend(backend):
            for _ in range(steps):
                training_step()
    finally:
        backends.matmul = original
    return (seconds["backward"] / sum(seconds.values()),
            flops["backward"] / sum(flops.values()))
