"""Optimizers with PyTorch's names, arguments and update rules: ``SGD`` and ``Adam``.

    opt = krypton.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    opt.zero_grad(); loss.backward(); opt.step()

Updates are written in place into each parameter's array (``p.data``), with NumPy's in-place
operations, so a step allocates little and the model sees the new values at once.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from krypton.autograd import Tensor


def _tensors(items: Iterable[Any]) -> list[Tensor]:
    """The Tensors an optimizer will update, with a clear error for anything else."""
    found = list(items)
    for item in found:
        if not isinstance(item, Tensor):
            raise TypeError(f"expected Tensors (e.g. model.parameters()), got "
                            f"{type(item).__name__}")
    return found


class Optimizer:
    """Holds ``param_groups`` (a list of dicts: "params" and the hyper-parameters, which may be
    changed between steps, e.g. ``group["lr"]`` by a schedule) and per-parameter ``state``."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        items = list(params)
        if not items:
            raise ValueError("the optimizer got an empty parameter list: pass model.parameters() "
                             "of a model that has parameters")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        self.param_groups: list[dict[str, Any]] = []
        for group in groups:
            group = dict(defaults, **group)
            group["params"] = _tensors(group["params"])
            self._check(group)
            self.param_groups.append(group)
        self.state: dict[int, dict[str, Any]] = {}

    def _check(self, group: dict[str, Any]) -> None:
        for name, value in group.items():
            numbers = value if name == "betas" else (value,)
            if name not in ("params", "nesterov") and not all(
                    isinstance(v, (int, float, np.floating, np.integer)) for v in numbers):
                raise TypeError(f"{name} must be a number, got {value!r}")
        if not group["lr"] >= 0:
            raise ValueError(f"lr must be a number >= 0, got {group['lr']!r}")
        if not group.get("weight_decay", 0) >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']!r}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (they accumulate across ``backward`` calls otherwise)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None if set_to_none or p.grad is None else Tensor(
                    np.zeros_like(p.data))

    def _gradients(self):
        """(group, parameter, gradient array) for every parameter that has a gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.shape != p.shape:
                        raise ValueError(f"a gradient of shape {p.grad.shape} for a parameter of "
                                         f"shape {p.shape}")
                    yield group, p, p.grad.data

    def step(self) -> None:
        raise NotImplementedError


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
        if not momentum >= 0:
            raise ValueError(f"momentum must be >= 0, got {momentum!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def step(self) -> None:
        for group, p, g in self._gradients():
            lr, momentum = group["lr"], group["momentum"]
            if group["weight_decay"]:
                g = g + group["weight_decay"] * p.data
            state = self.state.setdefault(id(p), {})
            if momentum:
                buffer = state.get("momentum_buffer")
                if buffer is None:
                    buffer = state["momentum_buffer"] = np.array(g, dtype=p.dtype)
                else:
                    buffer *= momentum
                    if group["dampening"]:
                        buffer += (1 - group["dampening"]) * g
                    else:
                        buffer += g
                g = g + momentum * buffer if group["nesterov"] else buffer
            # p -= lr * g through a scratch array kept between steps: no allocation per step.
            scratch = state.get("scratch")
            if scratch is None:
                scratch = state["scratch"] = np.empty_like(p.data)
            np.multiply(g, lr, out=scratch, casting="unsafe")
            p.data -= scratch


class Adam(Optimizer):
    """Adam (Kingma and Ba), with PyTorch's rule and defaults:
        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g * g
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must each be in [0, 1), got {betas!r}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def step(self) -> None:
        for group, p, g in self._gradients():
            beta1, beta2 = group["betas"]
            if group["weight_decay"]:
                g = g + group["weight_decay"] * p.data
            state = self.state.setdefault(id(p), {})
            if not state:
                state.update(step=0, exp_avg=np.zeros_like(p.data),
                             exp_avg_sq=np.zeros_like(p.data))
            state["step"] += 1
            m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * (g * g)
            step_size = group["lr"] / (1 - beta1 ** t)
            denominator = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + group["eps"]
            p.data -= step_size * (m / denominator)
