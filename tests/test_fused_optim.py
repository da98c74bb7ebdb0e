"""krypton.optim's steps equal PyTorch's over several steps, on the fused C path and on the
NumPy reference path alike: SGD (plain, momentum, dampening, Nesterov, weight decay) and Adam
(with and without weight decay). Gradients are given, not computed, so the update rule alone
is compared."""

from __future__ import annotations

import numpy as np
import pytest

from krypton import Tensor, backends, optim

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

SHAPES = [(1,), (1, 1), (7, 13), (256, 33)]
STEPS = 6

SGD_SETTINGS = [dict(lr=0.1), dict(lr=0.1, momentum=0.9),
                dict(lr=0.05, momentum=0.9, dampening=0.25),
                dict(lr=0.05, momentum=0.9, nesterov=True),
                dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
                dict(lr=0.05, weight_decay=0.1)]
ADAM_SETTINGS = [dict(lr=1e-2), dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6),
                 dict(lr=1e-2, weight_decay=1e-2)]


def run_both(make_ours, make_theirs, use_fused):
    rng = np.random.default_rng(0)
    initial = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
    ours = [Tensor(value.copy(), requires_grad=True) for value in initial]
    theirs = [torch.tensor(value.copy(), requires_grad=True) for value in initial]
    opt_ours, opt_theirs = make_ours(ours), make_theirs(theirs)
    with backends.fused_kernels(use_fused):
        assert backends.uses_fused() == use_fused
        for _ in range(STEPS):
            for p, q in zip(ours, theirs):
                grad = rng.standard_normal(p.shape).astype(np.float32)
                p.grad = Tensor(grad.copy())
                q.grad = torch.from_numpy(grad.copy())
            opt_ours.step()
            opt_theirs.step()
    for index, (p, q) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=f"parameter {index} of shape {p.shape}")


@pytest.mark.parametrize("use_fused", [True, False], ids=["fused", "numpy"])
@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=str)
def test_sgd_steps_equal_pytorch(settings, use_fused):
    run_both(lambda ps: optim.SGD(ps, **settings), lambda ps: torch.optim.SGD(ps, **settings),
             use_fused)


@pytest.mark.parametrize("use_fused", [True, False], ids=["fused", "numpy"])
@pytest.mark.parametrize("settings", ADAM_SETTINGS, ids=str)
def test_adam_steps_equal_pytorch(settings, use_fused):
    run_both(lambda ps: optim.Adam(ps, **settings), lambda ps: torch.optim.Adam(ps, **settings),
             use_fused)


def test_a_parameter_that_is_a_view_is_updated_by_the_reference():
    base = np.ones((4, 4), np.float32)
    p = Tensor(base.T, requires_grad=True)  # not C-contiguous: the C update cannot write it
    p.grad = Tensor(np.full((4, 4), 2.0, np.float32))
    optim.SGD([p], lr=0.5, momentum=0.9).step()
    np.testing.assert_array_equal(base, np.zeros((4, 4), np.float32))
