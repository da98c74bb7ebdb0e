"""The fused kernels of a training step (csrc/fused.c through krypton.fused) against their NumPy
references and float64 finite differences: awkward shapes, non-contiguous inputs, NaN and inf,
bad arguments refused by name, hostile calls into C answered with an error code, and the
backend switch (``krypton.backend("numpy")`` runs the references)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import krypton
from krypton import Tensor, backends, batches, fused, nn
from krypton.nn import functional as F

REPO = Path(__file__).resolve().parent.parent

SHAPES = [(1, 1), (1, 7), (7, 1), (13, 17), (128, 10), (3, 257), (0, 5)]
IDS = [f"{r}x{c}" for r, c in SHAPES]


def floats(shape, seed=0, low=-2.0, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def non_contiguous(array):
    """The same values seen through a strided view (every other column of a wider array)."""
    wide = np.zeros((array.shape[0], 2 * array.shape[1]), dtype=array.dtype)
    wide[:, ::2] = array
    view = wide[:, ::2]
    assert not view.flags.c_contiguous or view.size <= 1
    return view


def labels_for(rows, cols, seed=0):
    return np.random.default_rng(seed).integers(0, max(cols, 1), rows)


# --------------------------------------------------------------------------------------------
# Values against the NumPy references


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_bias_relu_forward_and_backward_equal_the_numpy_reference(shape, strided):
    x, bias, grad = floats(shape, 1), floats(shape[1:], 2), floats(shape, 3)
    y_ref = fused.bias_relu_numpy(x, bias)
    if strided:
        x, grad = non_contiguous(x), non_contiguous(grad)
    y = fused.bias_relu(x, bias)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(fused.bias_relu(x), fused.bias_relu_numpy(x))
    gx, gb = fused.bias_relu_backward(grad, y)
    gx_ref, gb_ref = fused.bias_relu_backward_numpy(np.ascontiguousarray(grad), y_ref)
    np.testing.assert_array_equal(gx, gx_ref)
    np.testing.assert_allclose(gb, gb_ref, rtol=1e-6, atol=1e-6)
    assert fused.bias_relu_backward(grad, y, with_bias=False)[1] is None


def test_bias_relu_writes_in_place_when_out_is_its_input():
    x, bias = floats((5, 9)), floats(9, 1)
    expected = fused.bias_relu_numpy(x, bias)
    same = fused.bias_relu(x, bias, out=x)
    assert same is x
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_softmax_cross_entropy_equals_the_numpy_reference(shape, strided):
    logits = floats(shape, 4, -20, 20)
    labels = labels_for(*shape)
    losses_ref, probs_ref = fused.softmax_cross_entropy_numpy(logits, labels)
    losses, probs = fused.softmax_cross_entropy(non_contiguous(logits) if strided else logits,
                                                labels)
    np.testing.assert_allclose(losses, losses_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, probs_ref, rtol=1e-5, atol=1e-7)
    for scale in (1.0 / max(shape[0], 1), floats(shape[:1], 5)):
        np.testing.assert_allclose(
            fused.softmax_cross_entropy_backward(probs, labels, scale),
            fused.softmax_cross_entropy_backward_numpy(probs_ref, labels, scale),
            rtol=1e-5, atol=1e-7)


def test_softmax_exponentials_are_accurate_over_the_whole_float32_range():
    # csrc/fused.c computes exp itself (vectorized): against float64 over every scale a
    # shifted logit can take, down to where exp underflows.
    shifted = -np.geomspace(1e-6, 100, 4001).astype(np.float32)
    logits = np.stack([shifted, np.zeros_like(shifted)], axis=1)
    losses, probs = fused.softmax_cross_entropy(logits, np.zeros(len(shifted), np.int64))
    e = np.exp(shifted.astype(np.float64))
    np.testing.assert_allclose(probs[:, 0], e / (1 + e), rtol=1e-6, atol=1e-37)
    np.testing.assert_allclose(losses, np.log1p(e) - shifted.astype(np.float64), rtol=1e-6)


def test_softmax_cross_entropy_of_huge_logits_is_finite():
    logits = np.array([[3e38, -3e38, 0.0], [1e30, 1e30, -1e30]], dtype=np.float32)
    losses, probs = fused.softmax_cross_entropy(logits, np.array([1, 0]))
    ref_losses, ref_probs = fused.softmax_cross_entropy_numpy(logits, np.array([1, 0]))
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs, ref_probs, atol=1e-7)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Gradients against central finite differences of the float64 reference


def finite_difference(function, x, step=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (function(up) - function(down)) / (2 * step)
    return grad


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (5, 1), (7, 9)], ids=str)
def test_bias_relu_backward_matches_finite_differences(shape):
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, shape)
    x[np.abs(x) < 0.05] = 0.5  # away from the kink, where the derivative exists
    bias = np.zeros(shape[1])
    weights = rng.uniform(-1, 1, shape)
    y = fused.bias_relu(x.astype(np.float32), bias.astype(np.float32))
    gx, gb = fused.bias_relu_backward(weights.astype(np.float32), y)
    loss_of_x = lambda v: np.sum(weights * fused.bias_relu_numpy(v, bias))  # noqa: E731
    loss_of_b = lambda b: np.sum(weights * fused.bias_relu_numpy(x, b))  # noqa: E731
    np.testing.assert_allclose(gx, finite_difference(loss_of_x, x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gb, finite_difference(loss_of_b, bias), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (5, 2), (7, 9)], ids=str)
def test_softmax_cross_entropy_backward_matches_finite_differences(shape):
    rng = np.random.default_rng(8)
    logits = rng.uniform(-3, 3, shape)
    labels = labels_for(*shape, seed=9)
    scale = rng.uniform(0.5, 2, shape[0])
    _, probs = fused.softmax_cross_entropy(logits.astype(np.float32), labels)
    grad = fused.softmax_cross_entropy_backward(probs, labels, scale.astype(np.float32))
    loss = lambda z: np.sum(scale * fused.softmax_cross_entropy_numpy(z, labels)[0])  # noqa
    np.testing.assert_allclose(grad, finite_difference(loss, logits), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# NaN and inf propagate as NumPy's


def special_values(shape, seed=0):
    x = floats(shape, seed)
    flat = x.reshape(-1)
    flat[::3] = np.nan
    flat[1::5] = np.inf
    flat[2::7] = -np.inf
    return x


def test_bias_relu_propagates_nan_and_inf_as_numpy():
    x, grad = special_values((6, 11)), special_values((6, 11), seed=1)
    bias = floats(11, 2)
    bias[3] = np.nan
    with np.errstate(invalid="ignore"):
        y_ref = fused.bias_relu_numpy(x, bias)
        gx_ref, gb_ref = fused.bias_relu_backward_numpy(grad, y_ref)
    y = fused.bias_relu(x, bias)
    np.testing.assert_array_equal(y, y_ref)  # NaN where NumPy has NaN, the same infinities
    gx, gb = fused.bias_relu_backward(grad, y)
    np.testing.assert_array_equal(gx, gx_ref)
    np.testing.assert_array_equal(np.isnan(gb), np.isnan(gb_ref))
    np.testing.assert_allclose(gb[np.isfinite(gb_ref)], gb_ref[np.isfinite(gb_ref)], rtol=1e-5)


def test_softmax_cross_entropy_propagates_nan_and_inf_as_numpy():
    logits = floats((6, 5), 3)
    logits[0, 2] = np.nan
    logits[1, :] = -np.inf
    logits[2, 4] = np.inf
    logits[3, 0] = -np.inf
    labels = np.array([0, 1, 4, 1, 2, 3])
    ref_losses, ref_probs = fused.softmax_cross_entropy_numpy(logits, labels)
    losses, probs = fused.softmax_cross_entropy(logits, labels)
    np.testing.assert_array_equal(np.isnan(probs), np.isnan(ref_probs))
    np.testing.assert_array_equal(np.isnan(losses), np.isnan(ref_losses))
    np.testing.assert_allclose(probs, ref_probs, rtol=1e-5, atol=1e-7)  # NaNs compare equal
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# The optimizer updates against their NumPy references (PyTorch: tests/test_fused_optim.py)

SGD_SETTINGS = [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, dampening=0.3),
                dict(momentum=0.9, nesterov=True, weight_decay=1e-2), dict(weight_decay=0.1)]


@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=str)
@pytest.mark.parametrize("shape", [(1,), (1, 1), (7, 3), (256, 33)], ids=str)
def test_sgd_step_equals_the_numpy_reference_over_several_steps(settings, shape):
    params = [floats(shape, 1), floats(shape, 1)]
    buffers = [np.empty_like(params[0]) if settings.get("momentum") else None for _ in params]
    for step in range(5):
        grad = floats(shape, 10 + step)
        for update, param, buffer in zip((fused.sgd_step, fused.sgd_step_numpy), params,
                                         buffers):
            update(param, grad, buffer, 0.05, first=step == 0, **settings)
        np.testing.assert_allclose(params[0], params[1], rtol=1e-6, atol=1e-7)
        if settings.get("momentum"):
            np.testing.assert_allclose(buffers[0], buffers[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
@pytest.mark.parametrize("shape", [(1,), (1, 1), (7, 3), (256, 33)], ids=str)
def test_adam_step_equals_the_numpy_reference_over_several_steps(weight_decay, shape):
    states = [[floats(shape, 1), np.zeros(shape, np.float32), np.zeros(shape, np.float32)]
              for _ in range(2)]
    for step in range(1, 6):
        grad = floats(shape, 20 + step)
        for update, (param, m, v) in zip((fused.adam_step, fused.adam_step_numpy), states):
            update(param, grad, m, v, step, 1e-2, 0.8, 0.99, 1e-8, weight_decay)
        for ours, reference in zip(*states):
            np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


# One call for a whole group (what optim makes): every parameter as its own call would update it

GROUP_SHAPES = [(1,), (7, 3), (1, 1), (257, 131), (0,), (5,)]  # one above the split threshold


@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_sgd_steps_on_a_group_equal_the_reference_on_each_parameter(settings, threads):
    params = [[floats(shape, i) for i, shape in enumerate(GROUP_SHAPES)] for _ in range(2)]
    buffers = [[np.empty_like(p) if settings.get("momentum") else None for p in group]
               for group in params]
    for step in range(3):
        grads = [floats(shape, 10 * step + i) for i, shape in enumerate(GROUP_SHAPES)]
        firsts = [step == 0] * len(grads)
        fused.sgd_steps(params[0], grads, buffers[0], firsts, 0.05, threads=threads, **settings)
        fused.sgd_steps_numpy(params[1], grads, buffers[1], firsts, 0.05, **settings)
        for ours, reference in zip(params[0], params[1]):
            np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("threads", [1, 2])
def test_adam_steps_on_a_group_equal_the_reference_on_each_parameter(threads):
    states = [[[floats(shape, i), np.zeros(shape, np.float32), np.zeros(shape, np.float32)]
               for i, shape in enumerate(GROUP_SHAPES)] for _ in range(2)]
    for step in range(1, 4):
        grads = [floats(shape, 10 * step + i) for i, shape in enumerate(GROUP_SHAPES)]
        steps = [step + i % 2 for i in range(len(grads))]  # parameters at different steps
        for update, group in zip((fused.adam_steps, fused.adam_steps_numpy), states):
            update([s[0] for s in group], grads, [s[1] for s in group], [s[2] for s in group],
                   steps, 1e-2, 0.8, 0.99, 1e-8, 1e-2, threads=threads)
        for ours, reference in zip(states[0], states[1]):
            for a, b in zip(ours, reference):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_group_updates_point_at_the_arrays_of_this_call_when_arrays_come_and_go():
    # The parameters' and states' pointers are built once per set of arrays (fused's cache of
    # stable operands): new arrays of the same shapes, a state swapped for a copy, or a list in
    # another order must each be updated where they are, and a freed array never reused.
    shapes = [(7, 3), (300, 130)]
    for trial in range(4):
        ours = [[floats(shape, trial + i), np.zeros(shape, np.float32),
                 np.zeros(shape, np.float32)] for i, shape in enumerate(shapes)]
        if trial % 2:
            ours.reverse()
        reference = [[array.copy() for array in entry] for entry in ours]
        for step in range(1, 3):
            grads = [floats(entry[0].shape, 40 + step + i) for i, entry in enumerate(ours)]
            if step == 2:                                 # a moment replaced, as a load would
                ours[0][1] = ours[0][1].copy()
            for update, group in ((fused.adam_steps, ours), (fused.adam_steps_numpy, reference)):
                update([e[0] for e in group], grads, [e[1] for e in group],
                       [e[2] for e in group], [step] * len(group), 1e-2, threads=2)
            for entry, expected in zip(ours, reference):
                for a, b in zip(entry, expected):
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        del ours, reference


def test_group_updates_take_strided_gradients_and_propagate_nan_and_inf_as_numpy():
    shapes = [(7, 3), (257, 131), (5,)]
    grads = [floats(shape, 30 + i) for i, shape in enumerate(shapes)]
    grads[0] = non_contiguous(grads[0])                  # a strided view: copied once
    grads[1][0, :3] = [np.nan, np.inf, -np.inf]
    grads[2][1] = np.nan
    for momentum in (0.0, 0.9):
        groups = [[floats(shape, i) for i, shape in enumerate(shapes)] for _ in range(2)]
        buffers = [[np.empty_like(p) if momentum else None for p in g] for g in groups]
        firsts = [True] * len(shapes)
        fused.sgd_steps(groups[0], grads, buffers[0], firsts, 0.1, momentum, threads=2)
        fused.sgd_steps_numpy(groups[1], grads, buffers[1], firsts, 0.1, momentum)
        for ours, reference in zip(*groups):
            np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
            np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-7)
    states = [[[floats(shape, i), np.zeros(shape, np.float32), np.zeros(shape, np.float32)]
               for i, shape in enumerate(shapes)] for _ in range(2)]
    for update, group in zip((fused.adam_steps, fused.adam_steps_numpy), states):
        params, moments, squares = ([entry[k] for entry in group] for k in range(3))
        with np.errstate(invalid="ignore"):  # inf / inf in the reference, as in C
            update(params, grads, moments, squares, [1] * len(shapes), 1e-2)
    for ours, reference in zip(states[0], states[1]):
        for a, b in zip(ours, reference):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_group_updates_refuse_lists_that_do_not_match():
    p, g = floats((3,)), floats((3,), 1)
    with pytest.raises(ValueError, match="grads has 2 entries for 1 parameters"):
        fused.sgd_steps([p], [g, g], [None], [False], 0.1)
    with pytest.raises(ValueError, match="firsts has 0 entries"):
        fused.sgd_steps([p], [g], [None], [], 0.1)
    with pytest.raises(ValueError, match="steps has 2 entries"):
        fused.adam_steps([p], [g], [np.zeros(3, np.float32)], [np.zeros(3, np.float32)],
                         [1, 2], 0.1)
    with pytest.raises(ValueError, match=r"grad has shape \(4,\), expected \(3,\)"):
        fused.sgd_steps([p, p], [g, floats((4,))], [None, None], [False, False], 0.1)


# --------------------------------------------------------------------------------------------
# The batch gather (DataLoader): the same rows as NumPy's indexing


@pytest.mark.parametrize("shape", [(1, 1), (9, 1), (1, 7), (300, 257), (50, 3, 5), (11,)],
                         ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int64])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gather_rows_equals_numpy_indexing(shape, dtype, threads):
    array = (np.arange(np.prod(shape)) % 251).astype(dtype).reshape(shape)
    rng = np.random.default_rng(0)
    for indices in (rng.integers(0, shape[0], 2 * shape[0] + 1), np.arange(shape[0])[::-1],
                    rng.permutation(shape[0])[::2], np.zeros(0, np.int64)):
        ours = batches.gather_rows(array, indices, threads)
        reference = batches.gather_rows_numpy(array, indices)
        assert ours.dtype == reference.dtype and ours.shape == reference.shape
        np.testing.assert_array_equal(ours, reference)
        assert ours.flags.c_contiguous and not np.shares_memory(ours, array)


def test_gather_rows_keeps_nan_and_inf_bit_for_bit():
    array = np.array([[np.nan, np.inf], [-np.inf, -0.0]], np.float32)
    ours = batches.gather_rows(array, [1, 0, 1])
    assert ours.tobytes() == array[[1, 0, 1]].tobytes()


@pytest.mark.parametrize("call, error, message", [
    (lambda: batches.gather_rows(np.zeros((4, 3), np.float32), [4]), IndexError,
     "index 4 is out of range for an array of 4 rows"),
    (lambda: batches.gather_rows(np.zeros((4, 3), np.float32), [0, -1]), IndexError,
     "index -1 is out of range"),
    (lambda: batches.gather_rows(np.zeros((4, 3), np.float32), [0.5]), TypeError,
     "indices must be a 1-D array of integers"),
    (lambda: batches.gather_rows(np.zeros((4, 3), np.float32), [[0]]), TypeError,
     "1-D array of integers"),
    (lambda: batches.gather_rows(np.zeros((4, 6), np.float32)[:, ::2], [0]), ValueError,
     "C-contiguous"),
    (lambda: batches.gather_rows(np.array([None, 1], dtype=object), [0]), TypeError,
     "not Python objects"),
    (lambda: batches.gather_rows([[1.0]], [0]), ValueError, "NumPy array"),
    (lambda: batches.gather_rows(np.zeros((4, 3), np.float32), [0], threads=0), ValueError,
     "threads"),
])
def test_gather_rows_refuses_bad_arguments_by_name(call, error, message):
    with pytest.raises(error, match=message):
        call()


SCALE, SHIFT = krypton.data.scale_shift("fashion-mnist")


@pytest.mark.parametrize("shape", [(1, 1), (9, 1), (1, 7), (300, 785), (60, 784)], ids=str)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gather_pixels_equals_standardizing_numpys_rows_bit_for_bit(shape, threads):
    pixels = (np.arange(np.prod(shape)) * 7 % 256).astype(np.uint8).reshape(shape)
    whole = batches.standardize_pixels(pixels, SCALE, SHIFT)
    rng = np.random.default_rng(1)
    for indices in (rng.integers(0, shape[0], 2 * shape[0] + 1), np.arange(shape[0])[::-1],
                    np.zeros(0, np.int64)):
        ours = batches.gather_pixels(pixels, indices, SCALE, SHIFT, threads)
        assert ours.dtype == np.float32 and ours.shape == (len(indices), shape[1])
        assert ours.tobytes() == whole[indices].tobytes()
        assert ours.tobytes() == batches.gather_pixels_numpy(pixels, indices, SCALE, SHIFT).tobytes()


def test_standardized_pixels_are_the_mean_and_std_of_their_unit_values():
    # scale and shift fold 1/255, the mean and the std into one multiply and one add: within
    # a few float32 roundings of ((p / 255) - mean) / std for every byte.
    mean, std = krypton.data.TRAIN_MEAN_STD["fashion-mnist"]
    values = batches.standardize_pixels(np.arange(256, dtype=np.uint8), SCALE, SHIFT)
    exact = (np.arange(256) / 255.0 - mean) / std
    np.testing.assert_allclose(values, exact, rtol=0, atol=4 * np.finfo(np.float32).eps * 3)


@pytest.mark.parametrize("call, error, message", [
    (lambda: batches.gather_pixels(np.zeros((4, 3), np.uint8), [4], 1.0, 0.0), IndexError,
     "index 4 is out of range for an array of 4 rows"),
    (lambda: batches.gather_pixels(np.zeros((4, 3), np.float32), [0], 1.0, 0.0), TypeError,
     "uint8"),
    (lambda: batches.gather_pixels(np.zeros((4, 3, 2), np.uint8), [0], 1.0, 0.0), TypeError,
     "2-D uint8"),
    (lambda: batches.gather_pixels(np.zeros((4, 6), np.uint8)[:, ::2], [0], 1.0, 0.0),
     TypeError, "C-contiguous"),
    (lambda: batches.gather_pixels(np.zeros((4, 3), np.uint8), [0.5], 1.0, 0.0), TypeError,
     "1-D array of integers"),
    (lambda: batches.gather_pixels(np.zeros((4, 3), np.uint8), [0], float("nan"), 0.0),
     ValueError, "scale must be a finite number"),
    (lambda: batches.gather_pixels(np.zeros((4, 3), np.uint8), [0], 1.0, "0"), ValueError,
     "shift must be a finite number"),
    (lambda: batches.gather_pixels(np.zeros((4, 3), np.uint8), [0], 1.0, 0.0, threads=0),
     ValueError, "threads"),
])
def test_gather_pixels_refuses_bad_arguments_by_name(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_loader_with_pixels_yields_the_batches_of_one_without(monkeypatch):
    pixels = (np.arange(50 * 6) % 256).astype(np.uint8).reshape(50, 6)
    images, labels = batches.standardize_pixels(pixels, SCALE, SHIFT), labels_for(50, 10)
    calls = []
    monkeypatch.setattr(batches, "gather_pixels",
                        lambda *a: calls.append(a[4]) or batches.gather_pixels_numpy(*a))
    for name in ("small", "numpy"):
        with krypton.backend(name):
            plain = krypton.data.DataLoader(images, labels, batch_size=16, seed=2)
            from_pixels = krypton.data.DataLoader(images, labels, batch_size=16, seed=2,
                                                  pixels=(pixels, SCALE, SHIFT))
            for (x, y), (x_ref, y_ref) in zip(from_pixels, plain, strict=True):
                assert x.tobytes() == x_ref.tobytes()
                np.testing.assert_array_equal(y, y_ref)
    assert len(calls) == 4   # in C under "small" only
    with pytest.raises(ValueError, match="pixels must be"):
        krypton.data.DataLoader(images, labels, 16, pixels=(pixels[:10], SCALE, SHIFT))
    with pytest.raises(ValueError, match="pixels must be"):
        krypton.data.DataLoader(images, labels, 16, pixels=(images, SCALE, SHIFT))


def test_data_loader_reads_the_pixels_while_they_match_the_images():
    pixels = (np.arange(40 * 6) % 256).astype(np.uint8).reshape(40, 6)
    images = batches.standardize_pixels(pixels, SCALE, SHIFT)
    data = krypton.data.Data("fashion-mnist", images, labels_for(40, 10), images[:4],
                             labels_for(4, 10), train_pixels=pixels, pixels_of=images)
    assert data.loader(8).pixels[0] is pixels
    same_shape = dataclasses.replace(data, train_images=images + 1)   # other images, same shape
    assert same_shape.loader(8).pixels is None
    fewer = dataclasses.replace(data, train_images=images[:20], train_labels=data.train_labels[:20])
    assert fewer.loader(8).pixels is None   # the pixels no longer match: the images are read
    assert [x.tobytes() for x, _ in fewer.loader(8, seed=1)] == \
        [x.tobytes() for x, _ in krypton.data.DataLoader(images[:20], fewer.train_labels, 8,
                                                         seed=1)]


def test_the_data_loader_gathers_in_c_only_where_the_fused_kernels_run(monkeypatch):
    images, labels = floats((50, 6)), labels_for(50, 10)
    calls = []
    monkeypatch.setattr(batches, "gather_rows",
                        lambda *a: calls.append(a[2]) or batches.gather_rows_numpy(*a))
    results = {}
    for name in ("small", "numpy"):
        with krypton.backend(name):
            loader = krypton.data.DataLoader(images, labels, batch_size=16, seed=2)
            results[name] = [(x.copy(), y.copy()) for x, y in loader]
    assert len(calls) == 4 and set(calls) == {backends.machine.cpu_count()}
    for (x, y), (x_ref, y_ref) in zip(results["small"], results["numpy"]):
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)
    with krypton.backend("small"), backends.fused_kernels(False):
        list(krypton.data.DataLoader(images, labels, batch_size=16))
    assert len(calls) == 4


# --------------------------------------------------------------------------------------------
# Through the autograd engine and the backend switch


def model_and_batch(seed=0):
    model = nn.Sequential(nn.Linear(11, 9), nn.ReLU(), nn.Linear(9, 7), nn.ReLU(),
                          nn.Linear(7, 5))
    x = floats((13, 11), seed)
    return model, x, labels_for(13, 5, seed)


def gradients(model, x, y):
    model.zero_grad()
    loss = F.cross_entropy(model(Tensor(x)), y)
    loss.backward()
    return loss.item(), [p.grad.data.copy() for p in model.parameters()]


def test_fused_and_reference_paths_give_the_same_loss_and_gradients():
    model, x, y = model_and_batch()
    with backends.fused_kernels(True):
        fused_loss, fused_grads = gradients(model, x, y)
    with backends.fused_kernels(False):
        loss, grads = gradients(model, x, y)
    assert fused_loss == pytest.approx(loss, rel=1e-6)
    for ours, reference in zip(fused_grads, grads):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


def test_sequential_runs_linear_then_relu_as_one_node():
    model, x, _ = model_and_batch()
    out = model(Tensor(x))
    nodes, _ = krypton.autograd.graph(out)
    ops = [node._op for node in nodes if node._op]
    assert ops == ["LinearReLU", "LinearReLU", "Linear"]
    with backends.fused_kernels(False):
        ops = [n._op for n in krypton.autograd.graph(model(Tensor(x)))[0] if n._op]
    assert ops == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]


def test_the_numpy_backend_runs_the_references(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a fused C kernel ran under the numpy backend")

    monkeypatch.setattr(fused, "compiled", refuse)
    model, x, y = model_and_batch()
    with krypton.backend("numpy"):
        assert not backends.uses_fused()
        gradients(model, x, y)
        krypton.optim.Adam(model.parameters()).step()
    with krypton.backend("naive"), backends.fused_kernels(False):
        assert not backends.uses_fused()
        gradients(model, x, y)


def test_float64_tensors_stay_on_the_references(monkeypatch):
    monkeypatch.setattr(fused, "compiled", lambda: (_ for _ in ()).throw(AssertionError))
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    loss = F.cross_entropy(x.relu(), np.array([0, 1, 2, 0]))
    loss.backward()
    assert x.grad.dtype == np.float64


def test_gradients_accumulate_in_place_across_backward_calls():
    w = Tensor(floats((3, 4)), requires_grad=True)
    (w * 2.0).sum().backward()
    first = w.grad
    (w * 3.0).sum().backward()
    assert w.grad is first
    np.testing.assert_array_equal(w.grad.data, np.full((3, 4), 5.0, np.float32))


def test_fused_kernels_switch_refuses_a_non_boolean():
    with pytest.raises(TypeError, match="expected True or False, got 'no'"):
        backends.set_fused_kernels("no")
    with pytest.raises(TypeError, match="expected True or False"):
        with backends.fused_kernels(0):
            pass


# --------------------------------------------------------------------------------------------
# Bad input: named errors from the wrappers, error codes from C


@pytest.mark.parametrize("call, error, message", [
    (lambda: fused.bias_relu(np.ones((2, 3))), TypeError, "x must be float32, got float64"),
    (lambda: fused.bias_relu([[1.0]]), TypeError, "x must be a NumPy array, got list"),
    (lambda: fused.bias_relu(np.ones(3, np.float32)), ValueError, "must be 2-D"),
    (lambda: fused.bias_relu(np.ones((2, 3), np.float32), np.ones(2, np.float32)), ValueError,
     r"bias has shape \(2,\), expected \(3,\)"),
    (lambda: fused.bias_relu(np.ones((2, 3), np.float32), out=np.ones((3, 2), np.float32)),
     ValueError, "out has shape"),
    (lambda: fused.bias_relu_backward(np.ones((2, 3), np.float32), np.ones((2, 2), np.float32)),
     ValueError, "y has shape"),
    (lambda: fused.softmax_cross_entropy(np.ones((2, 3), np.float32), [0, 3]), ValueError,
     "class indices in 0..2"),
    (lambda: fused.softmax_cross_entropy(np.ones((2, 3), np.float32), [0.5, 1]), TypeError,
     "integer class indices"),
    (lambda: fused.softmax_cross_entropy(np.ones((2, 3), np.float32), [0]), ValueError,
     r"labels has shape \(1,\), expected \(2,\)"),
    (lambda: fused.softmax_cross_entropy(np.ones((2, 0), np.float32), [0, 0]), ValueError,
     "no classes"),
    (lambda: fused.softmax_cross_entropy_backward(np.ones((2, 3), np.float32), [0, 1],
                                                  np.ones(3)), ValueError, "one per row"),
    (lambda: fused.sgd_step(np.ones((4, 4), np.float32).T, np.ones((4, 4), np.float32), None,
                            0.1), ValueError, "param is updated in place"),
    (lambda: fused.sgd_step(np.ones(3, np.float32), np.ones(4, np.float32), None, 0.1),
     ValueError, r"grad has shape \(4,\), expected \(3,\)"),
    (lambda: fused.sgd_step(np.ones(3, np.float32), np.ones(3, np.float32), None, 0.1, 0.9),
     ValueError, "needs a buffer"),
    (lambda: fused.adam_step(np.ones(3, np.float32), np.ones(3, np.float32),
                             np.ones(3, np.float64), np.ones(3, np.float32), 1, 0.1),
     TypeError, "exp_avg must be float32"),
    (lambda: fused.adam_step(*[np.ones(3, np.float32)] * 4, 0, 0.1), ValueError,
     "step counts from 1"),
])
def test_bad_arguments_are_refused_by_name(call, error, message):
    with pytest.raises(error, match=message):
        call()


HOSTILE_CALLS = r"""
import numpy as np
from krypton import fused
module = fused.compiled()
lib, ffi = module.lib, module.ffi
NULL = ffi.NULL
one = ffi.new("float[4]")
labels = ffi.new("int64_t[2]", [0, 9])
sizes, sizes2 = ffi.new("int64_t[]", [4]), ffi.new("int64_t[]", [4, 4])
zero = ffi.new("int64_t[]", [0])
negative = ffi.new("int64_t[]", [-4, 0])
rows = ffi.new("int64_t[]", [1, 0])
bytes4 = ffi.new("unsigned char[8]")
params, grads = ffi.new("float *[]", [one]), ffi.new("float *[]", [one])
params2, holes = ffi.new("float *[]", [one, one]), ffi.new("float *[]", [one, NULL])
nothing = ffi.new("float *[]", [NULL])
firsts, rates = ffi.new("int32_t[]", [1]), ffi.new("double[]", [0.1])
codes = [
    lib.kr_bias_relu_forward(-1, 3, one, NULL, one),
    lib.kr_bias_relu_forward(2, 2, NULL, NULL, one),
    lib.kr_bias_relu_backward(2, -5, one, one, one, NULL),
    lib.kr_bias_relu_backward(1, 1, one, NULL, one, NULL),
    lib.kr_softmax_xent_forward(2, 2, one, labels, one, one),    # label 9 of 2 classes
    lib.kr_softmax_xent_forward(1, 0, one, labels, one, one),    # no classes
    lib.kr_softmax_xent_forward(1, 2, NULL, labels, one, one),
    lib.kr_softmax_xent_backward(2, 2, one, labels, one, 0, one),
    lib.kr_softmax_xent_backward(1, 2, one, labels, one, -1, one),
    lib.kr_sgd_step(-3, sizes, params, grads, NULL, NULL, 0.1, 0.0, 0.0, 0.0, 0, 1),
    lib.kr_sgd_step(1, sizes, params, grads, NULL, NULL, 0.1, 0.0, 0.0, 0.0, 0, 0),  # threads
    lib.kr_sgd_step(1, sizes, params, grads, NULL, firsts, 0.1, 0.9, 0.0, 0.0, 0, 1),  # buffer
    lib.kr_sgd_step(1, sizes, params, grads, params, NULL, 0.1, 0.9, 0.0, 0.0, 0, 1),  # firsts
    lib.kr_sgd_step(1, NULL, params, grads, NULL, NULL, 0.1, 0.0, 0.0, 0.0, 0, 1),  # no sizes
    lib.kr_sgd_step(1, negative, params, grads, NULL, NULL, 0.1, 0.0, 0.0, 0.0, 0, 1),
    lib.kr_sgd_step(2, sizes2, params2, holes, NULL, NULL, 0.1, 0.0, 0.0, 0.0, 0, 1),  # NULL
    lib.kr_adam_step(1, sizes, params, NULL, params, params, rates, rates, 0.9, 0.999, 1e-8,
                     0.0, 1),
    lib.kr_adam_step(1, sizes, params, grads, params, params, rates, rates, 0.9, 0.999, 1e-8,
                     0.0, -2),
    lib.kr_adam_step(-1, sizes, params, grads, params, params, rates, rates, 0.9, 0.999, 1e-8,
                     0.0, 1),
    lib.kr_adam_step(1, sizes, params, grads, params, nothing, rates, rates, 0.9, 0.999, 1e-8,
                     0.0, 1),
    lib.kr_adam_step(1, sizes, params, grads, params, params, NULL, rates, 0.9, 0.999, 1e-8,
                     0.0, 1),
    lib.kr_gather_rows(-1, 4, one, 2, rows, one, 1),
    lib.kr_gather_rows(2, 4, NULL, 2, rows, one, 1),
    lib.kr_gather_rows(2, 4, one, 2, NULL, one, 1),
    lib.kr_gather_rows(2, 4, one, 1, rows, one, 1),    # row 1 of a 1-row source
    lib.kr_gather_rows(2, 4, one, 2, negative, one, 1),
    lib.kr_gather_rows(2, 4, one, 2, rows, one, 0),    # no threads
    lib.kr_gather_pixels(2, 4, NULL, 2, rows, 1.0, 0.0, one, 1),
    lib.kr_gather_pixels(2, 4, bytes4, 1, rows, 1.0, 0.0, one, 1),   # row 1 of a 1-row source
    lib.kr_gather_pixels(2, -4, bytes4, 2, rows, 1.0, 0.0, one, 1),
    lib.kr_gather_pixels(2, 4, bytes4, 2, rows, 1.0, 0.0, NULL, 1),
]
empty = [lib.kr_bias_relu_forward(0, 0, NULL, NULL, NULL),
         lib.kr_softmax_xent_forward(0, 3, NULL, NULL, NULL, NULL),
         lib.kr_sgd_step(0, NULL, NULL, NULL, NULL, NULL, 0.1, 0.9, 0.0, 0.0, 0, 2),
         lib.kr_sgd_step(1, zero, holes, holes, NULL, NULL, 0.1, 0.0, 0.0, 0.0, 0, 2),
         lib.kr_gather_rows(0, 4, NULL, 0, NULL, NULL, 2),
         lib.kr_gather_pixels(0, 4, NULL, 0, NULL, 1.0, 0.0, NULL, 2)]
print(codes, empty)
assert codes == [2] * len(codes) and empty == [0] * len(empty), (codes, empty)
print("refused")
"""


def test_c_entry_points_refuse_hostile_arguments_without_crashing():
    result = subprocess.run([sys.executable, "-c", HOSTILE_CALLS], capture_output=True,
                            text=True, cwd=REPO, timeout=300,
                            env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0 and "refused" in result.stdout, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# The training loop: fusion on by default, off with fused=False (--no-fused)


def tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((96, 12)).astype(np.float32)
    labels = rng.integers(0, 10, 96)
    return krypton.data.Data("mnist", images[:64], labels[:64], images[64:], labels[64:])


def test_train_runs_the_references_with_fused_false(monkeypatch):
    from krypton import train
    data = tiny_data()
    options = dict(epochs=2, batch_size=16, optimizer="adam", progress=False, log=None)
    fused_run = train.train(train.build_mlp((12, 8, 10), seed=0), data, "packed", **options)
    monkeypatch.setattr(fused, "compiled", lambda: (_ for _ in ()).throw(AssertionError))
    reference = train.train(train.build_mlp((12, 8, 10), seed=0), data, "packed", fused=False,
                            **options)
    np.testing.assert_allclose(fused_run.batch_losses, reference.batch_losses, rtol=1e-5)


def test_the_cli_has_a_no_fused_switch():
    from krypton import train
    assert train.build_parser().parse_args(["--no-fused"]).no_fused
    assert not train.build_parser().parse_args([]).no_fused


# --------------------------------------------------------------------------------------------
# Updates split over threads: a large parameter (above csrc/fused.c's KR_FUSED_SPLIT_MIN) gives
# the same numbers on one thread and on several, and a bad thread count is refused by name


@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=str)
def test_sgd_step_on_threads_equals_one_thread_bitwise(settings):
    params = [floats((257, 131), 3) for _ in range(3)]
    buffers = [np.empty_like(params[0]) if settings.get("momentum") else None for _ in params]
    for step in range(3):
        grad = floats((257, 131), 30 + step)
        for threads, param, buffer in zip((1, 2, 3), params, buffers):
            fused.sgd_step(param, grad, buffer, 0.05, first=step == 0, threads=threads,
                           **settings)
        np.testing.assert_array_equal(params[0], params[1])
        np.testing.assert_array_equal(params[0], params[2])


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_step_on_threads_equals_one_thread_bitwise(weight_decay):
    states = [[floats((257, 131), 4), np.zeros((257, 131), np.float32),
               np.zeros((257, 131), np.float32)] for _ in range(2)]
    for step in range(1, 4):
        grad = floats((257, 131), 40 + step)
        for threads, (param, m, v) in zip((1, 2), states):
            fused.adam_step(param, grad, m, v, step, 1e-2, weight_decay=weight_decay,
                            threads=threads)
        for one, two in zip(*states):
            np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_updates_refuse_a_bad_thread_count(threads):
    param, grad = floats((4,)), floats((4,), 1)
    with pytest.raises(ValueError, match="threads"):
        fused.sgd_step(param, grad, None, 0.1, threads=threads)
    with pytest.raises(ValueError, match="threads"):
        fused.adam_step(param, grad, np.zeros(4, np.float32), np.zeros(4, np.float32), 1, 0.1,
                        threads=threads)


def test_optimizer_updates_use_the_backend_threads():
    with krypton.backend("small", threads=1):
        assert backends.kernel_threads() == 1
    with krypton.backend("packed"):
        assert backends.kernel_threads() == 1
    with krypton.backend("numpy"):
        assert backends.kernel_threads() == 1
    with krypton.backend("small"):
        assert backends.kernel_threads() == krypton.machine.cpu_count()


# --------------------------------------------------------------------------------------------
# A convolution's pixel moves (csrc/conv.c) against krypton.autograd.conv's NumPy versions

from krypton.autograd import conv as conv_reference  # noqa: E402

# (N, C, H, W, kernel, stride, padding): batch 0 and 1, 1x1 images and kernels, primes,
# kernels as large as the padded image, strides larger than the kernel.
WINDOW_CASES = [
    (2, 3, 7, 6, (3, 3), (2, 1), (1, 0)),
    (1, 2, 5, 9, (5, 2), (1, 3), (2, 1)),
    (0, 2, 5, 5, (3, 3), (1, 1), (1, 1)),
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0)),
    (3, 1, 13, 11, (3, 3), (1, 1), (1, 1)),
    (2, 5, 4, 4, (6, 6), (1, 1), (1, 1)),
    (1, 3, 11, 7, (2, 3), (4, 5), (0, 2)),
]


def layouts(x):
    """x as the layouts a network hands the kernels: batch-first, channels-first (a transposed
    view), and a strided slice (copied by the wrapper)."""
    channels_first = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), x.dtype)
    wide[..., ::2] = x
    return {"batch-first": x, "channels-first": channels_first, "strided": wide[..., ::2]}


@pytest.mark.parametrize("case", WINDOW_CASES)
def test_im2col_and_col2im_equal_the_numpy_reference_bitwise(case):
    n, c, h, w, kernel, stride, padding = case
    x = floats((n, c, h, w), 7)
    for name, image in layouts(x).items():
        np.testing.assert_array_equal(fused.im2col(image, kernel, stride, padding),
                                      conv_reference.im2col(image, kernel, stride, padding),
                                      err_msg=name)
    cols = floats(conv_reference.im2col(x, kernel, stride, padding).shape, 8)
    back = fused.col2im(cols, x.shape, kernel, stride, padding)
    np.testing.assert_array_equal(back, conv_reference.col2im(cols, x.shape, kernel, stride,
                                                              padding))
    assert back.shape == x.shape and back.transpose(1, 0, 2, 3).flags.c_contiguous


POOL_WINDOWS = [((2, 3, 6, 8), (2, 2), (2, 2)), ((1, 2, 7, 5), (3, 3), (2, 2)),
                ((2, 1, 5, 6), (2, 2), (1, 1)), ((1, 4, 4, 9), (2, 3), (1, 2)),
                ((3, 2, 9, 7), (2, 2), (2, 2)), ((1, 1, 1, 1), (1, 1), (1, 1)),
                ((0, 3, 4, 4), (2, 2), (2, 2))]


def reference_pool(x, kernel, stride, grad, relu_bias=None):
    """max_pool2d (after bias and ReLU when relu_bias is given) and its input gradient, by
    the NumPy path of krypton.autograd."""
    xt = Tensor(x.copy(), requires_grad=True)
    with krypton.backend("numpy"):
        inner = xt if relu_bias is None else (xt + relu_bias[None, :, None, None]).relu()
        y = F.max_pool2d(inner, kernel, stride)
        y.backward(grad)
    return y.data, xt.grad.data


@pytest.mark.parametrize("shape, kernel, stride", POOL_WINDOWS)
def test_max_pool2d_and_its_backward_equal_the_numpy_reference(shape, kernel, stride):
    x = floats(shape, 11)
    x[..., 0, :2] = 1.5  # ties: the first of them wins, in both
    for name, image in layouts(x).items():
        out, argmax = fused.max_pool2d(image, kernel, stride)
        grad = floats(out.shape, 12)
        expected, expected_grad = reference_pool(x, kernel, stride, grad)
        np.testing.assert_array_equal(out, expected, err_msg=name)
        grad_x, none = fused.max_pool2d_backward(grad, argmax, x.shape)
        # equal where windows do not overlap; where they do, added in another order
        np.testing.assert_allclose(grad_x, expected_grad, rtol=1e-6, atol=1e-6, err_msg=name)
        assert none is None


@pytest.mark.parametrize("shape, kernel, stride", POOL_WINDOWS)
def test_max_pool2d_with_bias_and_relu_equals_pooling_relu_of_x_plus_bias(shape, kernel, stride):
    x, bias = floats(shape, 13), floats(shape[1:2], 14)
    out, argmax = fused.max_pool2d(x, kernel, stride, bias, relu=True)
    grad = floats(out.shape, 15)
    expected, expected_grad = reference_pool(x, kernel, stride, grad, relu_bias=bias)
    np.testing.assert_array_equal(out, expected)
    grad_x, grad_bias = fused.max_pool2d_backward(grad, argmax, x.shape, out=out,
                                                  with_bias=True)
    np.testing.assert_allclose(grad_x, expected_grad, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad_bias, expected_grad.sum(axis=(0, 2, 3)), rtol=1e-5,
                               atol=1e-5)


def test_max_pool2d_propagates_nan_and_inf_as_numpy():
    x = floats((1, 1, 4, 4), 16)
    x[0, 0, 0, 1], x[0, 0, 2, 2], x[0, 0, 3, 0] = np.nan, np.inf, -np.inf
    out, argmax = fused.max_pool2d(x, (2, 2), (2, 2))
    expected, _ = reference_pool(x, (2, 2), (2, 2), np.ones((1, 1, 2, 2), np.float32))
    np.testing.assert_array_equal(out, expected)  # NaN where NumPy has NaN, inf where inf
    assert argmax[0, 0, 0, 0] == 1 and argmax[0, 0, 1, 1] == 10  # the NaN, the inf


@pytest.mark.parametrize("call, error, message", [
    (lambda: fused.im2col(np.ones((1, 1, 3, 3), np.float32), (2,), 1, 0), ValueError,
     "kernel must be an int or a pair of ints"),
    (lambda: fused.im2col(np.ones((1, 1, 3, 3)), (2, 2), (1, 1), (0, 0)), TypeError,
     "x must be float32, got float64"),
    (lambda: fused.im2col(np.ones((3, 3), np.float32), (2, 2), (1, 1), (0, 0)), ValueError,
     r"must be 4-D \(N, C, H, W\)"),
    (lambda: fused.im2col(np.ones((1, 1, 3, 3), np.float32), (5, 2), (1, 1), (0, 0)),
     ValueError, "kernel 5x2 is larger than the padded input 3x3"),
    (lambda: fused.im2col(np.ones((1, 1, 3, 3), np.float32), (2, 2), (0, 1), (0, 0)),
     ValueError, "stride must be an int or a pair of ints >= 1"),
    (lambda: fused.col2im(np.ones((4, 5), np.float32), (1, 1, 3, 3), (2, 2), (1, 1), (0, 0)),
     ValueError, r"cols has shape \(4, 5\), expected \(4, 4\)"),
    (lambda: fused.max_pool2d(np.ones((1, 2, 3, 3), np.float32), (2, 2), (2, 2),
                              np.ones(3, np.float32)), ValueError, "bias has shape"),
    (lambda: fused.max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32),
                                       np.zeros((1, 1, 1, 1), np.int64), (1, 1, 2, 2)),
     TypeError, "argmax must be the int32 array"),
    (lambda: fused.max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32),
                                       np.zeros((1, 1, 1, 2), np.int32), (1, 1, 2, 2)),
     ValueError, "argmax has shape"),
    (lambda: fused.max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32),
                                       np.full((1, 1, 1, 1), 4, np.int32), (1, 1, 2, 2)),
     RuntimeError, "kr_maxpool2d_backward refused"),  # an argmax outside its plane
])
def test_conv_kernels_refuse_bad_arguments_by_name(call, error, message):
    with pytest.raises(error, match=message):
        call()


HOSTILE_CONV_CALLS = r"""
from krypton import fused
module = fused.compiled_conv()
lib, ffi = module.lib, module.ffi
NULL = ffi.NULL
buf = ffi.new("float[64]")
idx = ffi.new("int32_t[4]", [0, 1, 99, -1])
codes = [
    lib.kr_im2col(1, 1, 4, 4, buf, 16, 16, 3, 3, 1, 1, 0, 0, 3, 2, buf, 1),  # wrong Ho
    lib.kr_im2col(1, 1, 4, 4, buf, 16, 16, 5, 3, 1, 1, 0, 0, 0, 2, buf, 1),  # kernel too big
    lib.kr_im2col(1, 1, 4, 4, buf, 16, 16, 3, 3, 0, 1, 0, 0, 2, 2, buf, 1),  # stride 0
    lib.kr_im2col(1, 1, 4, 4, NULL, 16, 16, 3, 3, 1, 1, 0, 0, 2, 2, buf, 1),
    lib.kr_im2col(-1, 1, 4, 4, buf, 16, 16, 3, 3, 1, 1, 0, 0, 2, 2, buf, 1),
    lib.kr_im2col(1, 1, 4, 4, buf, 16, 16, 3, 3, 1, 1, 0, 0, 2, 2, buf, 0),  # no threads
    lib.kr_col2im(1, 1, 4, 4, buf, 3, 3, 1, 1, -1, 0, 2, 2, buf, 16, 16, 1),  # padding < 0
    lib.kr_col2im(1, 1, 4, 4, buf, 3, 3, 1, 1, 0, 0, 2, 2, NULL, 16, 16, 1),
    lib.kr_col2im(1, 1, 4, 4, buf, 3, 3, 1, 1, 0, 0, 2, 2, buf, 16, 16, -4),
    lib.kr_maxpool2d_forward(1, 1, 4, 4, buf, 16, 16, 2, 2, 2, 2, 3, 2, NULL, 0, buf,
                             idx, 4, 4, 1),                                  # wrong Ho
    lib.kr_maxpool2d_forward(1, 1, 4, 4, buf, -16, 16, 2, 2, 2, 2, 2, 2, NULL, 0, buf,
                             idx, 4, 4, 1),                                  # negative step
    lib.kr_maxpool2d_forward(1, 1, 4, 4, buf, 16, 16, 2, 2, 2, 2, 2, 2, NULL, 0, buf,
                             NULL, 4, 4, 1),
    lib.kr_maxpool2d_backward(1, 1, 2, 2, 2, 2, buf, 4, 4, idx, NULL, 4, 4, buf, 4, 4,
                              NULL, 1),                                      # argmax 99, -1
    lib.kr_maxpool2d_backward(1, 1, 2, 2, 2, 2, NULL, 4, 4, idx, NULL, 4, 4, buf, 4, 4,
                              NULL, 1),
    lib.kr_maxpool2d_backward(1, 1, 1 << 40, 1 << 40, 1, 1, buf, 1, 1, idx, NULL, 1, 1, buf,
                              1, 1, NULL, 1),                                # plane too big
    lib.kr_maxpool2d_backward(1, 1, 2, 2, 1, 1, buf, 4, 4, idx, NULL, 4, 4, buf, 4, 4,
                              NULL, 0),                                      # no threads
]
empty = [lib.kr_im2col(0, 3, 4, 4, NULL, 16, 16, 3, 3, 1, 1, 1, 1, 4, 4, NULL, 2),
         lib.kr_col2im(0, 3, 4, 4, NULL, 3, 3, 1, 1, 1, 1, 4, 4, NULL, 16, 16, 2),
         lib.kr_maxpool2d_forward(2, 0, 4, 4, NULL, 16, 16, 2, 2, 2, 2, 2, 2, NULL, 1, NULL,
                                  NULL, 4, 4, 2)]
print(codes, empty)
assert codes == [2] * len(codes) and empty == [0] * len(empty), (codes, empty)
print("refused")
"""


def test_conv_c_entry_points_refuse_hostile_arguments_without_crashing():
    result = subprocess.run([sys.executable, "-c", HOSTILE_CONV_CALLS], capture_output=True,
                            text=True, cwd=REPO, timeout=300,
                            env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0 and "refused" in result.stdout, result.stdout + result.stderr


def test_conv_kernels_fuzzed_against_the_references():
    """Random shapes, windows and layouts: im2col, col2im and max-pooling equal NumPy's."""
    rng = np.random.default_rng(17)
    checked = 0
    while checked < 120:
        n, c, h, w = (int(v) for v in rng.integers([0, 1, 1, 1], [4, 5, 12, 12]))
        kernel, stride = tuple(rng.integers(1, 6, 2)), tuple(rng.integers(1, 4, 2))
        padding = tuple(rng.integers(0, 3, 2))
        if kernel[0] > h + 2 * padding[0] or kernel[1] > w + 2 * padding[1]:
            continue
        checked += 1
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        image = layouts(x)[("batch-first", "channels-first", "strided")[checked % 3]]
        cols = fused.im2col(image, kernel, stride, padding)
        np.testing.assert_array_equal(cols, conv_reference.im2col(x, kernel, stride, padding))
        np.testing.assert_array_equal(fused.col2im(cols, x.shape, kernel, stride, padding),
                                      conv_reference.col2im(cols, x.shape, kernel, stride,
                                                            padding))
        if kernel[0] <= h and kernel[1] <= w:
            out, argmax = fused.max_pool2d(image, kernel, stride)
            grad = rng.standard_normal(out.shape).astype(np.float32)
            expected, expected_grad = reference_pool(x, kernel, stride, grad)
            np.testing.assert_array_equal(out, expected)
            np.testing.assert_allclose(fused.max_pool2d_backward(grad, argmax, x.shape)[0],
                                       expected_grad, rtol=1e-6, atol=1e-6)


def test_conv_kernels_on_threads_equal_one_thread_bitwise():
    """The planes split over threads; each plane's arithmetic is the same, so are the results."""
    x = floats((8, 16, 28, 28), 18).transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)
    bias = floats((16,), 19)
    for threads in (2, 3):
        np.testing.assert_array_equal(fused.im2col(x, 3, 1, 1, threads=threads),
                                      fused.im2col(x, 3, 1, 1))
        cols = fused.im2col(x, 3, 1, 1)
        np.testing.assert_array_equal(fused.col2im(cols, x.shape, 3, 1, 1, threads=threads),
                                      fused.col2im(cols, x.shape, 3, 1, 1))
        one = fused.max_pool2d(x, 2, 2, bias, relu=True)
        many = fused.max_pool2d(x, 2, 2, bias, relu=True, threads=threads)
        for mine, theirs in zip(many, one):
            np.testing.assert_array_equal(mine, theirs)
        grad = floats(one[0].shape, 20)
        one_back = fused.max_pool2d_backward(grad, one[1], x.shape, one[0], with_bias=True)
        many_back = fused.max_pool2d_backward(grad, one[1], x.shape, one[0], with_bias=True,
                                              threads=threads)
        for mine, theirs in zip(many_back, one_back):
            np.testing.assert_array_equal(mine, theirs)
