"""Reference solutions to notebook 09's exercises: read them after trying, not before.

Import from the notebook (its folder is the working directory) with
``solutions = importlib.import_module("solutions.09_mnist_solutions")``.
"""

from __future__ import annotations


def _matmul_flops_per_image(sizes) -> int:
    # Forward x @ W^T, backward dW and dx: three products per layer, the first layer's dx
    # skipped (the images need no gradient). Each costs 2 * inputs * outputs per image.
    layers = list(zip(sizes[:-1], sizes[1:]))
    return sum(2 * n_in * n_out * (2 if index == 0 else 3)
               for index, (n_in, n_out) in enumerate(layers))


def _elements_per_image(sizes) -> int:
    # The element-wise work (bias, ReLU, softmax, their gradients) is per activation.
    return sum(sizes[1:])


# Exercise 1: predict the epoch time of a wider (or deeper) MLP from the measured 784-256-10 run.

def predicted_epoch_seconds(sizes, best, base_sizes=(784, 256, 10)) -> float:
    """Scale ``best``'s matmul time by the FLOPs and the rest by the activations.

    The optimizer's update scales with the parameter count instead (and Adam does about three
    times SGD's element-wise work per parameter), so this prediction is low when the rest is
    dominated by the update; comparing it with the measurement tells which part of the rest
    grew.
    """
    matmul = best.matmul_seconds * _matmul_flops_per_image(sizes) \
        / _matmul_flops_per_image(base_sizes)
    other = (best.epoch_seconds - best.matmul_seconds) * _elements_per_image(sizes) \
        / _elements_per_image(base_sizes)
    return matmul + other


# Exercise 2 is a profile, not code. One way, from the notebook:
#
#     import cProfile, pstats
#     cProfile.run("train.train(train.build_mlp((784, 256, 10)), data, fastest, epochs=1, "
#                  "max_batches=100, progress=False, log=None)", "step.prof")
#     pstats.Stats("step.prof").sort_stats("cumtime").print_stats(15)
#
# Read the rows outside backends.matmul. With the fused kernels on (the default), the step's
# element-wise work is one C call each (the kr_* rows: bias + ReLU and its backward, softmax and
# cross-entropy and theirs, the optimizer's update of all four parameters in one call), and
# the rest is Python: the wrappers that check each call's arrays, the graph's nodes and
# backward walk, the optimizer's bookkeeping. A row's cumtime minus its C call's tottime is
# what the Python around it costs. Run it again inside `with backends.fused_kernels(False):`
# to see the NumPy references instead: each temporary array NumPy allocates is a pass over
# memory, which is what the C kernels remove (notebook 10 measures each one).
