"""A network's forward pass, cost and gradients on its device, through the generic engine.

:class:`deltaflow.Network` hands over to these when its parameters live on a
:class:`~deltaflow.engine.devices.Device`; inputs arrive as checked numpy arrays and the
results go back as numpy arrays. Rows are taken in chunks so the workspace stays small.
"""

from __future__ import annotations

import numpy as np

from deltaflow.engine import generic, params
from deltaflow.engine.backprop import Model
from deltaflow.engine.devices import Device

__all__ = ["cost", "forward", "gradients"]

#: rows per chunk of forward and cost
CHUNK = 8192


def forward(net: Model, device: Device, X: np.ndarray) -> np.ndarray:
    """``a[L]`` for every row of ``X``, as a numpy array."""
    m = X.shape[0]
    out = np.empty((m, net.sizes[-1]), dtype=net.dtype)
    ws = generic.Workspace(net, min(m, CHUNK), device.xp, device.products, gradients=False)
    with device.activate():
        for start in range(0, m, ws.m):
            part = ws.rows(min(ws.m, m - start))
            part.a[0][...] = device.asarray(X[start : start + part.m])
            out[start : start + part.m] = device.to_host(generic.forward(net, part))
    return out


def cost(net: Model, device: Device, X: np.ndarray, Y: np.ndarray) -> float:
    """The cost ``C`` over all rows of ``X`` with encoded targets ``Y``."""
    m = X.shape[0]
    ws = generic.Workspace(net, min(m, CHUNK), device.xp, device.products, gradients=False)
    total = 0.0
    with device.activate():
        for start in range(0, m, ws.m):
            part = ws.rows(min(ws.m, m - start))
            part.a[0][...] = device.asarray(X[start : start + part.m])
            generic.forward(net, part)
            c = generic.cost(net, part, device.asarray(Y[start : start + part.m]))
            total += float(device.to_host(c)) * part.m
    return total / m


def gradients(
    net: Model, device: Device, X: np.ndarray, Y: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``dC/dTheta[l]`` and ``dC/db[l]`` over the whole batch, as numpy arrays."""
    ws = generic.Workspace(net, X.shape[0], device.xp, device.products)
    with device.activate():
        ws.a[0][...] = device.asarray(X)
        generic.forward(net, ws)
        generic.backward(net, ws, device.asarray(Y))
        grad = device.to_host(ws.grad)
    return params.split(grad, net.sizes)
