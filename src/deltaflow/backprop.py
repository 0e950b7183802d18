"""The forward sweep and the backward dynamic programme, on preallocated buffers.

Index convention (the derivation's, kept everywhere in deltaflow):

* layers ``l = 0..L``; layer ``l`` has ``S[l]`` units; ``a[0] = X``;
* ``Theta[l]`` (``net.weights[l-1]``) has shape ``(S[l-1], S[l])`` and ``b[l]``
  (``net.biases[l-1]``) shape ``(S[l],)``, for ``l = 1..L``;
* ``z[l] = a[l-1] @ Theta[l] + b[l]`` and ``a[l] = g[l](z[l])``, each of shape ``(m, S[l])``;
* ``delta[l] = dC/dz[l]``, the table the dynamic programme fills, of shape ``(m, S[l])``.

A batch of ``m`` examples is a matrix of ``m`` rows, so every step is one matrix product
over the whole batch: there is no per-example loop.

The :class:`Workspace` holds every array whose size scales with the batch, allocated
once; :func:`forward` and :func:`backward` only write into it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .network import Network

__all__ = ["Workspace", "backward", "forward"]


class Workspace:
    """Buffers for one batch size: ``a[0..L]``, ``delta[1..L]`` and the gradients.

    Parameters
    ----------
    net : Network
        The network whose shapes and dtype the buffers take.
    m : int
        The number of examples (rows) in a batch.

    Attributes
    ----------
    a : list of ndarray
        ``a[l]`` of shape ``(m, S[l])`` for ``l = 0..L``. ``a[0]`` is the input batch;
        ``a[l]`` for ``l >= 1`` holds ``z[l]`` for a moment and then ``g(z[l])``.
    delta : list of ndarray or None
        ``delta[l]`` of shape ``(m, S[l])`` for ``l = 1..L``; ``delta[0]`` is None
        (the input has no ``z``).
    dtheta, db : list of ndarray
        ``dC/dTheta[l]`` and ``dC/db[l]`` at index ``l-1``, like ``net.weights``.
    """

    def __init__(self, net: Network, m: int) -> None:
        sizes, dtype = net.sizes, net.dtype
        self.m = m
        self.a = [np.empty((m, s), dtype=dtype) for s in sizes]
        self.delta: list[np.ndarray | None] = [None] + [
            np.empty((m, s), dtype=dtype) for s in sizes[1:]
        ]
        self.dtheta = [np.empty_like(w) for w in net.weights]
        self.db = [np.empty_like(b) for b in net.biases]
        self._views: dict[int, Workspace] = {}

    def rows(self, m: int) -> Workspace:
        """A workspace for a smaller batch of ``m`` rows, sharing this one's memory.

        The first ``m`` rows of a C-ordered matrix are contiguous, so the views are as
        good as fresh buffers; the gradients are shared outright.
        """
        if m == self.m:
            return self
        if m > self.m:
            raise ValueError(f"workspace holds {self.m} rows, asked for {m}")
        view = self._views.get(m)
        if view is None:
            view = object.__new__(Workspace)
            view.m = m
            view.a = [a[:m] for a in self.a]
            view.delta = [None] + [d[:m] for d in self.delta[1:]]  # type: ignore[index]
            view.dtheta, view.db = self.dtheta, self.db
            view._views = {}
            self._views[m] = view
        return view


def forward(net: Network, ws: Workspace, X: np.ndarray | None = None) -> np.ndarray:
    """Forward sweep: fill ``ws.a[1..L]`` from ``ws.a[0]`` and return ``a[L]``.

    Parameters
    ----------
    X : ndarray of shape (m, S[0]), optional
        The batch, already of the network's dtype and C-ordered. When omitted the
        batch is the one already in ``ws.a[0]``.
    """
    a = ws.a
    if X is not None:
        a[0] = X
    for l in range(1, net.L + 1):
        np.dot(a[l - 1], net.weights[l - 1], out=a[l])  # z[l] = a[l-1] @ Theta[l] ...
        a[l] += net.biases[l - 1]  # ... + b[l]
        net.activations[l - 1].forward(a[l], out=a[l])  # a[l] = g(z[l]), in place
    return a[net.L]


def backward(net: Network, ws: Workspace, Y: np.ndarray, weights: np.ndarray | None = None) -> None:
    """Backward dynamic programme: fill ``ws.dtheta`` and ``ws.db`` after :func:`forward`.

    Last layer to first::

        delta[L]   = dC/da[L] * g'(z[L])            (the loss's base case)
        delta[l-1] = (delta[l] @ Theta[l].T) * g'(z[l-1])
        dTheta[l]  = a[l-1].T @ delta[l] / m,  db[l] = column means of delta[l]

    Each ``delta[l]`` is computed once and reused by layer ``l-1``. The ``1/m`` is
    folded into ``delta[L]`` (and so carried by every later ``delta``), which saves a
    pass over each gradient.

    Parameters
    ----------
    Y : ndarray of shape (m, S[L])
        Targets, of the network's dtype.
    weights : ndarray of shape (m,), optional
        Per-example weights ``w_i >= 0`` for the weighted cost
        ``C = sum_i w_i C_i / sum_i w_i``: row ``i`` of ``delta[L]`` carries
        ``w_i / sum_i w_i`` where the unweighted cost has ``1/m``. Weights that are all
        zero give zero gradients. None (the default) is the plain mean, with no extra work.
    """
    a, delta = ws.a, ws.delta
    L, m = net.L, ws.m
    if weights is None:
        net.loss.output_delta(a[L], Y, net.activations[L - 1], out=delta[L], scale=1.0 / m)
    else:
        net.loss.output_delta(a[L], Y, net.activations[L - 1], out=delta[L], scale=1.0)
        total = weights.sum()
        delta[L] *= (weights / total if total > 0 else weights)[:, None]
    for l in range(L, 0, -1):
        np.dot(a[l - 1].T, delta[l], out=ws.dtheta[l - 1])
        np.add.reduce(delta[l], axis=0, out=ws.db[l - 1])
        if l > 1:
            np.dot(delta[l], net.weights[l - 1].T, out=delta[l - 1])
            net.activations[l - 2].backprop(a[l - 1], delta[l - 1])
