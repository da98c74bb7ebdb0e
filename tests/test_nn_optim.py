"""krypton.nn (Module bookkeeping, Linear, Sequential, saving) and krypton.optim (update rules
written out by hand here, and against PyTorch where it is installed)."""

from __future__ import annotations

import numpy as np
import pytest

import krypton
from krypton import Tensor, nn, optim
from krypton.nn import functional as F


def mlp(seed=0, sizes=(7, 5, 3)):
    krypton.manual_seed(seed)
    return nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.ReLU(), nn.Linear(sizes[1], sizes[2]))


def test_parameters_are_found_by_name_in_order():
    model = mlp()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [p.shape for p in model.parameters()] == [(5, 7), (5,), (3, 5), (3,)]
    assert all(p.requires_grad for p in model.parameters())


def test_linear_is_initialized_like_pytorch_and_seeded():
    layer = nn.Linear(400, 30)
    bound = 1 / np.sqrt(400)
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32
        assert np.abs(p.data).max() <= bound
        assert np.abs(p.data).max() > 0.9 * bound  # uniform over the whole range
    np.testing.assert_array_equal(mlp(3)[0].weight.data, mlp(3)[0].weight.data)
    assert not np.array_equal(mlp(3)[0].weight.data, mlp(4)[0].weight.data)


def test_linear_computes_x_wt_plus_b():
    layer = nn.Linear(4, 2)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    expected = x @ layer.weight.data.T + layer.bias.data
    np.testing.assert_allclose(layer(Tensor(x)).data, expected, rtol=1e-5, atol=1e-6)
    no_bias = nn.Linear(4, 2, bias=False)
    assert no_bias.bias is None and len(list(no_bias.parameters())) == 1


@pytest.mark.parametrize("args", [(0, 3), (3, -1), (2.5, 3), (True, 3)])
def test_linear_rejects_bad_sizes(args):
    with pytest.raises((TypeError, ValueError), match="_features must be a positive integer"):
        nn.Linear(*args)


def test_linear_names_the_expected_and_given_shapes():
    with pytest.raises(ValueError, match=r"in_features=7.*7 features.*\(2, 6\)"):
        mlp()(Tensor(np.ones((2, 6))))
    with pytest.raises(TypeError, match="krypton.Tensor"):
        mlp()(np.ones((2, 7), dtype=np.float32))


def test_sequential_indexes_iterates_and_prints():
    model = mlp()
    assert len(model) == 3 and isinstance(model[1], nn.ReLU) and isinstance(model[-1], nn.Linear)
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]
    assert "(0): Linear(in_features=7, out_features=5, bias=True)" in repr(model)
    with pytest.raises(TypeError, match="Modules.*position 1"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_a_module_that_forgets_super_init_is_told_to_call_it():
    class Broken(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Broken()


def test_custom_modules_register_their_children():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp()
            self.scale = nn.Parameter(np.ones(1, dtype=np.float32))

        def forward(self, x):
            return self.body(x) * self.scale

    net = Net()
    assert [n for n, _ in net.named_parameters()][0] == "scale"
    assert len(list(net.parameters())) == 5
    net.eval()
    assert not net.training and not net.body[0].training
    net.train()
    assert net.body[2].training


def test_zero_grad_clears_every_parameter():
    model = mlp()
    F.cross_entropy(model(Tensor(np.ones((2, 7), dtype=np.float32))), [0, 2]).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    F.cross_entropy(model(Tensor(np.ones((2, 7), dtype=np.float32))), [0, 2]).backward()
    model.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.data == 0) for p in model.parameters())


def test_state_dict_round_trips_through_an_npz_file(tmp_path):
    model, other = mlp(1), mlp(2)
    path = tmp_path / "model.npz"
    model.save(path)
    other.load(path)
    for (name, a), (_, b) in zip(model.named_parameters(), other.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    state = model.state_dict()
    state["0.weight"][...] = 0  # a copy: changing it leaves the model alone
    assert np.any(model[0].weight.data != 0)


def test_loading_a_mismatched_state_says_what_differs():
    model = mlp()
    state = model.state_dict()
    with pytest.raises(ValueError, match=r"'0.weight'.*\(5, 7\).*\(7, 5\)"):
        model.load_state_dict(dict(state, **{"0.weight": np.zeros((7, 5))}))
    del state["2.bias"]
    with pytest.raises(KeyError, match=r"missing \['2.bias'\]"):
        model.load_state_dict(dict(state, extra=np.zeros(1)))


# ---- optimizers -----------------------------------------------------------------------------


def one_parameter_problem(optimizer_factory, steps=5):
    """Minimize sum((p - target)^2 * weights); return p after each step."""
    rng = np.random.default_rng(0)
    p = nn.Parameter(rng.standard_normal(6).astype(np.float64))
    target, weights = rng.standard_normal(6), rng.uniform(0.5, 2, 6)
    opt = optimizer_factory([p])
    history = []
    for _ in range(steps):
        opt.zero_grad()
        (((p - target) ** 2) * weights).sum().backward()
        opt.step()
        history.append(p.data.copy())
    return rng, target, weights, history


def gradient(p, target, weights):
    return 2 * (p - target) * weights


@pytest.mark.parametrize("momentum, nesterov, weight_decay, dampening", [
    (0.0, False, 0.0, 0.0), (0.9, False, 0.0, 0.0), (0.9, True, 0.0, 0.0),
    (0.8, False, 0.01, 0.0), (0.9, False, 0.0, 0.3)])
def test_sgd_follows_pytorchs_rule(momentum, nesterov, weight_decay, dampening):
    lr = 0.1
    _, target, weights, history = one_parameter_problem(
        lambda ps: optim.SGD(ps, lr=lr, momentum=momentum, nesterov=nesterov,
                             weight_decay=weight_decay, dampening=dampening))
    p = np.random.default_rng(0).standard_normal(6)
    buffer = None
    for step in history:
        g = gradient(p, target, weights) + weight_decay * p
        if momentum:
            buffer = g.copy() if buffer is None else momentum * buffer + (1 - dampening) * g
            g = g + momentum * buffer if nesterov else buffer
        p = p - lr * g
        np.testing.assert_allclose(step, p, rtol=1e-12)


def test_adam_follows_pytorchs_rule():
    lr, (b1, b2), eps, wd = 0.05, (0.8, 0.95), 1e-6, 0.01
    _, target, weights, history = one_parameter_problem(
        lambda ps: optim.Adam(ps, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd), steps=6)
    p = np.random.default_rng(0).standard_normal(6)
    m = v = np.zeros(6)
    for t, step in enumerate(history, start=1):
        g = gradient(p, target, weights) + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        np.testing.assert_allclose(step, p, rtol=1e-10)


def test_the_learning_rate_can_change_between_steps():
    p = nn.Parameter(np.ones(2, dtype=np.float64))
    opt = optim.SGD([p], lr=1.0)
    opt.param_groups[0]["lr"] = 0.5
    (p * 2).sum().backward()
    opt.step()
    np.testing.assert_allclose(p.data, [0.0, 0.0])


def test_parameters_without_a_gradient_are_left_alone():
    used, unused = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.Adam([used, unused], lr=0.1)
    (used * 3).sum().backward()
    opt.step()
    assert np.all(used.data < 1) and np.all(unused.data == 1)


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda p: optim.SGD(p, lr=-1), "lr"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "momentum"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "weight_decay"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), "betas"),
    (lambda p: optim.Adam(p, eps=-1), "eps"),
    (lambda p: optim.SGD([np.ones(3)], lr=0.1), "Tensors"),
])
def test_bad_optimizer_arguments_are_refused(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make(list(mlp().parameters()))


def test_a_few_hundred_steps_learn_a_separable_problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 7)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(200):
        opt.zero_grad()
        loss = F.cross_entropy(model(Tensor(x)), labels)
        loss.backward()
        opt.step()
    accuracy = np.mean(np.argmax(model(Tensor(x)).data, axis=1) == labels)
    assert loss.item() < 0.3 and accuracy > 0.9
