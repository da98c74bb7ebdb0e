"""Optimizers with PyTorch's names, arguments and update rules: ``SGD`` and ``Adam``.

    opt = krypton.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    opt.zero_grad(); loss.backward(); opt.step()

Updates are written in place into each parameter's array (``p.data``), so the model sees the
new values at once. On a backend that uses the fused kernels (``krypton.backends.uses_fused``:
every rung, unless turned off) a group of float32 parameters is updated by one C call, one pass
over each parameter (``krypton.fused.sgd_steps``, ``adam_steps``), a large parameter split over
the threads the backend's products use (``krypton.backends.kernel_threads``); otherwise by their
NumPy references, the same formulas in a few in-place NumPy operations per parameter.

Each parameter is updated once per ``step``, however often it was passed: a parameter listed
twice in a group is kept once, with a warning (PyTorch warns too, but then steps it twice), and
a parameter in two groups is refused, as in PyTorch, since it would have two learning rates.
Hyper-parameters are checked when a group is added and again at every ``step`` where they
changed, so a schedule that sets ``group["lr"]`` to NaN is stopped at once, not after a run of
NaN losses.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable

import numpy as np

from krypton import backends, fused
from krypton.autograd import Tensor
from krypton.checks import finite_float


class Optimizer:
    """Holds ``param_groups`` (a list of dicts: "params" and the hyper-parameters, which may be
    changed between steps, e.g. ``group["lr"]`` by a schedule) and per-parameter ``state``."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or of dicts, got one Tensor: "
                            "pass [tensor] or model.parameters()")
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        self._checked: dict[int, tuple[dict[str, Any], tuple]] = {}  # id(group) -> values
        if isinstance(params, (set, frozenset)):
            self.add_param_group({"params": params})  # refused there, with the reason
        items = list(params)
        if not items:
            raise ValueError("the optimizer got an empty parameter list: pass model.parameters() "
                             "of a model that has parameters")
        dicts = [isinstance(item, dict) for item in items]
        if any(dicts) and not all(dicts):
            raise TypeError('params must be all Tensors or all dicts (parameter groups), got a '
                            'mix: put the Tensors in a group of their own, {"params": [...]}')
        for group in items if all(dicts) else [{"params": items}]:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group: a dict with "params" (Tensors) and the hyper-parameters it overrides."""
        index = len(self.param_groups)
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(f'parameter group {index} must be a dict with a "params" key, e.g. '
                            f'{{"params": model.parameters(), "lr": 0.1}}; got {param_group!r}')
        group = dict(self.defaults, **param_group)
        group["params"] = _unique_tensors(group["params"], index)
        self._check(group)
        earlier = {id(p) for other in self.param_groups for p in other["params"]}
        if any(id(p) in earlier for p in group["params"]):
            raise ValueError(f"parameter group {index} repeats a parameter of an earlier group: "
                             "a parameter may be in one group only")
        self.param_groups.append(group)

    def _check(self, group: dict[str, Any]) -> None:
        """Refuse hyper-parameters the update rule cannot use, naming the argument."""
        finite_float("lr", group["lr"], low=0)
        finite_float("weight_decay", group["weight_decay"], low=0)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (they accumulate across ``backward`` calls otherwise)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None if set_to_none or p.grad is None else Tensor(
                    np.zeros_like(p.data))

    def _gradients(self):
        """(group, parameters, their gradient arrays) for every group, leaving out the
        parameters that have no gradient; every group's hyper-parameters checked first."""
        for group in self.param_groups:
            self._check_if_changed(group)
        for group in self.param_groups:
            params, grads = [], []
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.shape != p.shape:
                        raise ValueError(f"a gradient of shape {p.grad.shape} for a parameter of "
                                         f"shape {p.shape}")
                    params.append(p)
                    grads.append(p.grad.data)
            yield group, params, grads

    def _check_if_changed(self, group: dict[str, Any]) -> None:
        """``_check`` the group's hyper-parameters unless they are the values it last passed
        (a step then costs no checks; a schedule's new lr, or a NaN, is checked at once)."""
        values = tuple(tuple(group[k]) if isinstance(group[k], list) else group[k]
                       for k in self.defaults)
        last = self._checked.get(id(group))
        if last is None or last[0] is not group or last[1] != values:
            self._check(group)
            self._checked[id(group)] = group, values

    def step(self) -> None:
        raise NotImplementedError


def _unique_tensors(params: Any, index: int) -> list[Tensor]:
    if isinstance(params, Tensor):
        return [params]
    if isinstance(params, (set, frozenset)):
        raise TypeError("params must be an ordered collection (a list, or model.parameters()), "
                        "not a set: a set's order changes from run to run")
    found: dict[int, Tensor] = {}
    count = 0
    for item in params:
        if not isinstance(item, Tensor):
            raise TypeError(f"parameter group {index}: expected Tensors (e.g. "
                            f"model.parameters()), got {type(item).__name__}")
        found.setdefault(id(item), item)
        count += 1
    if count > len(found):
        warnings.warn(f"parameter group {index} lists {count - len(found)} parameter(s) more "
                      "than once; each is updated once per step", UserWarning, stacklevel=5)
    return list(found.values())


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

    PyTorch's rule, per parameter p with gradient g:
        g = g + weight_decay * p
        b = g (first step), else b = momentum * b + (1 - dampening) * g
        g = g + momentum * b if nesterov, else b
        p = p - lr * g
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        momentum = finite_float("momentum", group["momentum"], low=0, high=1, high_open=True)
        dampening = finite_float("dampening", group["dampening"], low=0, high=1)
        if not isinstance(group["nesterov"], (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {group['nesterov']!r}")
        if group["nesterov"] and (momentum == 0 or dampening != 0):
            raise ValueError(f"Nesterov momentum needs momentum > 0 and dampening = 0, got "
                             f"momentum={momentum:g}, dampening={dampening:g}")

    def step(self) -> None:
        threads = backends.kernel_threads()
        for group, params, grads in self._gradients():
            buffers, firsts = [], []
            for p in params:
                state = self.state.setdefault(id(p), {})
                buffer, first = state.get("momentum_buffer"), False
                if group["momentum"] and buffer is None:
                    buffer = state["momentum_buffer"] = np.empty_like(p.data)
                    first = True
                buffers.append(buffer)
                firsts.append(first)
            update = fused.sgd_steps if _fusable(params, grads) else fused.sgd_steps_numpy
            update([p.data for p in params], grads, buffers, firsts, group["lr"],
                   group["momentum"], group["dampening"], group["weight_decay"],
                   group["nesterov"], threads)


class Adam(Optimizer):
    """Adam (Kingma and Ba), with PyTorch's rule and defaults:
        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g * g
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers in [0, 1), e.g. (0.9, 0.999), "
                            f"got {betas!r}")
        for position, beta in enumerate(betas):
            finite_float(f"betas[{position}]", beta, low=0, high=1, high_open=True)
        finite_float("eps", group["eps"], low=0, low_open=True)

    def step(self) -> None:
        threads = backends.kernel_threads()
        for group, params, grads in self._gradients():
            moments, squares, steps = [], [], []
            for p in params:
                state = self.state.setdefault(id(p), {})
                if not state:
                    state.update(step=0, exp_avg=np.zeros_like(p.data),
                                 exp_avg_sq=np.zeros_like(p.data))
                state["step"] += 1
                moments.append(state["exp_avg"])
                squares.append(state["exp_avg_sq"])
                steps.append(state["step"])
            beta1, beta2 = group["betas"]
            update = fused.adam_steps if _fusable(params, grads) else fused.adam_steps_numpy
            update([p.data for p in params], grads, moments, squares, steps, group["lr"], beta1,
                   beta2, group["eps"], group["weight_decay"], threads)


def _fusable(params: list[Tensor], grads: list[np.ndarray]) -> bool:
    """The fused C update takes a group of float32 parameters it can write in place (a
    parameter is a C-contiguous array unless the learner made it a view); a group with any
    other goes through the NumPy references, parameter by parameter."""
    return backends.uses_fused() and all(
        p.data.dtype == np.float32 and g.dtype == np.float32 and p.data.flags.c_contiguous
        and p.data.flags.writeable for p, g in zip(params, grads))
