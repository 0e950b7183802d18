"""One data-parallel training step: every rank takes its slice of the batch, and one
all-reduce of a flat buffer makes the batch's gradient on every rank.

The gradient of a batch is the sum of the gradients of its slices once the ``1/m`` of
the mean is the whole batch's: each rank runs the forward sweep and the backward dynamic
programme on its own rows with ``delta[L]`` scaled by ``1/B`` (``B`` the batch's rows, or
the sum of its sample weights), and the sum over the ranks is the batch's ``dC/dTheta``.
The buffer carries a few more numbers, each rank's share of the batch's cost, of its
right guesses and of the delta norms, so that one all-reduce a step tells every rank
everything the loop decides on, and every rank decides the same.
"""

from __future__ import annotations

import numpy as np

from deltaflow.engine import backprop, params
from deltaflow.network import Network
from deltaflow.parallel import Communicator, rank_rows

__all__ = ["DataParallelStep"]

# the slots after the gradients: the batch's cost times its rows (or weight), its hits
_COST, _HITS, _NORMS = 0, 1, 2


class DataParallelStep:
    """Forward, backward and the all-reduce for this rank's slice of each batch.

    Parameters
    ----------
    comm : Communicator
    net : Network
    X : ndarray of shape (m, S[0])
        All the training rows (a memory map is read only where this rank's rows lie).
    Y : ndarray of shape (m, S[L])
        Encoded targets.
    W : ndarray of shape (m,) or None
        Sample weights.
    labels : ndarray of shape (m,) or None
        Class indices, to count right guesses.
    batch_size : int
        Rows of a whole batch (``B``); each rank holds at most ``ceil(B / ranks)``.
    weight_decay : float
        ``lambda``, added to the summed gradient once (not once per rank).
    track_delta_norms : bool
        Also sum each layer's ``sum |delta[l]| / S[l]`` over the ranks.

    Attributes
    ----------
    ws : Workspace
        The rank's workspace, for ``ceil(B / ranks)`` rows; its ``grad`` (and the
        ``dtheta``, ``db`` views) lie in ``flat``.
    flat : ndarray
        ``ws.grad`` followed by the step's figures: what one all-reduce sums.
    grads : list of ndarray
        ``dC/dTheta[1..L]`` then ``dC/db[1..L]``, in the order of
        ``net.weights + net.biases``.
    """

    def __init__(
        self,
        comm: Communicator,
        net: Network,
        X: np.ndarray,
        Y: np.ndarray,
        W: np.ndarray | None,
        labels: np.ndarray | None,
        batch_size: int,
        weight_decay: float,
        track_delta_norms: bool,
    ) -> None:
        self.comm, self.net = comm, net
        self.X, self.Y, self.W, self.labels = X, Y, W, labels
        self.weight_decay = weight_decay
        rows = -(-batch_size // comm.size)
        self.ws = backprop.Workspace(net, rows, gradients=False)
        self.Ybuf = np.empty((rows, Y.shape[1]), dtype=net.dtype)
        self.Wbuf = None if W is None else np.empty(rows, dtype=W.dtype)
        self.pred = np.empty(rows, dtype=np.intp)
        self.norms = track_delta_norms
        n_stats = _NORMS + (net.L if track_delta_norms else 0)
        # the workspace's gradient and the step's figures in one buffer, one all-reduce
        n_params = params.count(net.sizes)
        self.flat = np.zeros(n_params + n_stats, dtype=net.dtype)
        self.gradients, self.stats = self.flat[:n_params], self.flat[n_params:]
        self.ws.grad = self.gradients
        self.ws.dtheta, self.ws.db = params.split(self.gradients, net.sizes)
        self.grads = self.ws.dtheta + self.ws.db

    def step(self, idx: np.ndarray) -> tuple[float, float, int, list[float] | None]:
        """The summed gradient of the batch of rows ``idx`` (in the workspace's ``dtheta``
        and ``db`` on every rank).

        Returns
        -------
        cost : float
            The batch's cost ``C`` (NaN or infinite when any rank's is).
        cost_sum : float
            ``C`` times the batch's rows (or weight sum), for the epoch's mean.
        hits : int
            Right guesses over the batch (0 without labels).
        norms : list of float or None
            Each layer's ``sum |delta[l]| / S[l]`` over the batch, when tracked.
        """
        net, n = self.net, len(idx)
        lo, hi = rank_rows(n, self.comm.rank, self.comm.size)
        mine, k = idx[lo:hi], hi - lo
        denominator = float(n) if self.W is None else float(self.W[idx].sum())
        self.stats[:] = 0
        if k == 0:  # a short last batch can leave a rank without rows
            self.gradients[:] = 0
        else:
            self._own_rows(mine, k, denominator)
        self.comm.allreduce_sum(self.flat)
        if self.weight_decay:
            for g, theta in zip(self.grads, net.weights):
                g += self.weight_decay * theta
        cost_sum = float(self.stats[_COST])
        cost = cost_sum / denominator if denominator > 0 else 0.0
        if not np.isfinite(cost_sum):
            cost = cost_sum
        norms = self.stats[_NORMS:].tolist() if self.norms else None
        return cost, cost_sum, int(self.stats[_HITS]), norms

    def _own_rows(self, mine: np.ndarray, k: int, denominator: float) -> None:
        net = self.net
        view = self.ws.rows(k)
        Yb, Wb = self.Ybuf[:k], None
        self.X.take(mine, axis=0, out=view.a[0], mode="clip")
        self.Y.take(mine, axis=0, out=Yb, mode="clip")
        if self.W is not None and self.Wbuf is not None:
            Wb = self.W.take(mine, out=self.Wbuf[:k], mode="clip")
        a_L = backprop.forward(net, view)
        c = backprop.cost(net, view, Yb, Wb)
        self.stats[_COST] = c * (k if Wb is None else float(Wb.sum()))
        if self.labels is not None:
            pred = self.pred[:k]
            if a_L.shape[1] == 1:
                np.greater(a_L[:, 0], 0.5, out=pred)
            else:
                a_L.argmax(axis=1, out=pred)
            self.stats[_HITS] = np.count_nonzero(pred == self.labels[mine])
        backprop.backward(net, view, Yb, Wb, mean_of=denominator)
        if self.norms:
            # delta carries the batch's 1/B, so the ranks' sums of |delta| / S[l] add
            # up to the one-process figure (mean |delta| per example and unit)
            for l, d in enumerate(view.delta[1:]):
                self.stats[_NORMS + l] = float(np.abs(d).sum()) / d.shape[1]

    def evaluate(
        self, X: np.ndarray, Y: np.ndarray, labels: np.ndarray | None, ws: backprop.Workspace
    ) -> tuple[float, float | None]:
        """Cost and accuracy over all of ``X``, each rank taking a block of its rows
        (through ``ws``, in chunks of ``ws.m`` rows)."""
        from deltaflow.training.loop import _evaluate  # the loop imports this module

        m = X.shape[0]
        lo, hi = rank_rows(m, self.comm.rank, self.comm.size)
        sums = np.zeros(2)
        if hi > lo:
            mine = None if labels is None else labels[lo:hi]
            cost, acc = _evaluate(self.net, X[lo:hi], Y[lo:hi], mine, ws.m, ws)
            sums[:] = cost * (hi - lo), (acc or 0.0) * (hi - lo)
        self.comm.allreduce_sum(sums)
        return float(sums[0]) / m, (round(float(sums[1])) / m if labels is not None else None)
