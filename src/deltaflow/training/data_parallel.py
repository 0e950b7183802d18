"""Data-parallel training over MPI, as parts of the training loop.

The gradient of a batch is the sum of the gradients of its slices once the ``1/B`` of
the mean is the whole batch's. So the loop needs no second version, only other parts:

* :class:`RankSource` draws the same order of the rows on every rank and serves each rank
  its own block of every global batch (it reads nothing else of ``X``, which may be a
  memory map), with the whole batch's denominator ``B`` (or its weight sum);
* :class:`DataParallelStep` runs forward, cost and the backward dynamic programme on the
  rank's rows with that denominator folded into ``delta[L]``, then one all-reduce (sum)
  of a flat buffer: the gradient ``ws.grad`` followed by the rank's share of the batch's
  cost, of its right guesses and of the delta norms. Every rank then knows the batch's
  cost before any parameter changes, and makes the same update;
* hooks: :class:`RankValidation` (each rank validates a block of the rows, the figures
  summed), :class:`StopVote` (a callback on one rank stops them all) and
  :class:`SameStart` (the ranks compare their data, settings and parameters before the
  first batch). Checkpoints are written by rank 0 alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from deltaflow.engine import backprop, params
from deltaflow.network import Network
from deltaflow.parallel import Communicator, fingerprint, rank_rows
from deltaflow.training.batches import Batch, BatchSource
from deltaflow.training.hooks import (
    Hook,
    TrainingState,
    Validation,
    evaluate_arrays,
    predict_into,
)
from deltaflow.training.optimizers import Optimizer

__all__ = [
    "DataParallelStep",
    "RankBatch",
    "RankSource",
    "RankValidation",
    "SameStart",
    "StopVote",
]

# the slots after the gradient: the batch's cost times its rows (or weight), its hits,
# then one delta norm per layer
_COST, _HITS, _NORMS = 0, 1, 2


class RankBatch(Batch):
    """This rank's rows of a global batch of ``n`` rows starting at ``start``.

    ``ws``, ``Y``, ``W`` and ``labels`` hold the rank's ``rows`` rows (possibly none);
    :meth:`weight` is the whole batch's denominator, the same on every rank.
    """

    __slots__ = ("labels", "rows", "total")

    def __init__(
        self, ws: backprop.Workspace, Y: np.ndarray, W: np.ndarray | None, labels: np.ndarray
    ) -> None:
        super().__init__(ws, Y, W)
        self.rows = ws.m
        self.labels = labels
        self.total = 0.0

    def weight(self) -> float:
        return self.total


class RankSource:
    """Every rank's block of every global batch of ``batch_size`` rows.

    The order is drawn as :class:`~deltaflow.training.batches.ArraySource` draws it (one
    ``rng.shuffle`` of the whole order, from the same generator on every rank), and each
    global batch is split with :func:`~deltaflow.parallel.rank_rows`.

    Parameters
    ----------
    comm : Communicator
    X, Y, W
        All the training rows, encoded targets and optional weights.
    labels : ndarray of shape (m,) or None
        Class indices, served with the rows so that the step counts right guesses.
    batch_size : int
        ``B``, the rows of a global batch.
    shuffle : bool
    """

    def __init__(
        self,
        comm: Communicator,
        X: np.ndarray,
        Y: np.ndarray,
        W: np.ndarray | None,
        labels: np.ndarray | None,
        batch_size: int,
        *,
        shuffle: bool = True,
    ) -> None:
        self.comm, self.X, self.Y, self.W, self.labels = comm, X, Y, W, labels
        self.m = X.shape[0]
        self.total_weight = self.m if W is None else float(W.sum())
        self.batch_size, self.shuffle = batch_size, shuffle
        self.order = np.arange(self.m)
        self._ws: backprop.Workspace | None = None
        self._batches: dict[int, RankBatch] = {}

    def bind(self, ws: backprop.Workspace) -> None:
        """Serve into ``ws``, which holds ``ceil(batch_size / ranks)`` rows or more."""
        self._ws = ws
        rows = ws.m
        self._Y = np.empty((rows, self.Y.shape[1]), dtype=self.Y.dtype)
        self._W = None if self.W is None else np.empty(rows, dtype=self.W.dtype)
        self._labels = np.empty(rows, dtype=np.intp)
        self._batches = {}

    def _batch(self, k: int) -> RankBatch:
        batch = self._batches.get(k)
        if batch is None:
            assert self._ws is not None, "bind the source to a workspace first"
            ws = self._ws if k == self._ws.m else self._ws.rows(k)
            W = None if self._W is None else self._W[:k]
            batch = self._batches[k] = RankBatch(ws, self._Y[:k], W, self._labels[:k])
        return batch

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        if self._ws is None:
            raise RuntimeError("bind the source to a workspace before asking for batches")
        if self.shuffle:
            rng.shuffle(self.order)
        return self._serve()

    def _serve(self) -> Iterator[Batch]:
        X, Y, W, labels, bs = self.X, self.Y, self.W, self.labels, self.batch_size
        rank, size = self.comm.rank, self.comm.size
        for start in range(0, self.m, bs):
            idx = self.order[start : start + bs]
            lo, hi = rank_rows(len(idx), rank, size)
            mine = idx[lo:hi]
            batch = self._batch(hi - lo)
            batch.start, batch.n = start, len(idx)
            # the whole batch's denominator, summed as one process sums it
            batch.total = float(len(idx)) if W is None else float(W.take(idx).sum())
            X.take(mine, axis=0, out=batch.ws.a[0], mode="clip")
            Y.take(mine, axis=0, out=batch.Y, mode="clip")
            if W is not None and batch.W is not None:
                W.take(mine, out=batch.W, mode="clip")
            if labels is not None:
                labels.take(mine, out=batch.labels, mode="clip")
            yield batch


class DataParallelStep(Hook):
    """Forward, backward and one all-reduce on this rank's rows; then the same update
    on every rank.

    :meth:`forward` already runs the backward pass and the all-reduce, because only the
    sum tells the batch's cost, which the loop checks before :meth:`update` changes any
    parameter. The step is also a hook: it sets the epoch's accuracy from the summed
    right guesses.

    Parameters
    ----------
    comm : Communicator
    net : Network
    optimizer : Optimizer
        Any optimizer; plain SGD too (its update is not fused into the backward pass,
        since the gradient must be summed first).
    weight_decay : float
        ``lambda``, added once to the summed gradient (not once per rank).
    labels : bool
        Count right guesses (class targets).
    track_delta_norms : bool
        Also sum each layer's ``sum |delta[l]| / S[l]``.
    overlap : bool
        Sum layer by layer, each layer's reduction started as the backward pass
        finishes its gradient (the figures travel with layer ``L``'s); without
        ``track_delta_norms`` only, as those figures are known only at the end.

    Attributes
    ----------
    ws : Workspace or None
        The rank's workspace, from :meth:`workspace`; its ``grad`` (with the ``dtheta``,
        ``db`` views) lies at the front of ``flat``.
    flat : ndarray
        The gradient followed by the step's figures: what the all-reduce sums.
    """

    needs_gradients = True

    def __init__(
        self,
        comm: Communicator,
        net: Network,
        optimizer: Optimizer,
        weight_decay: float,
        *,
        labels: bool,
        track_delta_norms: bool = False,
        overlap: bool = False,
    ) -> None:
        self.overlap = overlap and not track_delta_norms
        self.comm, self.net, self.optimizer = comm, net, optimizer
        self.weight_decay, self.labels, self.norms = weight_decay, labels, track_delta_norms
        n_params = params.count(net.sizes)
        n_stats = _NORMS + net.L  # the delta norms' slots are summed only when tracked
        self.flat = np.zeros(n_params + n_stats, dtype=net.dtype)
        self.grad, self.stats = self.flat[:n_params], self.flat[n_params:]
        self.ws: backprop.Workspace | None = None
        self.pred = np.empty(0, dtype=np.intp)
        self.lr, self.hits, self.seen = 0.0, 0, 0
        self._params, self._grads = [net.params], [self.grad]
        # per layer, the part of ``flat`` one reduction sums: layer L's with the figures
        spans = params.layer_slices(net.sizes)
        self._spans = [self.flat[t.start : b.stop] for t, b in spans]
        self._spans[-1] = self.flat[spans[-1][0].start :]
        self._requests: list[Any] = []

    def workspace(self, batch_size: int) -> backprop.Workspace:
        """The rank's workspace for its ``ceil(batch_size / ranks)`` rows, the gradient
        in the buffer the all-reduce sums (the loop asks for it once)."""
        rows = -(-batch_size // self.comm.size)
        ws = self.ws = backprop.Workspace(self.net, rows, gradients=False)
        ws.grad = self.grad
        ws.dtheta, ws.db = params.split(self.grad, self.net.sizes)
        self.pred = np.empty(rows, dtype=np.intp)
        return ws

    def start_epoch(self, learning_rate: float) -> None:
        self.lr, self.hits, self.seen = learning_rate, 0, 0

    def forward(self, batch: Batch) -> float:
        assert isinstance(batch, RankBatch), "a data-parallel step takes a RankSource's batches"
        self.stats[:] = 0
        if batch.rows == 0:  # a short last batch can leave a rank without rows
            self.grad[:] = 0
            if self.overlap:
                for l in range(self.net.L, 0, -1):
                    self._layer_done(l)
        else:
            self._own_rows(batch)
        if self.overlap:
            self.comm.wait_all(self._requests)
            self._requests.clear()
        else:
            self.comm.allreduce_sum(self.flat)
        self.hits += int(self.stats[_HITS])
        self.seen += batch.n
        cost_sum, total = float(self.stats[_COST]), batch.total
        return cost_sum / total if total > 0 and np.isfinite(cost_sum) else cost_sum

    def _own_rows(self, batch: RankBatch) -> None:
        net, ws, W = self.net, batch.ws, batch.W
        a_L = backprop.forward(net, ws)
        c = backprop.cost(net, ws, batch.Y, W)
        self.stats[_COST] = c * (batch.rows if W is None else float(W.sum()))
        if self.labels:
            pred = self.pred[: batch.rows]
            predict_into(a_L, pred)
            self.stats[_HITS] = np.count_nonzero(pred == batch.labels)
        # the whole batch's 1/B (or 1/sum of its weights) on this rank's rows
        scale = 1.0 / batch.total if batch.total > 0 else 1.0
        done = self._layer_done if self.overlap else None
        backprop.backward(net, ws, batch.Y, W, scale=scale, layer_done=done)
        if self.norms:
            # delta carries the whole batch's 1/B, so the ranks' sums of |delta| / S[l]
            # add up to the one-process figure
            for l, d in enumerate(ws.delta[1:]):
                self.stats[_NORMS + l] = float(np.abs(d).sum()) / d.shape[1]

    def _layer_done(self, l: int) -> None:
        """Start summing layer ``l``'s gradient; nudge the reductions already started."""
        if self._requests:
            self.comm.progress(self._requests)
        self._requests.append(self.comm.iallreduce_sum(self._spans[l - 1]))

    def update(self, batch: Batch) -> None:
        if self.weight_decay:
            for g, theta in zip(batch.ws.dtheta, self.net.weights):
                g += self.weight_decay * theta
        self.optimizer.step(self._params, self._grads, self.lr)

    def batch_norms(self, batch: Batch) -> list[float]:
        """The batch's delta norms, summed over the ranks (for :class:`DeltaNorms`)."""
        return self.stats[_NORMS:].tolist()

    def on_batches_end(self, state: TrainingState) -> None:
        if self.labels:
            state.accuracy = self.hits / self.seen


class RankValidation(Validation):
    """Validation with each rank taking a block of the rows; the figures are summed."""

    def __init__(
        self,
        comm: Communicator,
        net: Network,
        X: np.ndarray,
        Y: np.ndarray,
        labels: np.ndarray | None,
        rows: int,
    ) -> None:
        self.comm, self.m = comm, X.shape[0]
        self.lo, self.hi = rank_rows(self.m, comm.rank, comm.size)
        lo, hi = self.lo, self.hi
        mine = None if labels is None else labels[lo:hi]
        super().__init__(net, X[lo:hi], Y[lo:hi], mine, max(1, min(rows, hi - lo)))
        self.has_labels = labels is not None

    def on_batches_end(self, state: TrainingState) -> None:
        k = self.hi - self.lo
        sums = np.zeros(2)
        if k and self.ws is not None:  # a data-parallel network is on the CPU
            cost, acc = evaluate_arrays(state.net, self.X, self.Y, self.labels, self.ws)
            sums[:] = cost * k, (acc or 0.0) * k
        self.comm.allreduce_sum(sums)
        state.val_cost = float(sums[0]) / self.m
        state.val_accuracy = round(float(sums[1])) / self.m if self.has_labels else None


class StopVote(Hook):
    """After the callbacks: when any rank was asked to stop, every rank stops."""

    def __init__(self, comm: Communicator) -> None:
        self.comm = comm

    def on_epoch_end(self, state: TrainingState) -> None:
        if self.comm.any(state.stop) and not state.stop:
            state.request_stop()


class SameStart(Hook):
    """Before the first batch (after a checkpoint's restore): every rank must hold the
    same data, settings, starting parameters and order, else all stop with a message."""

    def __init__(
        self, comm: Communicator, source: BatchSource, arrays: list[np.ndarray], settings: Any
    ) -> None:
        self.comm, self.source, self.arrays, self.settings = comm, source, arrays, settings

    def on_train_begin(self, state: TrainingState) -> None:
        net = state.net
        self.comm.check_same(
            "training data",
            fingerprint(*self.arrays, sample_bytes=1 << 20),
            "give every rank the same X, Y and sample weights",
        )
        self.comm.check_same(
            "settings or starting parameters",
            fingerprint(
                self.settings,
                net.sizes,
                net.dtype.str,
                state.first_epoch,
                self.source.order,
                net.params,
            ),
            "give every rank the same network (the same seed), settings and checkpoint "
            "directory (one that every rank can read)",
        )
