"""Neural-network layers and functions, named as in ``torch.nn``."""

from krypton.nn import functional
from krypton.nn.modules import (Conv2d, Flatten, Linear, MaxPool2d, Module, Parameter, ReLU,
                                Sequential, Sigmoid, Tanh, Unflatten, manual_seed)

__all__ = ["Conv2d", "Flatten", "Linear", "MaxPool2d", "Module", "Parameter", "ReLU",
           "Sequential", "Sigmoid", "Tanh", "Unflatten", "functional", "manual_seed"]
