"""Batch sources: where the training loop's rows come from, one batch at a time.

A :class:`BatchSource` owns the order of an epoch's rows and fills a workspace with
each batch in turn: the inputs into ``ws.a[0]``, the targets and the sample weights
into buffers of its own, all preallocated, so serving a batch allocates nothing. The
loop only asks for an epoch's batches; it never indexes the data itself, so a source
may hold its rows in memory (:class:`ArraySource`), read them from disk, or serve one
rank's slice of every global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
from scipy import sparse

from deltaflow.engine.backprop import Workspace
from deltaflow.training.orders import BUFFER_BLOCKS, block_order, block_rows

__all__ = ["ArraySource", "Batch", "BatchSource"]


class Batch:
    """One batch, in place: a workspace whose ``a[0]`` holds its inputs, and its targets.

    A source reuses its batch objects from one batch to the next; a batch is valid until
    the source serves the next one.

    Attributes
    ----------
    ws : Workspace
        The workspace (or its :meth:`~Workspace.rows` view) for ``n`` rows; ``ws.a[0]``
        holds the inputs, of shape ``(n, S[0])``.
    Y : ndarray of shape (n, S[L])
        The targets, encoded.
    W : ndarray of shape (n,) or None
        The sample weights; None when the rows are unweighted.
    start : int
        The batch's first position in the epoch's order: its rows are
        ``order[start : start + n]``.
    n : int
        Rows in the batch (the epoch's last batch may be short).
    """

    __slots__ = ("W", "Y", "n", "start", "ws")

    def __init__(self, ws: Workspace, Y: np.ndarray, W: np.ndarray | None) -> None:
        self.ws, self.Y, self.W = ws, Y, W
        self.n = ws.m
        self.start = 0

    def weight(self) -> float:
        """The denominator of the batch's cost: its rows, or the sum of their weights."""
        return self.n if self.W is None else float(self.W.sum())


class BatchSource(Protocol):
    """Serves an epoch's batches into a workspace, in an order it owns.

    Attributes
    ----------
    m : int
        Rows per epoch.
    total_weight : float
        The sum of the sample weights of an epoch's rows (``m`` when unweighted): the
        epoch's cost is the weighted sum of its batches' costs over it.
    order : ndarray of intp, shape (m,)
        The rows in the order the current epoch serves them. The source changes it in
        place (a checkpoint stores it and restores it in place with ``order[...] = ...``,
        so that the next epoch's order follows from it as in a run never interrupted).
    """

    m: int
    total_weight: float
    order: np.ndarray

    def bind(self, ws: Workspace) -> None:
        """Serve batches of up to ``ws.m`` rows into ``ws`` (and buffers sized for it)."""
        ...

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        """Draw the epoch's order from ``rng`` (when shuffling), then fill and yield each
        batch in turn; the last may be short, no row is dropped."""
        ...


class ArraySource:
    """Rows held in memory: ``X``, encoded targets ``Y`` and optional weights ``W``.

    Each epoch ``rng.shuffle(order)`` permutes the previous epoch's order in place (with
    ``shuffle``), and each batch is gathered with ``take(..., out=...)`` straight into the
    workspace and the target buffers.

    Parameters
    ----------
    X : ndarray or scipy.sparse CSR matrix of shape (m, S[0])
        Inputs, of the network's dtype. Sparse rows are gathered as a CSR batch that
        replaces ``ws.a[0]`` (the workspace is then made without an input buffer; see
        :attr:`sparse`).
    Y : ndarray of shape (m, S[L])
        Encoded targets, of the network's dtype.
    W : ndarray of shape (m,), optional
        Non-negative sample weights.
    shuffle : bool, "rows", "blocks" or None, default True
        Draw a new order every epoch (True or ``"rows"``: ``rng.shuffle``; ``"blocks"``:
        :func:`~deltaflow.training.orders.block_order`); without it the rows are served
        in order.
    """

    def __init__(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        W: np.ndarray | None = None,
        *,
        shuffle: bool | str | None = True,
    ) -> None:
        if Y.shape[0] != X.shape[0] or (W is not None and W.shape != (X.shape[0],)):
            raise ValueError(
                f"X has {X.shape[0]} rows but Y has {Y.shape[0]}"
                + ("" if W is None else f" and W has shape {W.shape}")
            )
        self.X, self.Y, self.W = X, Y, W
        #: True for sparse X: each batch is handed over as a CSR matrix in ws.a[0]
        self.sparse = sparse.issparse(X)
        self.m = X.shape[0]
        self.total_weight = self.m if W is None else float(W.sum())
        self.shuffle = "rows" if shuffle is True else shuffle or None
        self.order = np.arange(self.m)
        self._full: Batch | None = None
        self._last: Batch | None = None

    def bind(self, ws: Workspace) -> None:
        bs = ws.m
        Y = np.empty((bs, self.Y.shape[1]), dtype=self.Y.dtype)
        W = None if self.W is None else np.empty(bs, dtype=self.W.dtype)
        self._full = Batch(ws, Y, W)
        n = self.m % bs
        self._last = None if n == 0 else Batch(ws.rows(n), Y[:n], None if W is None else W[:n])

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        if self._full is None:
            raise RuntimeError("bind the source to a workspace before asking for batches")
        if self.shuffle == "rows":
            rng.shuffle(self.order)
        elif self.shuffle == "blocks":
            rows = block_rows(self.X.strides[0])
            block_order(self.m, rows, BUFFER_BLOCKS, rng, out=self.order)
        return self._batches(self._full, self._last)

    def _batches(self, full: Batch, last: Batch | None) -> Iterator[Batch]:
        # mode="clip" lets take write straight into `out` (the indices are in range anyway)
        X, Y, W, order, bs = self.X, self.Y, self.W, self.order, full.n
        for start in range(0, self.m, bs):
            idx = order[start : start + bs]
            batch = full if len(idx) == bs else last
            assert batch is not None
            batch.start = start
            if self.sparse:
                batch.ws.a[0] = X[idx]  # a CSR batch: the rows' entries, nothing dense
            else:
                X.take(idx, axis=0, out=batch.ws.a[0], mode="clip")
            Y.take(idx, axis=0, out=batch.Y, mode="clip")
            if W is not None:
                W.take(idx, out=batch.W, mode="clip")
            yield batch
