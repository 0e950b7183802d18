"""Data-parallel training over MPI, as parts of the training loop.

The gradient of a batch is the sum of the gradients of its slices once the ``1/B`` of
the mean is the whole batch's. So the loop needs no second version, only other parts:

* :class:`RankSource` draws the same order of the rows on every rank and serves each rank
  its own block of every global batch, with the whole batch's denominator ``B`` (or its
  weight sum); :class:`RankMappedSource` does the same for memory-mapped files, each
  rank gathering, converting and checking only the rows of its own blocks;
* :class:`DataParallelStep` runs forward, cost and the backward dynamic programme on the
  rank's rows with that denominator folded into ``delta[L]``, then one all-reduce (sum)
  of a flat buffer: the gradient ``ws.grad`` followed by the rank's share of the batch's
  cost, of its right guesses and of the delta norms, and a count of the ranks whose rows
  held bad values (NaN or infinity read from a file). Every rank then knows the batch's
  cost, and whether any rank's rows were bad, before any parameter changes, and makes
  the same update or raises the same :class:`~deltaflow.errors.DataError`;
* hooks: :class:`RankValidation` and :class:`RankMappedValidation` (each rank validates
  a block of the rows, the figures summed), :class:`StopVote` (a callback on one rank
  stops them all) and :class:`SameStart` (the ranks compare their data, settings and
  parameters before the first batch). Checkpoints are written by rank 0 alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

import numpy as np

from deltaflow.engine import backprop, params
from deltaflow.errors import DataError
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
from deltaflow.training.mapped import MappedData, MappedSource, Prefetcher, evaluate_mapped
from deltaflow.training.optimizers import Optimizer
from deltaflow.training.orders import BUFFER_BLOCKS

__all__ = [
    "DataParallelStep",
    "RankBatch",
    "RankMappedSource",
    "RankMappedValidation",
    "RankSource",
    "RankValidation",
    "SameStart",
    "StopVote",
]

# the slots after the gradient: the batch's cost times its rows (or weight), its hits,
# the ranks whose rows were bad, then one delta norm per layer
_COST, _HITS, _BAD, _NORMS = 0, 1, 2, 3


class RankBatch(Batch):
    """This rank's rows of a global batch of ``n`` rows starting at ``start``.

    ``ws``, ``Y``, ``W`` and ``labels`` hold the rank's ``rows`` rows (possibly none);
    :meth:`weight` is the whole batch's denominator, the same on every rank. ``error`` is
    the :class:`DataError` met reading the rank's rows from a file (their inputs are then
    not filled), else None.
    """

    __slots__ = ("error", "labels", "rows", "total")

    def __init__(
        self, ws: backprop.Workspace, Y: np.ndarray, W: np.ndarray | None, labels: np.ndarray
    ) -> None:
        super().__init__(ws, Y, W)
        self.rows = ws.m
        self.labels = labels
        self.total = 0.0
        self.error: DataError | None = None

    def weight(self) -> float:
        return self.total


class _RankBlocks:
    """What the rank sources share: the order, this rank's buffers, and the bookkeeping
    of every global batch (its rows, its denominator, the rank's weights and labels).

    A subclass fills the inputs and targets of the rank's rows (:meth:`_inputs`) and
    draws each epoch's order.
    """

    def __init__(
        self,
        comm: Communicator,
        m: int,
        W: np.ndarray | None,
        labels: np.ndarray | None,
        batch_size: int,
        width: int,
        dtype: np.dtype,
    ) -> None:
        self.comm, self.W, self.labels, self.batch_size = comm, W, labels, batch_size
        self.m = m
        self.total_weight = m if W is None else float(W.sum())
        self.order = np.arange(m)
        self._width, self._dtype = width, dtype
        self._ws: backprop.Workspace | None = None
        self._batches: dict[int, RankBatch] = {}

    def bind(self, ws: backprop.Workspace) -> None:
        """Serve into ``ws``, which holds ``ceil(batch_size / ranks)`` rows or more."""
        self._ws = ws
        rows = ws.m
        self._Y = np.empty((rows, self._width), dtype=self._dtype)
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

    def _serve(self) -> Iterator[Batch]:
        W, labels, bs = self.W, self.labels, self.batch_size
        rank, size = self.comm.rank, self.comm.size
        for start in range(0, self.m, bs):
            idx = self.order[start : start + bs]
            lo, hi = rank_rows(len(idx), rank, size)
            mine = idx[lo:hi]
            batch = self._batch(hi - lo)
            batch.start, batch.n, batch.error = start, len(idx), None
            # the whole batch's denominator, summed as one process sums it
            batch.total = float(len(idx)) if W is None else float(W.take(idx).sum())
            self._inputs(batch, mine)
            if W is not None and batch.W is not None:
                W.take(mine, out=batch.W, mode="clip")
            if labels is not None:
                labels.take(mine, out=batch.labels, mode="clip")
            yield batch

    def _inputs(self, batch: RankBatch, mine: np.ndarray) -> None:
        """The inputs and encoded targets of positions ``mine`` into ``batch``."""
        raise NotImplementedError


class RankSource(_RankBlocks):
    """Every rank's block of every global batch of ``batch_size`` rows held in memory.

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
        super().__init__(comm, X.shape[0], W, labels, batch_size, Y.shape[1], Y.dtype)
        self.X, self.Y, self.shuffle = X, Y, shuffle

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        if self._ws is None:
            raise RuntimeError("bind the source to a workspace before asking for batches")
        if self.shuffle:
            rng.shuffle(self.order)
        return self._serve()

    def _inputs(self, batch: RankBatch, mine: np.ndarray) -> None:
        self.X.take(mine, axis=0, out=batch.ws.a[0], mode="clip")
        self.Y.take(mine, axis=0, out=batch.Y, mode="clip")


class RankMappedSource(_RankBlocks):
    """Every rank's block of every global batch, read from memory-mapped files.

    The order is the one ``source`` draws (``"blocks"`` or ``"rows"``, the same on every
    rank, the same as one process draws). Each epoch this rank lists the positions of its
    own blocks of the global batches, and a :class:`~deltaflow.training.mapped.Prefetcher`
    thread gathers, converts and checks just those rows of the file, ahead of their use.
    A NaN or infinity found there is not raised here but handed to the step in the batch
    (:attr:`RankBatch.error`), so that every rank learns of it in the same all-reduce.
    Only ``source``'s one scan of the targets (one column: their checks and classes)
    reads every row of a file.

    Parameters
    ----------
    comm : Communicator
    source : MappedSource
        The one-process source of the same data: its files, training rows, weights,
        labels and order (shared, so a checkpoint restores it in place).
    batch_size : int
        ``B``, the rows of a global batch.
    """

    def __init__(self, comm: Communicator, source: MappedSource, batch_size: int) -> None:
        data = source.data
        super().__init__(comm, source.m, source.W, source.labels, batch_size, data.S_L, data.dtype)
        self.source = source
        self.order = source.order  # drawn by the source, restored in place by a checkpoint
        self._prefetch: Prefetcher | None = None
        self._stream: Iterator[tuple[np.ndarray, np.ndarray]] | None = None

    def bind(self, ws: backprop.Workspace) -> None:
        super().bind(ws)
        source = self.source
        lo, hi = rank_rows(self.batch_size, self.comm.rank, self.comm.size)
        source.data.advise_order(source.mode)
        # the rank's positions cover the same stretch of the file as the whole order's,
        # ranks times fewer of them
        ahead = 2 * BUFFER_BLOCKS * source.block // self.comm.size
        ahead = ahead if source.mode == "blocks" else 0
        self._prefetch = Prefetcher(source.data, hi - lo, rows=source.rows, readahead_rows=ahead)

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        if self._prefetch is None:
            raise RuntimeError("bind the source to a workspace before asking for batches")
        self.source.draw(rng)
        return self._serve_mapped(self._prefetch)

    def rank_positions(self) -> np.ndarray:
        """This rank's positions of the epoch's order: its block of each global batch,
        batch after batch."""
        bs, m, rank, size = self.batch_size, self.m, self.comm.rank, self.comm.size
        full = m - m % bs
        lo, hi = rank_rows(bs, rank, size)
        head = self.order[:full].reshape(-1, bs)[:, lo:hi].ravel()
        lo, hi = rank_rows(m - full, rank, size)
        return np.concatenate([head, self.order[full + lo : full + hi]])

    def _serve_mapped(self, prefetch: Prefetcher) -> Iterator[Batch]:
        self._stream = stream = prefetch.epoch(self.rank_positions())
        try:
            yield from self._serve()
        finally:
            stream.close()
            self._stream = None

    def _inputs(self, batch: RankBatch, mine: np.ndarray) -> None:
        if batch.rows == 0:  # a short last batch can leave a rank without rows
            return
        assert self._stream is not None
        try:
            x, y = next(self._stream)
        except DataError as exc:  # told to every rank by the step's all-reduce
            batch.error = exc
            return
        assert len(x) == batch.rows, "the prefetched rows follow the rank's blocks"
        np.copyto(batch.ws.a[0], x)
        np.copyto(batch.Y, y)


class DataParallelStep(Hook):
    """Forward, backward and one all-reduce on this rank's rows; then the same update
    on every rank.

    :meth:`forward` already runs the backward pass and the all-reduce, because only the
    sum tells the batch's cost, which the loop checks before :meth:`update` changes any
    parameter. When any rank's rows of the batch held bad values (:attr:`RankBatch.error`)
    every rank raises that rank's :class:`DataError` there. The step is also a hook: it
    sets the epoch's accuracy from the summed right guesses.

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
        if batch.error is not None or batch.rows == 0:
            # bad values in the rank's rows, or a short last batch that left it none:
            # nothing to add but the count of ranks with bad rows
            self.grad[:] = 0
            self.stats[_BAD] = batch.error is not None
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
        if self.stats[_BAD]:  # every rank stops here, before any parameter changes
            raise_bad_data(self.comm, batch.error)
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
        figures = None
        if self.hi > self.lo and self.ws is not None:  # a data-parallel network is on the CPU
            figures = evaluate_arrays(state.net, self.X, self.Y, self.labels, self.ws)
        _sum_figures(self.comm, state, figures, self.hi - self.lo, self.m, self.has_labels)


class RankMappedValidation(Hook):
    """Validation on rows read from files, each rank reading and evaluating a block of
    them; the figures are summed. Bad values met on one rank stop every rank with its
    :class:`DataError`.

    Parameters
    ----------
    comm : Communicator
    data : MappedData
    rows : ndarray of int or None
        The rows of ``data`` to validate on (None: all).
    chunk : int
        Rows per chunk of the forward sweep.
    """

    def __init__(
        self,
        comm: Communicator,
        net: Network,
        data: MappedData,
        rows: np.ndarray | None,
        chunk: int,
    ) -> None:
        self.comm, self.data = comm, data
        self.m = data.m if rows is None else len(rows)
        lo, hi = rank_rows(self.m, comm.rank, comm.size)
        self.mine = np.arange(lo, hi) if rows is None else rows[lo:hi]
        self.ws = backprop.Workspace(net, max(1, min(chunk, hi - lo)))

    def on_batches_end(self, state: TrainingState) -> None:
        figures, error = None, None
        if len(self.mine):
            try:
                figures = evaluate_mapped(state.net, self.data, self.mine, self.ws)
            except DataError as exc:  # told to every rank by the sum
                error = exc
        k = len(self.mine)
        _sum_figures(self.comm, state, figures, k, self.m, self.data.is_class, error)


def _sum_figures(
    comm: Communicator,
    state: TrainingState,
    figures: tuple[float, float | None] | None,
    k: int,
    m: int,
    has_labels: bool,
    error: DataError | None = None,
) -> None:
    """The validation cost and accuracy of all ``m`` rows from each rank's ``figures``
    (cost, accuracy) on its ``k`` rows (None: no rows, or bad ones, ``error``)."""
    sums = np.zeros(3)
    if figures is not None:
        cost, acc = figures
        sums[:2] = cost * k, (acc or 0.0) * k
    sums[2] = error is not None
    comm.allreduce_sum(sums)
    if sums[2]:
        raise_bad_data(comm, error)
    state.val_cost = float(sums[0]) / m
    state.val_accuracy = round(float(sums[1])) / m if has_labels else None


def raise_bad_data(comm: Communicator, error: DataError | None) -> NoReturn:
    """Raise on every rank the :class:`DataError` of the first rank that met bad data.

    Every rank calls it at once, after a sum that told them some rank holds an ``error``
    (None on the ranks whose rows were clean).
    """
    messages = comm.allgather(None if error is None else str(error))
    raise DataError(next(m for m in messages if m is not None))


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
