"""deltaflow: fully connected networks trained by backpropagation as a dynamic programme.

The public API::

    from deltaflow import Network, save, load, gradcheck

    net = Network([64, 32, 10], seed=0)
    history = net.fit(X, y, epochs=30, batch_size=16, learning_rate=1.0)
    save(net, "model.safetensors")

See ``docs/notation.md`` for how the code's names map to the derivation's symbols.
"""

from __future__ import annotations

from deltaflow.engine.activations import ACTIVATIONS, get_activation
from deltaflow.engine.losses import LOSSES, get_loss
from deltaflow.errors import (
    ConfigError,
    DataError,
    DeltaflowError,
    DeviceError,
    DivergenceError,
    ModelFileError,
)
from deltaflow.gradcheck import GradcheckResult, gradcheck
from deltaflow.io import load, save
from deltaflow.network import Network
from deltaflow.training.loop import EpochRecord, History, evaluate, fit
from deltaflow.training.optimizers import OPTIMIZERS, SCHEDULES, get_optimizer

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "ConfigError",
    "DataError",
    "DeltaflowError",
    "DeviceError",
    "DivergenceError",
    "EpochRecord",
    "GradcheckResult",
    "History",
    "ModelFileError",
    "Network",
    "__version__",
    "evaluate",
    "fit",
    "get_activation",
    "get_loss",
    "get_optimizer",
    "gradcheck",
    "load",
    "save",
]
