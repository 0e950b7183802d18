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

from deltaflow.engine import backprop
from deltaflow.network import Network

__all__ = ["GradcheckResult", "finite_differences", "float64_copy", "gradcheck"]


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
    net64 = float64_copy(net)
    X = net64.check_X(X)
    Yenc, _ = net64.encode_targets(Y, X.shape[0])
    dtheta, db = net64.gradients(X, Yenc)
    fd_theta, fd_b = finite_differences(net64, X, Yenc, eps)
    theta_err = [_rel_error(g, n) for g, n in zip(dtheta, fd_theta)]
    bias_err = [_rel_error(g, n) for g, n in zip(db, fd_b)]
    return GradcheckResult(theta=theta_err, bias=bias_err, eps=eps)


def float64_copy(net: Network) -> Network:
    """A copy of ``net`` whose parameters (and computations) are float64."""
    return net.copy(dtype=np.float64)


def finite_differences(
    net: Network, X: np.ndarray, Y: np.ndarray, eps: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Central differences of ``C`` for every entry of every ``Theta[l]`` and ``b[l]``.

    Parameters
    ----------
    net : Network
        Its parameters are moved one entry at a time and put back exactly.
    X : ndarray of shape (m, S[0]), of the network's dtype
    Y : ndarray of shape (m, S[L]), encoded targets of the network's dtype
    eps : float

    Returns
    -------
    fd_theta, fd_b : lists of ndarray
        Laid out like ``net.weights`` and ``net.biases``.
    """
    ws = backprop.Workspace(net, X.shape[0])

    def cost() -> float:
        return net.loss.value(backprop.forward(net, ws, X), Y)

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

    return [numeric(w) for w in net.weights], [numeric(b) for b in net.biases]
