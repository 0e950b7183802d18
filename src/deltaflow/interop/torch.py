"""PyTorch conversion: a network as ``nn.Sequential(Linear, activation, Linear, ...)``.

PyTorch's ``nn.Linear`` computes ``x @ W.T + bias`` with ``W`` of shape ``(out, in)``,
so ``W = Theta[l].T`` and ``bias = b[l]``. Layer ``l`` becomes the modules at indices
``2(l-1)`` (the ``Linear``) and ``2(l-1) + 1`` (its activation; ``nn.Identity`` for an
identity layer), so a state_dict's keys are ``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ...
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deltaflow.errors import ConfigError
from deltaflow.interop._common import build_network, model_facts, require

__all__ = ["from_torch", "to_torch"]

_INSTALL = "torch (the CPU build is enough)"
_LEAKY_SLOPE = 0.01


def _modules(nn: Any) -> dict[str, Any]:
    """deltaflow's activation names and the PyTorch module that computes each."""
    return {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,
        "softmax": nn.Softmax,
        "identity": nn.Identity,
    }


def to_torch(net: Any) -> Any:
    """``net`` as a ``torch.nn.Sequential`` of ``Linear`` layers and activation modules.

    Parameters
    ----------
    net : Network, path of a deltaflow model file, or fitted deltaflow estimator

    Returns
    -------
    torch.nn.Sequential
        In the network's dtype (``torch.float32`` or ``torch.float64``), holding copies
        of the parameters: ``from_torch(to_torch(net))`` is bit for bit ``net``.

    Raises
    ------
    MissingDependencyError
        If PyTorch is not installed.
    ConfigError
        For an activation PyTorch has no module for here.
    """
    torch = require("torch", _INSTALL)
    net = model_facts(net).net
    nn = torch.nn
    kinds = _modules(nn)
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[net.dtype]
    layers: list[Any] = []
    for l in range(1, net.L + 1):
        g = net.activations[l - 1]
        if g.name not in kinds:
            raise ConfigError(f"layer {l}'s activation {g.name!r} has no PyTorch module here")
        linear = nn.Linear(net.sizes[l - 1], net.sizes[l], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(net.weights[l - 1].T)))
            linear.bias.copy_(torch.from_numpy(np.ascontiguousarray(net.biases[l - 1])))
        if g.name == "leaky_relu":
            slope = getattr(g, "slope", _LEAKY_SLOPE)
            module = nn.LeakyReLU(negative_slope=slope)
        elif g.name == "softmax":
            module = nn.Softmax(dim=-1)
        else:
            module = kinds[g.name]()
        layers += [linear, module]
    return nn.Sequential(*layers)


def from_torch(module: Any, *, cost: str | None = None) -> Any:
    """Read a ``torch.nn.Sequential`` of ``Linear`` layers and activations into a Network.

    Each ``Linear`` may be followed by one of ``Sigmoid``, ``Tanh``, ``ReLU``,
    ``LeakyReLU`` (slope 0.01), ``Softmax`` (over the last dimension) or ``Identity``;
    a ``Linear`` without one is an identity layer. The parameters are copied bit for bit
    in their dtype (float32 or float64, the same for every layer).

    Parameters
    ----------
    module : torch.nn.Sequential
    cost : str, optional
        The network's cost, which a Sequential does not record; by default
        cross-entropy for a softmax output, binary cross-entropy for a sigmoid one,
        squared error otherwise.

    Returns
    -------
    Network

    Raises
    ------
    ConfigError
        For any other module, naming it and its index, or mixed dtypes.
    """
    torch = require("torch", _INSTALL)
    nn = torch.nn
    if not isinstance(module, nn.Sequential):
        raise ConfigError(
            f"from_torch takes a torch.nn.Sequential of Linear layers and activations, "
            f"got {type(module).__name__}"
        )
    kinds = {cls: name for name, cls in _modules(nn).items()}
    layers: list[list[Any]] = []  # [theta, b, g or None]
    for index, m in enumerate(module):
        where = f"module {index} ({type(m).__name__})"
        if isinstance(m, nn.Linear):
            layers.append(_linear(torch, m, where))
        elif type(m) in kinds and kinds[type(m)] == "identity":
            continue
        elif type(m) in kinds:
            if not layers or layers[-1][2] is not None:
                raise ConfigError(
                    f"{where} does not follow a Linear layer; from_torch reads "
                    "Linear layers each followed by at most one activation"
                )
            layers[-1][2] = _activation(m, kinds[type(m)], where)
        else:
            raise ConfigError(
                f"{where} is not supported; from_torch reads Linear layers with Sigmoid, "
                "Tanh, ReLU, LeakyReLU, Softmax or Identity"
            )
    if not layers:
        raise ConfigError("the Sequential holds no Linear layer")
    dtypes = {theta.dtype for theta, _, _ in layers}
    if len(dtypes) != 1:
        raise ConfigError(f"the Linear layers mix dtypes {sorted(map(str, dtypes))}; use one")
    return build_network(
        [(theta, b, g or "identity") for theta, b, g in layers],
        dtypes.pop(),
        cost,
        "the Sequential",
        error=ConfigError,
    )


def _linear(torch: Any, m: Any, where: str) -> list[Any]:
    weight = m.weight.detach().cpu()
    if weight.dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"{where} is {weight.dtype}; deltaflow reads float32 or float64")
    theta = np.ascontiguousarray(weight.numpy().T)
    if m.bias is None:
        b = np.zeros(theta.shape[1], dtype=theta.dtype)
    else:
        b = m.bias.detach().cpu().numpy().copy()
        if b.dtype != theta.dtype:
            raise ConfigError(f"{where} has {b.dtype} biases for {theta.dtype} weights")
    return [theta, b, None]


def _activation(m: Any, name: str, where: str) -> str:
    if name == "leaky_relu" and m.negative_slope != _LEAKY_SLOPE:
        raise ConfigError(f"{where} has slope {m.negative_slope}; deltaflow's is 0.01")
    if name == "softmax" and m.dim not in (None, -1, 1):
        raise ConfigError(f"{where} normalises over dim {m.dim}, not over the units (dim -1)")
    return name
