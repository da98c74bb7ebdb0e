"""Neural-network layers and functions, named as in ``torch.nn``."""

from krypton.nn import functional
from krypton.nn.modules import (Linear, Module, Parameter, ReLU, Sequential, Sigmoid, Tanh,
                                manual_seed)

__all__ = ["Linear", "Module", "Parameter", "ReLU", "Sequential", "Sigmoid", "Tanh",
           "functional", "manual_seed"]
