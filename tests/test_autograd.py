"""The autograd engine: every operation's gradient against finite differences (float64), the
backward pass's bookkeeping (accumulation, freeing, deep graphs), and backend switching."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import krypton
from krypton import Tensor, backends
from krypton.autograd import engine, graph

RNG = np.random.default_rng(1234)


def numeric_gradient(f, arrays, index, eps=1e-6):
    """d sum(f(arrays) * weights) / d arrays[index] by central differences."""
    x = arrays[index]
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        plus = f(*arrays)
        x[i] = old - eps
        minus = f(*arrays)
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def check_gradients(op, *arrays, tolerance=1e-6):
    """Compare autograd's gradient of sum(op(...) * W), W random, with finite differences."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    inputs = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = op(*inputs)
    weights = RNG.standard_normal(out.shape)

    def scalar(*values):
        return float(np.sum(op(*[Tensor(v) for v in values]).data * weights))

    (out * Tensor(weights)).sum().backward()
    for index, tensor in enumerate(inputs):
        expected = numeric_gradient(scalar, arrays, index)
        assert tensor.grad is not None, f"input {index} got no gradient"
        assert tensor.grad.shape == tensor.shape
        np.testing.assert_allclose(tensor.grad.data, expected, rtol=tolerance, atol=tolerance,
                                   err_msg=f"gradient of input {index}")


def r(*shape, low=-1.0, high=1.0):
    return RNG.uniform(low, high, shape)


BINARY_SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),       # row vector broadcast over rows
    ((3, 1), (1, 4)),     # both directions
    ((4,), (3, 4)),       # the first operand is the one broadcast
    ((2, 3, 4), (3, 1)),
    ((3, 4), ()),         # a 0-d tensor
]


@pytest.mark.parametrize("a_shape, b_shape", BINARY_SHAPES)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_operations_with_broadcasting(op, a_shape, b_shape):
    functions = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
                 "mul": lambda a, b: a * b, "div": lambda a, b: a / b}
    b = r(*b_shape, low=0.5, high=2.0) if op == "div" else r(*b_shape)
    check_gradients(functions[op], r(*a_shape), b)


@pytest.mark.parametrize("name, op", [
    ("scalar add", lambda a: 2.5 + a - 1), ("scalar sub", lambda a: 3 - a),
    ("scalar mul", lambda a: 3 * a * 0.5), ("scalar div", lambda a: 2 / (a + 3) / 4),
    ("neg", lambda a: -a), ("pow 2", lambda a: a ** 2), ("pow -1.5", lambda a: (a + 2) ** -1.5),
    ("exp", lambda a: a.exp()), ("log", lambda a: (a + 2).log()), ("tanh", lambda a: a.tanh()),
    ("sigmoid", lambda a: a.sigmoid()), ("relu", lambda a: a.relu()),
    ("reshape", lambda a: a.reshape(4, 3)), ("reshape -1", lambda a: a.reshape(-1)),
    ("T", lambda a: a.T), ("ndarray on the left", lambda a: np.ones((3, 4)) * a),
])
def test_unary_operations(name, op):
    a = r(3, 4)
    a[np.abs(a) < 0.05] = 0.3  # keep relu's kink away from the finite difference
    check_gradients(op, a)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "mean", "max"])
def test_reductions_over_each_axis(reduction, axis, keepdims):
    check_gradients(lambda a: getattr(a, reduction)(axis=axis, keepdims=keepdims), r(3, 5))


def test_max_shares_the_gradient_between_ties():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[0, 0.5, 0.5], [1, 0, 0]])


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_and_log_softmax(op, axis):
    check_gradients(lambda a: getattr(a, op)(axis=axis), r(4, 5, low=-3, high=3))


@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (4, 5)), ((1, 7), (7, 1)),
                                              ((4,), (4, 3)), ((3, 4), (4,)), ((5,), (5,)),
                                              ((6, 1), (1, 6))])
def test_matmul(a_shape, b_shape):
    check_gradients(lambda a, b: a @ b, r(*a_shape), r(*b_shape))


def test_matmul_with_transposed_operands():
    check_gradients(lambda a, b: a.T @ b.T, r(4, 3), r(5, 4))


@pytest.mark.parametrize("index", [
    (slice(1, 3),), (slice(None), 2), (np.array([0, 2, 2, 1]),), (np.array([0, 1]), np.array([2, 3])),
    (slice(None, None, -1),), (Ellipsis, 0)])
def test_indexing(index):
    check_gradients(lambda a: a[index], r(3, 4))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(reduction):
    labels = np.array([0, 3, 1, 3, 2])
    check_gradients(lambda z: krypton.nn.functional.cross_entropy(z, labels, reduction), r(5, 4))


@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_linear(with_bias):
    if with_bias:
        check_gradients(krypton.nn.functional.linear, r(6, 5), r(4, 5), r(4))
    else:
        check_gradients(krypton.nn.functional.linear, r(6, 5), r(4, 5))
    check_gradients(krypton.nn.functional.linear, r(5), r(4, 5), r(4))  # one 1-D sample


def test_fused_linear_checks_shapes():
    with pytest.raises(ValueError, match=r"\(3, 5\) has 5 features.*\(4, 6\) expects 6"):
        krypton.nn.functional.linear(Tensor(np.ones((3, 5))), Tensor(np.ones((4, 6))))
    with pytest.raises(ValueError, match=r"bias of shape \(3,\).*must be \(4,\)"):
        krypton.nn.functional.linear(Tensor(np.ones((3, 6))), Tensor(np.ones((4, 6))),
                                     Tensor(np.ones(3)))


def test_composed_expression():
    def mlp(x, w1, b1, w2):
        hidden = (x @ w1 + b1).tanh()
        return (hidden @ w2).log_softmax(axis=1) * 0.5 + hidden.mean(axis=1, keepdims=True) ** 2
    check_gradients(mlp, r(6, 5), r(5, 4), r(4), r(4, 3))


def test_a_tensor_used_twice_gets_both_contributions():
    check_gradients(lambda a: a * a + a.exp() * a, r(3, 3))


def test_gradients_accumulate_across_backward_calls_until_zeroed():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3 + 2, 3 + 4])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3, 3])


def test_backward_twice_through_a_freed_graph_says_so():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph"):
        y.backward()


def test_retain_graph_keeps_it_for_a_second_backward():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.data, 4 * np.exp([1.0, 2.0]), rtol=1e-6)


def test_backward_of_a_non_scalar_needs_a_gradient():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\).*y.backward\(np.ones"):
        y.backward()
    y.backward(np.full((2, 3), 0.5, dtype=np.float32))
    np.testing.assert_allclose(x.grad.data, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\).*\(2, 3\)"):
        (x * 2).backward(np.ones(3))


def test_a_backward_that_returns_the_wrong_shape_is_caught_at_once():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    bad = Tensor._result(x.data.sum(axis=0), (x,), "BadSum", lambda g: (g,))
    with pytest.raises(RuntimeError, match=r"BadSum returned a gradient of shape \(3,\) for an "
                                           r"input of shape \(2, 3\)"):
        bad.sum().backward()


def test_backward_on_a_tensor_without_grad_says_why():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).sum().backward()


def test_a_deep_chain_backpropagates_without_recursion():
    depth = 10_000
    assert depth > sys.getrecursionlimit()
    x = Tensor([0.5], requires_grad=True, dtype=np.float64)
    y = x
    for _ in range(depth):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, [1.0001 ** depth], rtol=1e-9)


def test_intermediate_gradients_are_kept_only_when_asked():
    x = Tensor([1.0, -2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    z = h * 2
    z.sum().backward()
    np.testing.assert_allclose(h.grad.data, [2, 2])
    assert z.grad is None and not z.is_leaf and x.is_leaf


def test_no_grad_records_nothing_and_restores_the_mode():
    w = Tensor([1.0], requires_grad=True)
    with krypton.no_grad():
        y = w * 2
        assert not krypton.is_grad_enabled()
        with krypton.enable_grad():
            assert (w * 2).requires_grad
    assert krypton.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf


def test_detach_cuts_the_graph():
    x = Tensor([2.0], requires_grad=True)
    y = x * x.detach()
    y.backward()
    np.testing.assert_allclose(x.grad.data, [2.0])


def test_graph_lists_nodes_inputs_first():
    x = Tensor([1.0], requires_grad=True)
    y = (x * 2).exp().sum()
    nodes, edges = graph(y)
    assert [n._op for n in nodes] == ["", "Mul", "Exp", "Sum"]
    assert len(edges) == 3


def test_cross_entropy_is_finite_for_huge_and_tiny_logits():
    logits = Tensor(np.array([[1e30, -1e30, 0.0], [-1e30, -1e30, -1e30],
                              [3e38, 0, -3e38]], dtype=np.float32), requires_grad=True)
    loss = krypton.nn.functional.cross_entropy(logits, [1, 2, 0])
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(logits.grad.data))
    np.testing.assert_allclose(loss.item(), (2e30 + np.log(3)) / 3, rtol=1e-6)


def test_sigmoid_does_not_overflow():
    x = Tensor(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32), requires_grad=True)
    y = x.sigmoid()
    y.sum().backward()
    np.testing.assert_array_equal(y.data, [0.0, 0.5, 1.0])
    assert np.all(np.isfinite(x.grad.data))


# ---- bad input ------------------------------------------------------------------------------


def test_mixing_dtypes_says_how_to_fix_it():
    a = Tensor(np.ones(3, dtype=np.float32))
    b = Tensor(np.ones(3, dtype=np.float64))
    with pytest.raises(TypeError, match="float32.*float64.*.float\\(\\) or .double\\(\\)"):
        a + b
    with pytest.raises(TypeError, match="float32.*float64"):
        a.reshape(1, 3) @ b.reshape(3, 1)
    assert (a.double() + b).dtype == np.float64


@pytest.mark.parametrize("other", ["text", None, object()])
def test_an_unsupported_operand_type_is_a_type_error(other):
    with pytest.raises(TypeError):
        Tensor([1.0]) + other
    with pytest.raises(TypeError):
        other * Tensor([1.0])


@pytest.mark.parametrize("data", [["a", "b"], [[1.0], [2.0, 3.0]], None, {"x": 1}])
def test_a_tensor_of_non_numbers_is_a_type_error(data):
    with pytest.raises(TypeError, match="Tensor"):
        Tensor(data)


def test_integers_become_float32_and_other_dtypes_are_refused():
    assert Tensor([1, 2]).dtype == np.float32
    assert Tensor(np.arange(3, dtype=np.float64)).dtype == np.float64
    with pytest.raises(TypeError, match="float32 or float64"):
        Tensor([1.0], dtype=np.int32)


def test_matmul_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"2-D.*\(2, 3, 4\)"):
        Tensor(np.ones((2, 3, 4))) @ Tensor(np.ones((4, 5)))


def test_broadcasting_errors_and_reshape_errors_name_the_shapes():
    with pytest.raises(ValueError):
        Tensor(np.ones((2, 3))) + Tensor(np.ones((4,)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        Tensor(np.ones((2, 3))).reshape(4)


@pytest.mark.parametrize("target, error, message", [
    ([0, 1], ValueError, r"shape \(3,\)"),
    ([0, 1, 7], ValueError, "class 7.*5 classes"),
    ([0, -1, 2], ValueError, "class -1"),
    (np.array([0, 2**63 + 1, 2], np.uint64), ValueError, "class 9223372036854775809"),
    ([0.5, 1, 2], TypeError, "integer class indices"),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])  # the NumPy path and the fused C
def test_cross_entropy_rejects_bad_targets(target, error, message, dtype):
    with pytest.raises(error, match=message):
        krypton.nn.functional.cross_entropy(Tensor(np.zeros((3, 5), dtype)), target)


def test_item_needs_one_element():
    assert Tensor([[2.5]]).item() == 2.5
    with pytest.raises(ValueError, match="one element"):
        Tensor([1.0, 2.0]).item()


# ---- backends -------------------------------------------------------------------------------


def small_mlp_gradients(backend):
    rng = np.random.default_rng(7)
    x = Tensor(rng.uniform(-1, 1, (37, 29)).astype(np.float32))
    w1 = Tensor(rng.uniform(-1, 1, (23, 29)).astype(np.float32), requires_grad=True)
    w2 = Tensor(rng.uniform(-1, 1, (11, 23)).astype(np.float32), requires_grad=True)
    labels = rng.integers(0, 11, 37)
    with krypton.backend(backend):
        loss = krypton.nn.functional.cross_entropy((x @ w1.T).relu() @ w2.T, labels)
        loss.backward()
    return loss.item(), w1.grad.data, w2.grad.data


def test_every_backend_gives_the_same_gradients():
    reference = small_mlp_gradients("numpy")
    for name in krypton.KERNELS:
        loss, g1, g2 = small_mlp_gradients(name)
        np.testing.assert_allclose(loss, reference[0], rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(g1, reference[1], rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(g2, reference[2], rtol=1e-4, atol=1e-5, err_msg=name)


def test_forward_and_backward_products_run_on_the_chosen_kernel(monkeypatch):
    seen = []
    original = krypton.kernels.default_kernel

    def spy(kernel):   # the backend's way to the compiled kernel
        compiled = original(kernel)

        def product(a, b, *args, **knobs):
            seen.append((kernel, a, b))
            return compiled(a, b, *args, **knobs)
        return product

    monkeypatch.setattr(krypton.kernels, "default_kernel", spy)
    x = Tensor(np.ones((4, 6), dtype=np.float32), requires_grad=True)
    w = Tensor(np.ones((5, 6), dtype=np.float32), requires_grad=True)
    with krypton.backend("packed"):
        seen.clear()  # entering compiled and checked the kernel with one 1x1 product
        (x @ w.T).sum().backward()
    kernels_used = [kernel for kernel, _, _ in seen]
    assert kernels_used == ["packed"] * 3  # forward, dX = dY @ W, dW^T = X^T @ dY
    # The transposed weight reaches the kernel as a view of w's memory: no copy.
    assert np.shares_memory(seen[0][2], w.data)
    assert np.shares_memory(seen[2][1], x.data)
    # nn.Linear's fused node: dX = dY W and dW = dY^T X, both from views of what it holds.
    seen.clear()
    layer = krypton.nn.Linear(6, 5)
    with krypton.backend("packed"):
        seen.clear()
        layer(x).sum().backward()
    assert [kernel for kernel, _, _ in seen] == ["packed"] * 3
    assert np.shares_memory(seen[0][2], layer.weight.data)
    assert np.shares_memory(seen[1][2], layer.weight.data)
    assert np.shares_memory(seen[2][2], x.data)


def test_no_gradient_is_computed_for_inputs_that_do_not_need_one(monkeypatch):
    calls = []
    original = backends.matmul
    monkeypatch.setattr(backends, "matmul", lambda a, b: calls.append(1) or original(a, b))
    x = Tensor(np.ones((4, 6), dtype=np.float32))
    w = Tensor(np.ones((6, 5), dtype=np.float32), requires_grad=True)
    (x @ w).sum().backward()
    assert len(calls) == 2  # forward and dW only


def test_set_backend_and_the_context_manager():
    previous = krypton.get_backend()
    try:
        krypton.set_backend("packed")
        assert krypton.get_backend() == "packed"
        with krypton.backend("numpy"):
            assert krypton.get_backend() == "numpy"
        assert krypton.get_backend() == "packed"
    finally:
        krypton.set_backend(previous)


def test_each_thread_starts_from_the_defaults_whatever_another_chose():
    # Per-thread choices: a `with` block, no_grad and fused_kernels in this thread are not seen
    # by a new thread, which starts with the process-wide backend, fusion on and grad enabled.
    seen = {}

    def look():
        seen.update(backend=krypton.get_backend(), grad=krypton.is_grad_enabled(),
                    fused=backends.uses_fused())

    with krypton.backend("numpy"), krypton.no_grad(), backends.fused_kernels(False):
        assert (krypton.get_backend(), krypton.is_grad_enabled(), backends.uses_fused()) == (
            "numpy", False, False)
        thread = threading.Thread(target=look)
        thread.start()
        thread.join()
    assert seen == {"backend": backends._current()[0], "grad": True, "fused": True}


def test_the_default_backend_is_the_fastest_rung():
    assert backends.DEFAULT == krypton.KERNELS[-1] == "small"


@pytest.mark.parametrize("call, message", [
    (lambda: krypton.set_backend("blas"), "unknown backend 'blas'.*naive.*numpy"),
    (lambda: krypton.backend("numpy", threads=2).__enter__(), "takes no knobs"),
    (lambda: krypton.backend("packed", kc=0).__enter__(), "kc"),
    (lambda: krypton.backend("packed", colour=3).__enter__(), "colour"),
])
def test_bad_backends_and_knobs_are_refused_up_front(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_float64_tensors_multiply_with_numpy_on_any_backend():
    a = Tensor(RNG.standard_normal((3, 4)))
    b = Tensor(RNG.standard_normal((4, 2)))
    with krypton.backend("naive"):
        c = a @ b
    assert c.dtype == np.float64
    np.testing.assert_allclose(c.data, a.data @ b.data, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Dtypes, indexing and NumPy, as PyTorch and NumPy do them


def test_python_floats_become_float32_and_numpy_arrays_keep_their_dtype():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(2.5).dtype == np.float32
    assert krypton.tensor([[1.0, 2.0]]).dtype == np.float32
    for dtype in (np.float32, np.float64, np.bool_, np.int64, np.int32, np.uint8):
        array = np.zeros(3, dtype=dtype)
        assert Tensor(array).dtype == dtype
    shared = np.zeros(3)
    assert Tensor(shared).data is shared  # no copy, as torch.from_numpy
    assert krypton.tensor(shared).data is not shared
    w = Tensor(np.ones((1, 2), dtype=np.float32), requires_grad=True)
    assert (Tensor([[1.0, 2.0]]) @ w.T).dtype == np.float32  # no float64 leaves the kernels
    assert krypton.nn.Linear(2, 1)(Tensor([[1.0, 2.0]])).shape == (1, 1)


@pytest.mark.parametrize("dtype", [np.int32, np.float16, np.bool_, "float128x"])
def test_a_dtype_that_cannot_be_honoured_is_refused(dtype):
    with pytest.raises(TypeError, match="float32 or (np.)?float64"):
        Tensor([1.0], dtype=dtype)


def test_only_float_tensors_can_require_grad():
    with pytest.raises(TypeError, match="only float tensors can require grad"):
        Tensor(np.array([True, False]), requires_grad=True)


def test_a_boolean_mask_selects_as_in_numpy_and_the_gradient_reaches_the_selected():
    values = np.array([10.0, 20.0, 30.0, 40.0])
    mask = np.array([False, True, True, True])
    x = Tensor(values, requires_grad=True)
    picked = x[Tensor(mask)]
    np.testing.assert_array_equal(picked.data, values[mask])
    picked.sum().backward()
    np.testing.assert_array_equal(x.grad.data, mask.astype(np.float64))
    grid = Tensor(np.arange(6.0).reshape(2, 3))
    rows = Tensor(np.array([True, False]))
    np.testing.assert_array_equal(grid[rows].data, np.arange(6.0).reshape(2, 3)[[True, False]])


def test_integer_tensors_pick_entries_and_repeated_picks_add_their_gradients():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    indices = Tensor(np.array([2, 0, 2]))
    picked = x[indices]
    np.testing.assert_array_equal(picked.data, [3.0, 1.0, 3.0])
    picked.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [1.0, 0.0, 2.0])
    grid = Tensor(np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(grid[Tensor(np.array([0, 2])), 1].data, [1.0, 9.0])


def test_a_float_index_tensor_is_refused_not_truncated():
    x = Tensor(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match="booleans .* or integers .*got float32"):
        x[Tensor([0.0, 1.9])]


def test_numpy_functions_are_refused_with_the_tensor_method_to_use():
    x = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with pytest.raises(TypeError, match=r"NumPy's exp does not record gradients.*t\.exp\(\)"):
        np.exp(x)
    with pytest.raises(TypeError, match="requires grad.*detach"):
        np.asarray(x)
    plain = Tensor(np.array([0.0, 1.0]))
    assert np.asarray(plain) is plain.data  # as torch.Tensor.__array__: the data itself
    assert np.asarray(plain, dtype=np.float32).dtype == np.float32


def test_an_array_on_the_left_of_an_operator_is_still_a_tensor_operation():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = np.array([3.0, 4.0]) * x + np.array([1.0, 1.0]) - 2.0 / x
    assert isinstance(y, Tensor)
    (np.ones((1, 2)) @ y).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3.0 + 2.0, 4.0 + 0.5])


def test_linear_names_an_argument_that_is_not_a_tensor():
    weight = Tensor(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="the input must be a Tensor, got ndarray: wrap it as krypton.Tensor"):
        krypton.nn.functional.linear(np.ones((1, 3), dtype=np.float32), weight)
    with pytest.raises(TypeError, match="the bias must be a Tensor, got list"):
        krypton.nn.functional.linear(Tensor(np.ones((1, 3), dtype=np.float32)), weight, [1, 2])


def test_the_engine_lives_apart_from_the_operations():
    assert krypton.Tensor.backward is engine.backward
    assert krypton.no_grad is engine.no_grad and graph is engine.graph
