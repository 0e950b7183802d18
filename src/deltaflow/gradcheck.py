"""Finite differences against the backward dynamic programme.

For every parameter ``theta`` the central difference
``(C(theta + eps) - C(theta - eps)) / (2 eps)`` is compared with the table's gradient,
in float64 whatever the network's dtype. This is a test instrument: it costs two forward
sweeps per parameter, so use it on small networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import backprop
from .network import Network

__all__ = ["GradcheckResult", "gradcheck"]


@dataclass
class GradcheckResult:
    """Largest relative error per layer, for ``Theta[l]`` and ``b[l]`` (index ``l-1``).

    The relative error of a layer is ``max |analytic - numeric|`` divided by the larger
    of ``max |analytic|`` and ``max |numeric|`` over that layer's entries (0 when both
    are 0): a wrong term in the recursion shows up at the size of the gradient itself,
    while entries that are tiny by nature do not inflate it.
    """

    theta: list[float]
    bias: list[float]
    eps: float

    @property
    def max_error(self) -> float:
        return max(self.theta + self.bias)

    def ok(self, tol: float = 1e-6) -> bool:
        """True when every layer's relative error is at most ``tol``."""
        return self.max_error <= tol

    def __str__(self) -> str:
        lines = ["layer  rel.err dC/dTheta  rel.err dC/db"]
        for l, (t, b) in enumerate(zip(self.theta, self.bias), start=1):
            lines.append(f"{l:>5}  {t:>17.3e}  {b:>13.3e}")
        return "\n".join(lines)


def _rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    scale = max(float(np.abs(analytic).max()), float(np.abs(numeric).max()))
    if scale == 0.0:
        return 0.0
    return float(np.abs(analytic - numeric).max()) / scale


def gradcheck(net: Network, X: Any, Y: Any, *, eps: float = 1e-6) -> GradcheckResult:
    """Compare :meth:`Network.gradients` with central finite differences.

    Parameters
    ----------
    net : Network
        Left unchanged; a float64 copy is checked.
    X : array-like of shape (m, S[0])
    Y : array-like
        Targets in any form :meth:`Network.fit` accepts.
    eps : float
        Step of the central difference.

    Returns
    -------
    GradcheckResult
    """
    net64 = net.copy()
    if net64.dtype != np.float64:
        net64.dtype = np.dtype(np.float64)
        net64.weights = [w.astype(np.float64) for w in net64.weights]
        net64.biases = [b.astype(np.float64) for b in net64.biases]
    X = net64.check_X(X)
    Yenc, _ = net64.encode_targets(Y, X.shape[0])
    dtheta, db = net64.gradients(X, Yenc)
    ws = backprop.Workspace(net64, X.shape[0])

    def cost() -> float:
        return net64.loss.value(backprop.forward(net64, ws, X), Yenc)

    def numeric(param: np.ndarray) -> np.ndarray:
        out = np.empty_like(param)
        flat, grad = param.reshape(-1), out.reshape(-1)
        for k in range(flat.size):
            keep = flat[k]
            flat[k] = keep + eps
            plus = cost()
            flat[k] = keep - eps
            minus = cost()
            flat[k] = keep
            grad[k] = (plus - minus) / (2 * eps)
        return out

    theta_err = [_rel_error(g, numeric(w)) for g, w in zip(dtheta, net64.weights)]
    bias_err = [_rel_error(g, numeric(b)) for g, b in zip(db, net64.biases)]
    return GradcheckResult(theta=theta_err, bias=bias_err, eps=eps)
