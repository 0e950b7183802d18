"""Batches from memory-mapped data: per-batch checks, block shuffling and a prefetch thread.

Arrays opened with ``np.load(path, mmap_mode="r")`` (or a directory of ``.npy`` shards,
see :mod:`deltaflow.data.npy`) are never copied whole. Their headers are checked up front
and the targets scanned once in chunks; the inputs are converted to the network's dtype
and checked for NaN and infinity one batch at a time, as they are gathered.

Of the two orders of :mod:`deltaflow.training.orders`, ``"rows"`` is drawn as for arrays
in memory, so a memory map trains to bit-identical weights, but each row read is a page
fault at a random place; ``"blocks"`` (the default here) reads the file in long runs.

While the step runs, a background thread gathers the next batches (numpy's ``take``
and the BLAS products release the GIL) and asks the kernel (``madvise``) to read the
blocks the next window of the order needs.
"""

from __future__ import annotations

import mmap
import queue
import threading
from collections.abc import Generator
from typing import Any

import numpy as np

from deltaflow.data.npy import advise, is_mapped
from deltaflow.engine import backprop
from deltaflow.engine.backprop import Workspace
from deltaflow.errors import ConfigError, DataError
from deltaflow.training.batches import Batch
from deltaflow.training.hooks import Hook, TrainingState, labels_of, predict_into
from deltaflow.training.orders import BUFFER_BLOCKS, block_order, block_rows

__all__ = [
    "MappedData",
    "MappedSource",
    "MappedValidation",
    "Prefetcher",
    "UndoOnBadData",
    "evaluate_mapped",
    "is_mapped",
]

_SCAN_ELEMENTS = 1 << 20  # elements per chunk when scanning targets


class MappedData:
    """Inputs and targets read from files, checked and converted a batch at a time.

    Parameters
    ----------
    net : Network
        The network the batches are for (its sizes, dtype and output layer).
    X : memory-mapped array or ShardedRows of shape (m, S[0])
    Y : memory-mapped array or ShardedRows
        Class indices of shape ``(m,)`` or targets of shape ``(m, S[L])``, accepted as
        :meth:`Network.encode_targets` accepts them.

    Raises
    ------
    DataError
        For shapes, element types or target values :meth:`Network.check_X` and
        :meth:`Network.encode_targets` would refuse (NaN or infinity in ``X`` is found
        as the batches are read, by :meth:`gather`).
    """

    def __init__(self, net: Any, X: Any, Y: Any, x_name: str = "X", y_name: str = "Y") -> None:
        self.X, self.Y, self.x_name = X, Y, x_name
        self.dtype = np.dtype(net.dtype)
        self.S_L = net.sizes[-1]
        shape = tuple(X.shape)
        if len(shape) != 2:
            raise DataError(f"{x_name} must be 2-D of shape (m, {net.sizes[0]}), got {shape}")
        if shape[0] == 0:
            raise DataError(f"{x_name} is empty (0 rows); pass at least one example")
        if shape[1] != net.sizes[0]:
            raise DataError(
                f"{x_name} has {shape[1]} features but the input layer has {net.sizes[0]}; "
                "pass the same columns used for training or change the first layer size"
            )
        if X.dtype.kind not in "biuf":
            raise DataError(f"{x_name} must be numeric, got dtype {X.dtype}")
        self.m = int(shape[0])
        self.check_finite = X.dtype.kind == "f"
        self.one_hot, self.is_class = self._scan_targets(Y, y_name)

    def _scan_targets(self, Y: Any, name: str) -> tuple[bool, bool]:
        """Check the targets in chunks; return (encode as one-hot, targets are classes)."""
        shape = tuple(Y.shape)
        if len(shape) == 0 or shape[0] != self.m:
            got = "a scalar" if len(shape) == 0 else f"{shape[0]} rows"
            raise DataError(
                f"X has {self.m} rows but {name} has {got}; pass one target per example"
            )
        if Y.dtype.kind not in "biuf":
            raise DataError(f"{name} must be numeric, got dtype {Y.dtype}")
        S_L = self.S_L
        if len(shape) == 2 and shape[1] != S_L or len(shape) > 2:
            raise DataError(
                f"{name} has shape {shape} but the output layer has {S_L} units; pass "
                f"class indices of shape (m,) or targets of shape (m, {S_L})"
            )
        width = shape[1] if len(shape) == 2 else 1
        step = max(1, _SCAN_ELEMENTS // width)
        integral, one_hot_rows, lo, hi = Y.dtype.kind in "biu", True, np.inf, -np.inf
        for start in range(0, self.m, step):
            chunk = np.asarray(Y[start : start + step])
            if chunk.dtype.kind == "f":
                if not np.isfinite(chunk).all():
                    raise DataError(f"{name} contains NaN or infinite values; clean them first")
                integral = integral and bool(np.array_equal(chunk, np.round(chunk)))
            if chunk.ndim == 1:
                lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
            elif one_hot_rows:
                one_hot_rows = bool(
                    ((chunk == 0) | (chunk == 1)).all() and (chunk.sum(axis=1) == 1).all()
                )
        if len(shape) == 2:
            return False, S_L > 1 and one_hot_rows
        if S_L == 1:
            if not integral:  # one real-valued output: regression
                return False, False
            if lo < 0 or hi > 1:
                raise DataError(
                    f"{name} has labels outside 0..1 for a network with one output unit; "
                    "use as many output units as classes or pass float targets"
                )
            return False, True
        if not integral:
            raise DataError(
                f"{name} is 1-D with non-integer values but the output layer has {S_L} "
                f"units; pass class indices 0..{S_L - 1} or targets of shape (m, {S_L})"
            )
        if lo < 0 or hi >= S_L:
            bad = int(lo if lo < 0 else hi)
            raise DataError(
                f"{name} has label {bad} but the output layer has {S_L} units "
                f"(labels 0..{S_L - 1}); check the labels or the last layer size"
            )
        return True, True

    def gather(self, rows: np.ndarray, x_out: np.ndarray, y_out: np.ndarray) -> None:
        """Rows ``rows`` of ``X`` and their encoded targets into ``x_out`` and ``y_out``.

        ``x_out`` of shape ``(n, S[0])`` and ``y_out`` of shape ``(n, S[L])`` are of the
        network's dtype; the values are those :meth:`Network.check_X` and
        :meth:`Network.encode_targets` give for the same rows.
        """
        if self.X.dtype == x_out.dtype:
            self.X.take(rows, axis=0, out=x_out, mode="clip")
        else:
            np.copyto(x_out, self.X.take(rows, axis=0), casting="unsafe")
        if self.check_finite:
            self._check_finite(rows, x_out)
        self._encode(self.Y.take(rows, axis=0), y_out)

    def _encode(self, y: np.ndarray, y_out: np.ndarray) -> None:
        """Targets as read into encoded rows (one-hot for class indices)."""
        if self.one_hot:
            y_out.fill(0)
            y_out[np.arange(len(y)), y.astype(np.intp)] = 1
        else:
            np.copyto(y_out, y.reshape(y_out.shape), casting="unsafe")

    def labels(self) -> np.ndarray:
        """The class index of every row (read in chunks), as ``labels_of`` the encoded
        targets gives it; for the epoch's accuracy."""
        out = np.empty(self.m, dtype=np.intp)
        step = max(1, _SCAN_ELEMENTS // self.S_L)
        encoded = np.empty((min(step, self.m), self.S_L), dtype=self.dtype)
        for start in range(0, self.m, step):
            chunk = np.asarray(self.Y[start : start + step])
            self._encode(chunk, encoded[: len(chunk)])
            out[start : start + len(chunk)] = labels_of(encoded[: len(chunk)])
        return out

    def _check_finite(self, rows: np.ndarray, x: np.ndarray) -> None:
        # one pass and no mask: the sum of finite values is finite unless it overflows,
        # and only then is the exact (slower) check needed
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(x.sum()) or np.isfinite(x).all():
                return
        r, c = np.argwhere(~np.isfinite(x))[0]
        raise DataError(
            f"{self.x_name} contains NaN or infinite values (first at row {rows[r]}, column "
            f"{c}); clean or impute them first"
        )

    def advise_order(self, mode: str | None) -> None:
        """Advice for the whole map: single pages for rows, the default for blocks.

        Rows in random order want no read-around (``MADV_RANDOM``). Blocks are asked for
        ahead of use (``MADV_WILLNEED``, see :class:`Prefetcher`) and otherwise keep the
        kernel's read-around: ``MADV_SEQUENTIAL`` measured slower, since the rows of a
        window are visited in random order, not in sequence.
        """
        if hasattr(mmap, "MADV_RANDOM"):
            advise(self.X, mmap.MADV_RANDOM if mode == "rows" else mmap.MADV_NORMAL)


class Prefetcher:
    """Gathers the batches of an epoch in a background thread, ahead of their use.

    The thread gathers whole batches, about ``slot_bytes`` of inputs at a time, into one
    of ``depth + 1`` slots. Few, large gathers keep the threads' hand-overs rare, and a
    deep queue keeps the training thread from waiting when the gathering thread is
    scheduled late (on a busy machine each wait costs a scheduler's time slice).

    Parameters
    ----------
    data : MappedData
    batch_size : int
    rows : ndarray of int, optional
        File row of each training position (the training rows after a validation split).
    readahead_rows : int
        With ``mode="blocks"``, how far ahead of the rows being gathered the kernel is
        asked (``MADV_WILLNEED``) to read, in positions of the order; 0 for none.
    depth : int
        Slots gathered ahead of the one in use.
    slot_bytes : int
        Inputs per slot, in bytes of the network's dtype (at least one batch).
    """

    def __init__(
        self,
        data: MappedData,
        batch_size: int,
        *,
        rows: np.ndarray | None = None,
        readahead_rows: int = 0,
        depth: int = 6,
        slot_bytes: int = 4 << 20,
    ) -> None:
        self.data, self.bs, self.rows = data, batch_size, rows
        self.readahead_rows = readahead_rows
        S0 = data.X.shape[1]
        batches = max(1, slot_bytes // (batch_size * S0 * data.dtype.itemsize))
        m = data.m if rows is None else len(rows)
        self.per_slot = batch_size * min(batches, -(-m // batch_size))
        self.slots = [
            (
                np.empty((self.per_slot, S0), dtype=data.dtype),
                np.empty((self.per_slot, data.S_L), dtype=data.dtype),
            )
            for _ in range(depth + 1)
        ]
        self.block = block_rows(S0 * data.X.dtype.itemsize)
        self._progress: queue.Queue[int | None] | None = None

    def epoch(self, order: np.ndarray) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
        """``(X_batch, Y_batch)`` for each batch of ``order``, in turn.

        Each batch's arrays may be overwritten once the next one is asked for. Errors
        of the gathering thread (a NaN in the file, a failing disk) are raised here.
        """
        ready: queue.Queue[tuple[int, int, BaseException | None]] = queue.Queue()
        free: queue.Queue[int] = queue.Queue()
        for slot in range(len(self.slots)):
            free.put(slot)
        stop = threading.Event()
        worker = threading.Thread(
            target=self._work, args=(order, ready, free, stop), name="deltaflow-prefetch"
        )
        worker.daemon = True
        # a third thread asks the kernel for the blocks ahead (MADV_WILLNEED), so that
        # the gathering thread seldom waits for the disk
        progress: queue.Queue[int | None] = queue.Queue()
        advisor = threading.Thread(
            target=self._advise, args=(order, progress), name="deltaflow-readahead"
        )
        advisor.daemon = True
        if self.readahead_rows:
            advisor.start()
            progress.put(0)
        self._progress = progress if self.readahead_rows else None
        worker.start()
        try:
            for _ in range(0, len(order), self.per_slot):
                slot, n, error = ready.get()
                if error is not None:
                    raise error
                x, y = self.slots[slot]
                for first in range(0, n, self.bs):
                    last = min(first + self.bs, n)
                    yield x[first:last], y[first:last]
                free.put(slot)
        finally:
            stop.set()
            free.put(0)  # wake the thread if it waits for a slot
            worker.join()
            if self.readahead_rows:
                progress.put(None)
                advisor.join()

    def _work(
        self,
        order: np.ndarray,
        ready: queue.Queue[tuple[int, int, BaseException | None]],
        free: queue.Queue[int],
        stop: threading.Event,
    ) -> None:
        progress = self._progress
        try:
            for start in range(0, len(order), self.per_slot):
                slot = free.get()
                if stop.is_set():
                    return
                if progress is not None:
                    progress.put(start)
                idx = order[start : start + self.per_slot]
                rows = idx if self.rows is None else self.rows[idx]
                x, y = self.slots[slot]
                n = len(idx)
                self.data.gather(rows, x[:n], y[:n])
                ready.put((slot, n, None))
        except BaseException as exc:  # raised in the training thread by epoch()
            ready.put((0, 0, exc))

    def _advise(self, order: np.ndarray, progress: queue.Queue[int | None]) -> None:
        """Follow the gathering thread's progress, advising ``readahead_rows`` ahead."""
        advised = 0
        while True:
            start = progress.get()
            while start is not None and not progress.empty():  # only the latest counts
                start = progress.get()
            if start is None:
                return
            try:
                advised = self._read_ahead(order, start, advised)
            except (OSError, ValueError):
                return  # hints only: the gathering thread reports real trouble

    def _read_ahead(self, order: np.ndarray, start: int, advised: int) -> int:
        """Ask the kernel for the blocks of positions up to ``start + readahead_rows``."""
        until = min(len(order), start + self.readahead_rows)
        if until - advised < self.readahead_rows // 2 and until < len(order):
            return advised
        span = order[advised:until]
        rows = span if self.rows is None else self.rows[span]
        blocks = np.unique(rows // self.block)
        # runs of consecutive blocks become one madvise call each
        breaks = np.flatnonzero(np.diff(blocks) != 1) + 1
        for run in np.split(blocks, breaks):
            if run.size:
                first = int(run[0]) * self.block
                last = min((int(run[-1]) + 1) * self.block, self.data.m)
                advise(self.data.X, mmap.MADV_WILLNEED, first, last)
        return until


class MappedSource:
    """A :class:`~deltaflow.training.batches.BatchSource` of rows read from files.

    Batches are gathered by a :class:`Prefetcher` thread and copied into the workspace;
    per-example weights (small) stay in memory.

    Parameters
    ----------
    net : Network
    X, Y : memory-mapped arrays (see :class:`MappedData`)
    W : ndarray of shape (m,) or None
        Checked per-example weights of all rows.
    mode : {"rows", "blocks"} or None
        The epoch order (see :func:`shuffle_mode`).
    split : ndarray of int, optional
        A permutation of the rows whose first ``m_val`` are held out for validation.
    validation_data : (X_val, Y_val), optional
        Explicit validation data, in memory or memory-mapped.

    Attributes
    ----------
    val : MappedData or None
        The validation data, and ``val_rows`` its rows (None: all of them).
    m : int
        Training rows; ``order`` their order in the current epoch.
    total_weight : float
        The training rows' summed weight (``m`` when unweighted).
    labels : ndarray of shape (m,) or None
        The class of each training row (None for regression).
    """

    def __init__(
        self,
        net: Any,
        X: Any,
        Y: Any,
        W: np.ndarray | None,
        mode: str | None,
        *,
        split: np.ndarray | None = None,
        m_val: int = 0,
        validation_data: Any = None,
    ) -> None:
        self.data = MappedData(net, X, Y)
        self.mode, self.split = mode, split
        self.rows: np.ndarray | None = None  # file row of each training position
        self.val: MappedData | None = None
        self.val_rows: np.ndarray | None = None
        if validation_data is not None:
            try:
                Xv, Yv = validation_data
            except (TypeError, ValueError):
                raise ConfigError("validation_data must be a pair (X_val, Y_val)") from None
            if not is_mapped(Xv):
                Xv, Yv = np.asarray(Xv), np.asarray(Yv)
            self.val = MappedData(net, Xv, Yv, "X_val", "Y_val")
        elif split is not None:
            self.val, self.val_rows = self.data, split[:m_val]
            train = split[m_val:]
            # blocks read runs of the file: keep the training rows in file order
            self.rows = np.sort(train) if mode == "blocks" else train
            W = None if W is None else W[self.rows]
        self.W = W
        self.m = self.data.m if self.rows is None else len(self.rows)
        self.total_weight = self.m if W is None else float(W.sum())
        self.labels: np.ndarray | None = None
        if self.data.is_class:
            labels = self.data.labels()
            self.labels = labels if self.rows is None else labels[self.rows]
        self.m_val = 0 if self.val is None else self.val.m if self.val_rows is None else m_val
        self.order = np.arange(self.m)
        self.block = block_rows(self.data.X.shape[1] * self.data.X.dtype.itemsize)
        self._prefetch: Prefetcher | None = None
        self._batches: dict[int, Batch] = {}

    def bind(self, ws: Workspace) -> None:
        """Serve batches into ``ws``; advise the kernel of the epochs' access pattern."""
        bs = ws.m
        Y = np.empty((bs, self.data.S_L), dtype=self.data.dtype)
        W = None if self.W is None else np.empty(bs, dtype=self.W.dtype)
        self._batches = {bs: Batch(ws, Y, W)}
        n = self.m % bs
        if n:
            self._batches[n] = Batch(ws.rows(n), Y[:n], None if W is None else W[:n])
        self.data.advise_order(self.mode)
        ahead = 2 * BUFFER_BLOCKS * self.block if self.mode == "blocks" else 0
        self._prefetch = Prefetcher(self.data, bs, rows=self.rows, readahead_rows=ahead)

    def epoch(self, rng: np.random.Generator) -> Generator[Batch, None, None]:
        if self._prefetch is None:
            raise RuntimeError("bind the source to a workspace before asking for batches")
        self.draw(rng)
        return self._serve(self._prefetch)

    def draw(self, rng: np.random.Generator) -> None:
        """The next epoch's order, drawn from ``rng`` in place into :attr:`order`."""
        if self.mode == "rows":
            rng.shuffle(self.order)
        elif self.mode == "blocks":
            block_order(self.m, self.block, BUFFER_BLOCKS, rng, out=self.order)

    def _serve(self, prefetch: Prefetcher) -> Generator[Batch, None, None]:
        stream = prefetch.epoch(self.order)
        try:
            for start, (x, y) in zip(range(0, self.m, prefetch.bs), stream):
                batch = self._batches[len(x)]
                batch.start = start
                np.copyto(batch.ws.a[0], x)
                np.copyto(batch.Y, y)
                if self.W is not None and batch.W is not None:
                    self.W.take(self.order[start : start + len(x)], out=batch.W, mode="clip")
                yield batch
        finally:
            stream.close()

    def arrays(self) -> list[Any]:
        """The arrays that identify the data (for a checkpoint's fingerprint), unread."""
        arrays: list[Any] = []
        for a in (self.data.X, self.data.Y, self.W, self.split):
            if a is not None:
                arrays.extend(getattr(a, "parts", [a]))
        if self.val is not None and self.val is not self.data:
            arrays.extend(getattr(self.val.X, "parts", [self.val.X]))
            arrays.extend(getattr(self.val.Y, "parts", [self.val.Y]))
        return arrays


def evaluate_mapped(
    net: Any, data: MappedData, rows: np.ndarray | None, ws: Workspace
) -> tuple[float, float | None]:
    """Cost and accuracy (None for regression) of ``net`` on rows ``rows`` of ``data``
    (all of them when None), gathered and converted ``ws.m`` rows at a time."""
    m = data.m if rows is None else len(rows)
    Ybuf = np.empty((ws.m, data.S_L), dtype=net.dtype)
    pred = np.empty(ws.m, dtype=np.intp)
    total, hits = 0.0, 0
    for start in range(0, m, ws.m):
        stop = min(start + ws.m, m)
        n = stop - start
        view, Yb = ws.rows(n), Ybuf[:n]
        data.gather(np.arange(start, stop) if rows is None else rows[start:stop], view.a[0], Yb)
        a = backprop.forward(net, view)
        total += backprop.cost(net, view, Yb) * n
        if data.is_class:
            predict_into(a, pred[:n])
            hits += int(np.count_nonzero(pred[:n] == labels_of(Yb)))
    return total / m, (hits / m if data.is_class else None)


class MappedValidation(Hook):
    """The validation cost and accuracy after every epoch, read from files in chunks.

    Parameters
    ----------
    data : MappedData
    rows : ndarray of int or None
        The rows of ``data`` to validate on (None: all).
    chunk : int
        Rows per chunk of the forward sweep.
    """

    def __init__(self, net: Any, data: MappedData, rows: np.ndarray | None, chunk: int) -> None:
        self.data, self.rows = data, rows
        m = data.m if rows is None else len(rows)
        self.ws = backprop.Workspace(net, min(chunk, m))

    def on_batches_end(self, state: TrainingState) -> None:
        state.val_cost, state.val_accuracy = evaluate_mapped(
            state.net, self.data, self.rows, self.ws
        )


class UndoOnBadData(Hook):
    """Keeps the parameters of the epoch's start, to put back with :meth:`undo` when a
    batch read from a file turns out to hold NaN or infinity in the middle of an epoch."""

    def __init__(self, net: Any) -> None:
        self.snapshot = np.empty_like(net.params)

    def on_epoch_begin(self, state: TrainingState) -> None:
        np.copyto(self.snapshot, state.net.params)

    def undo(self, net: Any) -> None:
        np.copyto(net.params, self.snapshot)
