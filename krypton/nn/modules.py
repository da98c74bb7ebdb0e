"""Layers: ``Module``, ``Linear``, ``Conv2d``, ``MaxPool2d``, ``ReLU``, ``Flatten``,
``Sequential``..., as in ``torch.nn``."""

from __future__ import annotations

import math
import os
import zipfile
from collections import OrderedDict
from typing import Any, Iterator, Mapping

import numpy as np

from krypton.autograd import FLOAT_DTYPES, Tensor
from krypton.autograd.conv import as_pair
from krypton.checks import positive_int
from krypton.files import atomic_write, check_writable
from krypton.nn import functional as F

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator that initializes new layers (``krypton.manual_seed``)."""
    global _generator
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
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

    def named_parameters(self, prefix: str = "",
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(name, parameter) for every parameter here and in sub-modules, e.g. ("0.weight", ...).

        A parameter reachable twice (a layer used twice, a weight shared by two layers) is
        listed once, under its first name, as in PyTorch: an optimizer given this list steps
        it once per ``step``.
        """
        seen: set[int] = set()
        for module_prefix, module in self._named_modules(prefix, remove_duplicate):
            for name, parameter in module._parameters.items():
                if remove_duplicate and id(parameter) in seen:
                    continue
                seen.add(id(parameter))
                yield module_prefix + name, parameter

    def parameters(self) -> Iterator[Parameter]:
        for _, parameter in self.named_parameters():
            yield parameter

    def _named_modules(self, prefix: str, remove_duplicate: bool,
                       seen: set[int] | None = None) -> Iterator[tuple[str, Module]]:
        # Pre-order, each module once (when deduplicating): a module that contains itself
        # would otherwise recurse forever.
        seen = set() if seen is None else seen
        if remove_duplicate and id(self) in seen:
            return
        seen.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            yield from module._named_modules(prefix + name + ".", remove_duplicate, seen)

    def children(self) -> Iterator[Module]:
        """The direct sub-modules, each once (a layer used twice is one child, as in PyTorch)."""
        seen: set[int] = set()
        for module in self._modules.values():
            if id(module) not in seen:
                seen.add(id(module))
                yield module

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
        """A copy of every parameter's values, by name (a shared parameter once)."""
        return OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy values from ``state`` (as ``state_dict`` makes) into the parameters, in place.

        Every name, shape and dtype is checked before any parameter changes, so a refused
        state leaves the module exactly as it was.
        """
        own = dict(self.named_parameters())
        self._check_names(own, list(state), strict)
        values = {}
        for name, parameter in own.items():
            if name in state:
                value = state[name]
                values[name] = np.asarray(value.data if isinstance(value, Tensor) else value)
                _check_value(name, parameter, values[name].shape, values[name].dtype)
        for name, value in values.items():
            own[name].data[...] = value

    def _check_names(self, own: Mapping[str, Parameter], given: list[str], strict: bool) -> None:
        missing = [name for name in own if name not in given]
        unexpected = [name for name in given if name not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict does not match {type(self).__name__}: missing "
                           f"{missing or 'nothing'}, unexpected {unexpected or 'nothing'}")

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters to a NumPy ``.npz`` file (``np.load`` reads it), atomically.

        The archive is written to a temporary file beside ``path`` and renamed over it only
        when complete: a full disk, an error or Ctrl-C leaves the previous checkpoint intact.
        """
        check_writable(path, "checkpoint")
        # Written member by member rather than through np.savez, whose own keyword arguments
        # (``file``, ``allow_pickle``) would collide with parameters of those names.
        with atomic_write(path, "wb") as file, zipfile.ZipFile(file, "w") as archive:
            for name, value in self.state_dict().items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, value, allow_pickle=False)

    def load(self, path: str | os.PathLike) -> Module:
        """Read parameters saved by ``save`` into this module (which must have the same layers).

        Names, then each array's shape and dtype (from its header), are checked before any
        array is read, so a file with a wrong or huge entry is refused without reading it.
        """
        own = dict(self.named_parameters())
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no checkpoint at {os.fspath(path)!r}: save one there "
                                    "first, with model.save(path)")
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{os.fspath(path)!r} is not a checkpoint saved by Module.save "
                             "(that is a .npz, a zip archive of .npy arrays)")
        with zipfile.ZipFile(path) as archive:
            members = {member[:-len(".npy")]: member for member in archive.namelist()
                       if member.endswith(".npy")}
            others = [member for member in archive.namelist() if not member.endswith(".npy")]
            if others:
                raise ValueError(f"{os.fspath(path)!r} is not a checkpoint saved by "
                                 f"Module.save: it holds {others}, which are not .npy arrays")
            self._check_names(own, list(members), strict=True)
            for name, parameter in own.items():
                with archive.open(members[name]) as member:
                    shape, dtype = _npy_header(member, f"{os.fspath(path)!r}, entry {name!r}")
                _check_value(name, parameter, shape, dtype)
            values = {}
            for name in own:
                with archive.open(members[name]) as member:
                    values[name] = np.lib.format.read_array(member, allow_pickle=False)
        self.load_state_dict(values)
        return self

    # ---- printing -------------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(module).replace("\n", "\n  ")
                 for name, module in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ")" if not lines else head + "\n  " + "\n  ".join(lines) + "\n)"


def _npy_header(member: Any, where: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    except ValueError as error:
        raise ValueError(f"{where} is not a valid .npy array ({error}); the checkpoint is "
                         "damaged: save it again") from None
    return shape, dtype


def _check_value(name: str, parameter: Parameter, shape: tuple[int, ...],
                 dtype: np.dtype) -> None:
    if tuple(shape) != parameter.shape:
        raise ValueError(f"parameter {name!r} has shape {parameter.shape} but the "
                         f"state_dict gives shape {tuple(shape)}")
    if dtype.kind not in "biuf" or not np.can_cast(dtype, parameter.dtype, "same_kind"):
        raise TypeError(f"parameter {name!r} holds {parameter.dtype} but the state_dict gives "
                        f"{dtype}, which does not convert to it: give real numbers")


class Linear(Module):
    """``y = x @ weight.T + bias``, weight (out_features, in_features), as ``torch.nn.Linear``.

    Initialized as PyTorch does by default: weight and bias uniform in +-1/sqrt(in_features)
    (``kaiming_uniform_`` with a = sqrt(5) comes to that bound), from the generator
    ``krypton.manual_seed`` seeds.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: Any = np.float32):
        super().__init__()
        in_features = positive_int("in_features", in_features)
        out_features = positive_int("out_features", out_features)
        if np.dtype(dtype) not in FLOAT_DTYPES:
            raise TypeError(f"Linear holds float32 or float64 parameters, got dtype="
                            f"{np.dtype(dtype)}: pass dtype=np.float32 (the default)")
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(_generator.uniform(-bound, bound, (out_features, in_features))
                                .astype(dtype))
        self.bias = (Parameter(_generator.uniform(-bound, bound, out_features).astype(dtype))
                     if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self._checked(x), self.weight, self.bias)

    def forward_relu(self, x: Tensor) -> Tensor:
        """``relu(self(x))`` as one fused node (what ``Sequential`` runs for Linear, ReLU)."""
        return F.linear_relu(self._checked(x), self.weight, self.bias)

    def _checked(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"Linear takes a Tensor, got {type(x).__name__}: wrap it as "
                            f"krypton.Tensor(x)")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r} expects inputs with {self.in_features} features in the "
                             f"last dimension, got shape {x.shape}")
        return x

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Conv2d(Module):
    """A 2-D convolution over (N, C, H, W) inputs, as ``torch.nn.Conv2d``: weight
    (out_channels, in_channels, kh, kw), bias (out_channels,).

    Initialized as PyTorch does by default: ``kaiming_uniform_`` with a = sqrt(5) on the weight,
    which is uniform in +-1/sqrt(fan_in) with fan_in = in_channels·kh·kw, and the bias uniform
    in the same bound; drawn (weight, then bias) from the generator ``krypton.manual_seed`` seeds.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, bias: bool = True, dtype: Any = np.float32):
        super().__init__()
        self.in_channels = positive_int("in_channels", in_channels)
        self.out_channels = positive_int("out_channels", out_channels)
        self.kernel_size = as_pair("kernel_size", kernel_size, 1)
        self.stride = as_pair("stride", stride, 1)
        self.padding = as_pair("padding", padding, 0)
        if np.dtype(dtype) not in FLOAT_DTYPES:
            raise TypeError(f"Conv2d holds float32 or float64 parameters, got dtype="
                            f"{np.dtype(dtype)}: pass dtype=np.float32 (the default)")
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        self.weight = Parameter(_generator.uniform(-bound, bound, shape).astype(dtype))
        self.bias = (Parameter(_generator.uniform(-bound, bound, self.out_channels)
                               .astype(dtype)) if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def forward_relu(self, x: Tensor) -> Tensor:
        """``relu(self(x))`` as one node (what ``Sequential`` runs for Conv2d, ReLU)."""
        return F.conv2d_relu(x, self.weight, self.bias, self.stride, self.padding)

    def forward_relu_pool(self, x: Tensor, pool: MaxPool2d) -> Tensor:
        """``pool(relu(self(x)))`` as one node (what ``Sequential`` runs for Conv2d, ReLU,
        MaxPool2d)."""
        return F.conv2d_relu_pool(x, self.weight, self.bias, self.stride, self.padding,
                                  pool.kernel_size, pool.stride)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class MaxPool2d(Module):
    """The maximum of each window, as ``torch.nn.MaxPool2d`` (stride defaults to the window)."""

    def __init__(self, kernel_size: Any, stride: Any = None):
        super().__init__()
        self.kernel_size = as_pair("kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else as_pair("stride", stride, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Flatten(Module):
    """Merge dimensions ``start_dim`` to ``end_dim`` into one, as ``torch.nn.Flatten``:
    (N, C, H, W) becomes (N, C·H·W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x: Tensor) -> Tensor:
        start, end = (d % x.ndim if -x.ndim <= d < x.ndim else None
                      for d in (self.start_dim, self.end_dim))
        if start is None or end is None or start > end:
            raise ValueError(f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) does "
                             f"not fit an input of shape {x.shape}")
        return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dimension ``dim`` into ``unflattened_size``, as ``torch.nn.Unflatten``: the CNN's
    first layer turns (N, 784) images into (N, 1, 28, 28)."""

    def __init__(self, dim: int, unflattened_size: Any):
        super().__init__()
        self.dim = int(dim)
        self.unflattened_size = tuple(positive_int("unflattened_size", size)
                                      for size in unflattened_size)

    def forward(self, x: Tensor) -> Tensor:
        dim = self.dim % x.ndim if -x.ndim <= self.dim < x.ndim else None
        if dim is None or x.shape[dim] != math.prod(self.unflattened_size):
            raise ValueError(f"Unflatten({self.dim}, {self.unflattened_size}) does not fit an "
                             f"input of shape {x.shape}: dimension {self.dim} must hold "
                             f"{math.prod(self.unflattened_size)} values")
        return x.reshape(x.shape[:dim] + self.unflattened_size + x.shape[dim + 1:])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


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
        modules = list(self._modules.values())
        index = 0
        while index < len(modules):
            module = modules[index]
            following = modules[index + 1] if index + 1 < len(modules) else None
            after = modules[index + 2] if index + 2 < len(modules) else None
            # A Linear (or Conv2d) then a ReLU is one fused node (F.linear_relu,
            # F.conv2d_relu): one pass for bias and ReLU, one for their backward, one graph node
            # instead of two; a Conv2d, a ReLU and a MaxPool2d are one too
            # (F.conv2d_relu_pool). Exact types only: a subclass may have its own forward.
            if type(module) is Conv2d and type(following) is ReLU and type(after) is MaxPool2d:
                x = module.forward_relu_pool(x, after)
                index += 3
            elif type(module) in (Linear, Conv2d) and type(following) is ReLU:
                x = module.forward_relu(x)
                index += 2
            else:
                x = module(x)
                index += 1
        return x

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())
