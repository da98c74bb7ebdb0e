"""Layers with parameters: ``Module``, ``Linear``, ``ReLU``, ``Sequential``, as in ``torch.nn``."""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Any, Iterator, Mapping

import numpy as np

from krypton.nn import functional as F
from krypton.autograd import Tensor

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator that initializes new layers (``krypton.manual_seed``)."""
    global _generator
    _generator = np.random.default_rng(seed)


class Parameter(Tensor):
    """A Tensor that is a parameter of a Module: it requires grad, and Modules find it."""

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models: assign Parameters and Modules as attributes in
    ``__init__`` and write ``forward``; ``module(x)`` calls it."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        registries = self.__dict__.get("_parameters"), self.__dict__.get("_modules")
        if registries[0] is None:
            raise AttributeError(f"call super().__init__() at the start of "
                                 f"{type(self).__name__}.__init__, before assigning attributes")
        for registry in registries:
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ---- parameters -----------------------------------------------------------------------

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(name, parameter) for every parameter here and in sub-modules, e.g. ("0.weight", ...)."""
        for name, parameter in self._parameters.items():
            yield prefix + name, parameter
        for name, module in self._modules.items():
            yield from module.named_parameters(prefix + name + ".")

    def parameters(self) -> Iterator[Parameter]:
        for _, parameter in self.named_parameters():
            yield parameter

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for parameter in self.parameters():
            if set_to_none or parameter.grad is None:
                parameter.grad = None
            else:
                parameter.grad = Tensor(np.zeros_like(parameter.data))

    def train(self, mode: bool = True) -> Module:
        object.__setattr__(self, "training", bool(mode))
        for module in self.children():
            module.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    # ---- saving and loading ---------------------------------------------------------------

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """A copy of every parameter's values, by name."""
        return OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy values from ``state`` (as ``state_dict`` makes) into the parameters, in place."""
        own = dict(self.named_parameters())
        missing = [name for name in own if name not in state]
        unexpected = [name for name in state if name not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict does not match {type(self).__name__}: missing "
                           f"{missing or 'nothing'}, unexpected {unexpected or 'nothing'}")
        for name, parameter in own.items():
            if name not in state:
                continue
            value = np.asarray(state[name].data if isinstance(state[name], Tensor)
                               else state[name])
            if value.shape != parameter.shape:
                raise ValueError(f"parameter {name!r} has shape {parameter.shape} but the "
                                 f"state_dict gives shape {value.shape}")
            parameter.data[...] = value

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters to a NumPy ``.npz`` file."""
        with open(path, "wb") as file:  # a file object: np.savez would append ".npz" to a name
            np.savez(file, **self.state_dict())

    def load(self, path: str | os.PathLike) -> Module:
        """Read parameters saved by ``save`` into this module (which must have the same layers)."""
        with np.load(path) as archive:
            self.load_state_dict({name: archive[name] for name in archive.files})
        return self

    # ---- printing -------------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(module).replace("\n", "\n  ")
                 for name, module in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ")" if not lines else head + "\n  " + "\n  ".join(lines) + "\n)"


class Linear(Module):
    """``y = x @ weight.T + bias``, weight (out_features, in_features), as ``torch.nn.Linear``.

    Initialized as PyTorch does by default: weight and bias uniform in +-1/sqrt(in_features)
    (``kaiming_uniform_`` with a = sqrt(5) comes to that bound), from the generator
    ``krypton.manual_seed`` seeds.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: Any = np.float32):
        super().__init__()
        for label, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Linear needs a positive integer {label}, got {value!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(_generator.uniform(-bound, bound, (out_features, in_features))
                                .astype(dtype))
        self.bias = (Parameter(_generator.uniform(-bound, bound, out_features).astype(dtype))
                     if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"Linear takes a Tensor, got {type(x).__name__}: wrap it as "
                            f"krypton.Tensor(x)")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r} expects inputs with {self.in_features} features in the "
                             f"last dimension, got shape {x.shape}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class Sequential(Module):
    """Modules applied in order; ``model[0]`` is the first, ``len(model)`` how many."""

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes Modules, got {type(module).__name__} at "
                                f"position {index}")
            setattr(self, str(index), module)

    def forward(self, x: Tensor) -> Tensor:
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())
