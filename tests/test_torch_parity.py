"""The autograd engine against PyTorch (skipped where torch is not installed): forward values and
gradients of random expression graphs, Linear/ReLU/cross-entropy stacks on every backend, and
several optimizer steps, to float32 tolerance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import krypton
from krypton import Tensor, nn, optim
from krypton.nn import functional as F

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

# Each entry: (arity, krypton op, torch op). Inputs are kept where every op is smooth (log of
# something positive, no relu kink exactly at 0), so differences are float32 rounding only.
UNARY = [
    ("exp", lambda a: (a * 0.5).exp(), lambda a: (a * 0.5).exp()),
    ("log", lambda a: (a * a + 1).log(), lambda a: (a * a + 1).log()),
    ("tanh", lambda a: a.tanh(), lambda a: a.tanh()),
    ("sigmoid", lambda a: a.sigmoid(), lambda a: a.sigmoid()),
    ("relu", lambda a: a.relu(), lambda a: a.relu()),
    ("neg", lambda a: -a, lambda a: -a),
    ("square", lambda a: a ** 2, lambda a: a ** 2),
    ("softmax", lambda a: a.softmax(axis=1), lambda a: a.softmax(dim=1)),
    ("log_softmax", lambda a: a.log_softmax(axis=-1), lambda a: a.log_softmax(dim=-1)),
    ("sum0", lambda a: a.sum(axis=0, keepdims=True), lambda a: a.sum(dim=0, keepdim=True)),
    ("mean1", lambda a: a.mean(axis=1, keepdims=True), lambda a: a.mean(dim=1, keepdim=True)),
    ("max1", lambda a: a.max(axis=1, keepdims=True), lambda a: a.amax(dim=1, keepdim=True)),
]
BINARY = [
    ("add", lambda a, b: a + b, lambda a, b: a + b),
    ("sub", lambda a, b: a - b, lambda a, b: a - b),
    ("mul", lambda a, b: a * b, lambda a, b: a * b),
    ("div", lambda a, b: a / (b * b + 1), lambda a, b: a / (b * b + 1)),
    ("matmul", lambda a, b: a @ b.T, lambda a, b: a @ b.T),
    ("row broadcast", lambda a, b: a * b.mean(axis=0, keepdims=True),
     lambda a, b: a * b.mean(dim=0, keepdim=True)),
]


@st.composite
def expressions(draw):
    """A random expression graph: a sequence of ops applied to a pool of (N, N) tensors."""
    steps = draw(st.lists(st.one_of(
        st.tuples(st.just(1), st.integers(0, len(UNARY) - 1)),
        st.tuples(st.just(2), st.integers(0, len(BINARY) - 1))), min_size=1, max_size=8))
    picks = draw(st.lists(st.integers(0, 1000), min_size=2 * len(steps), max_size=2 * len(steps)))
    return steps, picks


def run_expression(steps, picks, pool, which):
    """Apply ``steps`` to ``pool`` (list of tensors) using column ``which`` (1: krypton, 2: torch)."""
    pool = list(pool)
    for (arity, index), (i, j) in zip(steps, zip(picks[::2], picks[1::2])):
        table = UNARY if arity == 1 else BINARY
        op = table[index][which]
        args = [pool[i % len(pool)]] if arity == 1 else [pool[i % len(pool)], pool[j % len(pool)]]
        result = op(*args)
        if result.shape != pool[0].shape:  # keep every tensor (N, N) so any two combine
            result = result + pool[0] * 0
        pool.append(result)
    return sum(p * (k + 1) for k, p in enumerate(pool[-3:]))


@settings(max_examples=60)
@given(expressions(), st.integers(0, 2**32 - 1))
def test_random_expression_graphs_match_pytorch(expression, seed):
    steps, picks = expression
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-1.5, 1.5, (5, 5)).astype(np.float32) for _ in range(3)]
    ours = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    weights = rng.standard_normal((5, 5)).astype(np.float32)
    out_ours = run_expression(steps, picks, ours, 1)
    out_theirs = run_expression(steps, picks, theirs, 2)
    np.testing.assert_allclose(out_ours.data, out_theirs.detach().numpy(), rtol=2e-4, atol=2e-5)
    (out_ours * weights).sum().backward()
    (out_theirs * torch.from_numpy(weights)).sum().backward()
    for k, (a, b) in enumerate(zip(ours, theirs)):
        expected = np.zeros_like(arrays[k]) if b.grad is None else b.grad.numpy()
        got = np.zeros_like(arrays[k]) if a.grad is None else a.grad.data
        np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-4,
                                   err_msg=f"gradient of input {k} for {steps}")


def twin_models(sizes=(29, 17, 13, 10), seed=0):
    krypton.manual_seed(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    ours = nn.Sequential(*layers[:-1])
    theirs = torch.nn.Sequential(*[
        torch.nn.Linear(m.in_features, m.out_features) if isinstance(m, nn.Linear)
        else torch.nn.ReLU() for m in ours])
    with torch.no_grad():
        for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
            q.copy_(torch.from_numpy(p.data))
    return ours, theirs


def batch(seed=0, n=33, features=29, classes=10):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, features)).astype(np.float32),
            rng.integers(0, classes, n))


@pytest.mark.parametrize("backend", krypton.BACKENDS)
def test_linear_relu_cross_entropy_stack_matches_pytorch_on_every_backend(backend):
    ours, theirs = twin_models()
    x, y = batch()
    with krypton.backend(backend):
        loss = F.cross_entropy(ours(Tensor(x)), y)
        loss.backward()
    their_loss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)),
                                                   torch.from_numpy(y))
    their_loss.backward()
    np.testing.assert_allclose(loss.item(), their_loss.item(), rtol=1e-5)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad.data, q.grad.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=f"{name} on {backend}")


@pytest.mark.parametrize("make_ours, make_theirs", [
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    (lambda p: optim.Adam(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    (lambda p: optim.Adam(p, lr=3e-3, betas=(0.8, 0.99), weight_decay=1e-2),
     lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.8, 0.99), weight_decay=1e-2)),
], ids=["sgd-momentum", "sgd-nesterov-wd", "adam", "adam-wd"])
def test_optimizer_steps_match_pytorch(make_ours, make_theirs):
    ours, theirs = twin_models()
    opt_ours, opt_theirs = make_ours(list(ours.parameters())), make_theirs(theirs.parameters())
    for step in range(8):
        x, y = batch(seed=step)
        opt_ours.zero_grad()
        F.cross_entropy(ours(Tensor(x)), y).backward()
        opt_ours.step()
        opt_theirs.zero_grad()
        torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)),
                                          torch.from_numpy(y)).backward()
        opt_theirs.step()
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-4, atol=2e-5,
                                   err_msg=name)
