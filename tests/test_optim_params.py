"""Parameters collected once, by identity (modules, optimizers, parameter groups), and every
hyper-parameter an update rule cannot use refused with a message that names it.

PyTorch is the reference where it is installed (tests marked ``torch``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import krypton
from krypton import Tensor, nn, optim
from krypton.nn import functional as F


def shared_model():
    krypton.manual_seed(0)
    layer = nn.Linear(3, 3)
    return layer, nn.Sequential(layer, nn.Tanh(), layer)


def test_a_layer_used_twice_lists_its_parameters_once():
    layer, model = shared_model()
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert [id(p) for p in model.parameters()] == [id(layer.weight), id(layer.bias)]
    assert len(list(model.named_parameters(remove_duplicate=False))) == 4


def test_a_weight_shared_by_two_layers_is_listed_once():
    krypton.manual_seed(0)
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight
    model = nn.Sequential(first, second)
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.bias"]


def one_sgd_step(parameters, lr=0.1):
    opt = optim.SGD(parameters, lr=lr)
    for p in opt.param_groups[0]["params"]:
        p.grad = Tensor(np.ones_like(p.data))
    opt.step()


def test_a_shared_layer_is_stepped_once_per_step():
    layer, model = shared_model()
    before = layer.weight.data.copy()
    one_sgd_step(model.parameters())
    np.testing.assert_allclose(layer.weight.data, before - 0.1, rtol=1e-6)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1),
                                  lambda ps: optim.Adam(ps, lr=0.1)])
def test_a_parameter_passed_twice_is_stepped_once_with_a_warning(make):
    w, reference = nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(2))
    with pytest.warns(UserWarning, match="more than once"):
        twice = make([w, w])
    once = make([reference])
    for opt, p in ((twice, w), (once, reference)):
        p.grad = Tensor(np.ones(2))
        opt.step()
    np.testing.assert_array_equal(w.data, reference.data)
    assert len(twice.param_groups[0]["params"]) == 1


def test_a_parameter_in_two_groups_is_refused():
    w = nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="group 1 repeats a parameter"):
        optim.SGD([{"params": [w]}, {"params": [w], "lr": 0.5}], lr=0.1)
    opt = optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="one group only"):
        opt.add_param_group({"params": [w]})
    assert len(opt.param_groups) == 1


def test_a_group_may_hold_one_tensor_and_override_defaults():
    w, v = nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(2))
    opt = optim.SGD([{"params": w}, {"params": [v], "lr": 1.0}], lr=0.1)
    w.grad = v.grad = Tensor(np.ones(2))
    opt.step()
    np.testing.assert_allclose(w.data, -0.1)
    np.testing.assert_allclose(v.data, -1.0)


@pytest.mark.parametrize("params, error, match", [
    ([{"lr": 0.1}], TypeError, r'group 0 must be a dict with a "params" key'),
    (lambda w: w, TypeError, "got one Tensor: pass \\[tensor\\]"),
    (lambda w: {w}, TypeError, "not a set"),
    (lambda w: [{"params": {w}}], TypeError, "not a set"),
    (lambda w: [w, {"params": [w]}], TypeError, "all Tensors or all dicts"),
    (lambda w: [{"params": [w, np.ones(2)]}], TypeError, "group 0: expected Tensors.*ndarray"),
    ([], ValueError, "empty parameter list"),
])
def test_malformed_parameter_lists_get_clear_errors(params, error, match):
    w = nn.Parameter(np.zeros(2))
    with pytest.raises(error, match=match):
        optim.SGD(params(w) if callable(params) else params, lr=0.1)


@pytest.mark.parametrize("make, error, match", [
    (lambda ps: optim.SGD(ps, lr=math.nan), ValueError, "lr must be a finite number"),
    (lambda ps: optim.SGD(ps, lr=math.inf), ValueError, "lr must be a finite number"),
    (lambda ps: optim.SGD(ps, lr=-0.1), ValueError, r"lr must be a finite number in \[0, inf\]"),
    (lambda ps: optim.SGD(ps, lr="0.1"), TypeError, "lr must be a real number"),
    (lambda ps: optim.SGD(ps, lr=None), TypeError, "lr must be a real number"),
    (lambda ps: optim.SGD(ps, momentum=1.0), ValueError, r"momentum .* \[0, 1\)"),
    (lambda ps: optim.SGD(ps, momentum=-0.1), ValueError, "momentum"),
    (lambda ps: optim.SGD(ps, momentum=math.nan), ValueError, "momentum"),
    (lambda ps: optim.SGD(ps, dampening=2), ValueError, r"dampening .* \[0, 1\]"),
    (lambda ps: optim.SGD(ps, weight_decay=-1), ValueError, "weight_decay"),
    (lambda ps: optim.SGD(ps, weight_decay=math.inf), ValueError, "weight_decay"),
    (lambda ps: optim.SGD(ps, momentum=0.9, nesterov="yes"), TypeError, "nesterov"),
    (lambda ps: optim.SGD(ps, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     "Nesterov momentum needs momentum > 0 and dampening = 0, got momentum=0.9, dampening=0.1"),
    (lambda ps: optim.Adam(ps, betas=(0.9,)), TypeError, r"betas must be a pair.*\(0.9,\)"),
    (lambda ps: optim.Adam(ps, betas=0.9), TypeError, "betas must be a pair"),
    (lambda ps: optim.Adam(ps, betas="ab"), TypeError, "betas must be a pair"),
    (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), ValueError, r"betas\[1\] .* \[0, 1\)"),
    (lambda ps: optim.Adam(ps, betas=(math.nan, 0.9)), ValueError, r"betas\[0\]"),
    (lambda ps: optim.Adam(ps, betas=(0.9, "x")), TypeError, r"betas\[1\]"),
    (lambda ps: optim.Adam(ps, eps=0), ValueError, r"eps must be a finite number in \(0"),
    (lambda ps: optim.Adam(ps, eps=-1e-8), ValueError, "eps"),
    (lambda ps: optim.Adam(ps, lr=math.inf), ValueError, "lr"),
    (lambda ps: optim.Adam(ps, weight_decay=-0.5), ValueError, "weight_decay"),
    (lambda ps: optim.SGD([{"params": ps, "lr": math.nan}], lr=0.1), ValueError, "lr"),
    (lambda ps: optim.Adam([{"params": ps, "betas": (0.9, 1.5)}]), ValueError, r"betas\[1\]"),
])
def test_bad_hyper_parameters_are_refused_by_name(make, error, match):
    with pytest.raises(error, match=match):
        make([nn.Parameter(np.zeros(2))])


def test_lr_zero_is_allowed_as_in_pytorch():
    w = nn.Parameter(np.ones(2))
    opt = optim.SGD([w], lr=0)
    w.grad = Tensor(np.ones(2))
    opt.step()
    np.testing.assert_array_equal(w.data, [1, 1])


def test_a_schedule_that_sets_a_bad_lr_is_stopped_at_the_next_step():
    w = nn.Parameter(np.ones(2))
    opt = optim.Adam([w], lr=0.1)
    opt.param_groups[0]["lr"] = math.nan
    w.grad = Tensor(np.ones(2))
    with pytest.raises(ValueError, match="lr must be a finite number"):
        opt.step()
    np.testing.assert_array_equal(w.data, [1, 1])


def test_hyper_parameters_changed_between_steps_are_checked_again():
    # A step checks only what changed since the last check passed: a new value, a value
    # changed in place in a list, or a second group, is checked before anything is updated.
    w, v = nn.Parameter(np.ones(2, np.float32)), nn.Parameter(np.ones(2, np.float32))
    opt = optim.Adam([{"params": [w], "betas": [0.9, 0.999]}, {"params": [v]}], lr=0.1)
    w.grad, v.grad = Tensor(np.ones(2, np.float32)), Tensor(np.ones(2, np.float32))
    opt.step()
    before = w.data.copy(), v.data.copy()
    opt.param_groups[0]["betas"][0] = 1.5
    with pytest.raises(ValueError, match=r"betas\[0\] must be a finite number"):
        opt.step()
    opt.param_groups[0]["betas"][0] = 0.9
    opt.param_groups[1]["eps"] = -1.0
    with pytest.raises(ValueError, match="eps must be a finite number"):
        opt.step()
    np.testing.assert_array_equal(w.data, before[0])  # refused before either group moved
    np.testing.assert_array_equal(v.data, before[1])


def test_linear_refuses_a_dtype_it_cannot_hold():
    with pytest.raises(TypeError, match="float32 or float64.*int32"):
        nn.Linear(2, 2, dtype=np.int32)
    with pytest.raises(TypeError, match="float16"):
        nn.Linear(2, 2, dtype=np.float16)
    assert nn.Linear(2, 2, dtype=np.float64).weight.dtype == np.float64


@pytest.mark.parametrize("args, error, match", [
    ((0, 2), ValueError, "in_features must be a positive integer, got 0"),
    ((2, -1), ValueError, "out_features must be a positive integer, got -1"),
    ((2.0, 2), TypeError, "in_features must be a positive integer, got 2.0"),
    ((2, None), TypeError, "out_features"),
])
def test_linear_sizes_are_checked_by_name(args, error, match):
    with pytest.raises(error, match=match):
        nn.Linear(*args)


def test_functional_linear_names_the_argument_that_is_not_a_tensor():
    w = Tensor(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="linear: the input must be a Tensor, got ndarray"):
        F.linear(np.ones((4, 3), dtype=np.float32), w)
    with pytest.raises(TypeError, match="linear: the weight must be a Tensor"):
        F.linear(Tensor(np.ones((4, 3), dtype=np.float32)), w.data)
    with pytest.raises(TypeError, match="linear: the bias must be a Tensor"):
        F.linear(Tensor(np.ones((4, 3), dtype=np.float32)), w, np.ones(2))


# ---- PyTorch as the reference ---------------------------------------------------------------


@pytest.mark.torch
def test_a_shared_layer_trains_as_in_pytorch():
    torch = pytest.importorskip("torch")
    layer, model = shared_model()
    torch_layer = torch.nn.Linear(3, 3)
    with torch.no_grad():
        torch_layer.weight.copy_(torch.from_numpy(layer.weight.data))
        torch_layer.bias.copy_(torch.from_numpy(layer.bias.data))
    torch_model = torch.nn.Sequential(torch_layer, torch.nn.Tanh(), torch_layer)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in
                                                          torch_model.named_parameters()]
    x = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 1, 0])
    ours = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD(torch_model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        ours.zero_grad()
        F.cross_entropy(model(Tensor(x)), labels).backward()
        ours.step()
        theirs.zero_grad()
        torch.nn.functional.cross_entropy(torch_model(torch.from_numpy(x)),
                                          torch.from_numpy(labels)).backward()
        theirs.step()
    np.testing.assert_allclose(layer.weight.data, torch_layer.weight.detach().numpy(),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.torch
def test_duplicates_are_treated_as_pytorch_treats_them():
    torch = pytest.importorskip("torch")
    w, tw = nn.Parameter(np.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    for make, param in ((optim.SGD, w), (torch.optim.SGD, tw)):
        with pytest.warns(UserWarning):
            make([param, param], lr=0.1)   # within a group: a warning
        with pytest.raises(ValueError):
            make([{"params": [param]}, {"params": [param]}], lr=0.1)   # across groups: refused
        with pytest.raises(TypeError):
            make([{"params": {param}}], lr=0.1)   # a set has no stable order: refused


@pytest.mark.torch
@pytest.mark.parametrize("kwargs", [dict(lr=-1.0), dict(eps=-1.0), dict(betas=(1.0, 0.9)),
                                    dict(betas=(0.9, -0.1)), dict(weight_decay=-1.0)])
def test_adam_refuses_what_pytorch_refuses(kwargs):
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError):
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    with pytest.raises(ValueError):
        optim.Adam([nn.Parameter(np.zeros(2))], **kwargs)


@pytest.mark.torch
def test_the_model_parameters_match_pytorchs_when_a_module_is_nested_twice():
    torch = pytest.importorskip("torch")
    inner = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    torch_inner = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    ours = nn.Sequential(inner, nn.Linear(2, 2), inner)
    theirs = torch.nn.Sequential(torch_inner, torch.nn.Linear(2, 2), torch_inner)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no duplicate warning: the list is already unique
        optim.SGD(ours.parameters(), lr=0.1)
    assert ([n for n, _ in ours.named_parameters()]
            == [n for n, _ in theirs.named_parameters()])


def test_a_layer_used_twice_is_one_child_as_in_pytorch():
    layer, model = shared_model()
    assert [type(m).__name__ for m in model.children()] == ["Linear", "Tanh"]


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_manual_seed_names_a_bad_seed(seed):
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        krypton.manual_seed(seed)
