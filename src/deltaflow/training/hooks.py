"""What happens between the batches: epoch hooks, in the spirit of Keras's callbacks.

The loop (:mod:`deltaflow.training.loop`) runs batches and knows nothing of validation,
early stopping, checkpoints or delta norms; each is a :class:`Hook` that reads and
writes the shared :class:`TrainingState` at fixed moments of a run:

===================  =========================================================
``on_train_begin``   before the first epoch (a checkpoint restores the run here)
``on_epoch_begin``   before the epoch's first batch
``on_batch_end``     after each batch's update (only hooks that override it)
``on_batches_end``   after the last batch, before the epoch's record is made
``on_epoch_end``     after the record is in ``state.history``; may stop the run
``on_train_end``     after the last epoch (early stopping restores the best here)
===================  =========================================================

Hooks run in the order given; :func:`deltaflow.training.fit` puts them in the order
``DivergenceGuard, Validation, DeltaNorms, EarlyStopping, Callbacks, Checkpoints``; a
data-parallel run (:mod:`deltaflow.training.data_parallel`) puts its step first,
validates with each rank's share of the rows, votes on stopping after the callbacks and
has the ranks compare their start after the checkpoint's restore.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from deltaflow.engine import backprop
from deltaflow.engine import params as flat
from deltaflow.errors import DivergenceError
from deltaflow.network import Network
from deltaflow.training import checkpoint
from deltaflow.training.batches import Batch, BatchSource
from deltaflow.training.optimizers import Optimizer

__all__ = [
    "Callbacks",
    "Checkpoints",
    "DeltaNorms",
    "DivergenceGuard",
    "EarlyStopping",
    "EpochRecord",
    "History",
    "Hook",
    "TrainingState",
    "Validation",
    "evaluate_arrays",
]


@dataclass
class EpochRecord:
    """What one epoch produced; passed to every callback.

    ``cost`` is the mean over the epoch's batches of the cost each batch had when it
    was used (before its update), as Keras and scikit-learn report it: no extra pass.
    """

    epoch: int
    cost: float
    accuracy: float | None
    val_cost: float | None
    val_accuracy: float | None
    learning_rate: float
    seconds: float


@dataclass
class History:
    """Per-epoch training record returned by :func:`fit`.

    Attributes
    ----------
    epoch, cost, accuracy, val_cost, val_accuracy, learning_rate, seconds : list
        One entry per epoch run; accuracies are None for regression and validation
        entries None without validation data.
    best_epoch : int or None
        The epoch with the lowest validation cost (early stopping restores it).
    stopped_early : bool
        True when early stopping or a callback ended training before ``epochs``.
    delta_norms : list of list of float
        With ``fit(..., track_delta_norms=True)``, one entry per epoch: for each layer
        ``l = 1..L``, the mean over the epoch's batches of the mean ``|delta^(l)|`` per
        example and unit (``delta`` without the engine's ``1/m``). Empty otherwise.
    """

    epoch: list[int] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    accuracy: list[float | None] = field(default_factory=list)
    val_cost: list[float | None] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    delta_norms: list[list[float]] = field(default_factory=list)

    def append(self, rec: EpochRecord) -> None:
        for key, value in asdict(rec).items():
            getattr(self, key).append(value)

    def __len__(self) -> int:
        return len(self.epoch)

    def as_dict(self) -> dict[str, Any]:
        """Plain lists and scalars (JSON-serialisable)."""
        return asdict(self)


@dataclass
class TrainingState:
    """What the loop and its hooks share during one run.

    Attributes
    ----------
    net : Network
        The network being trained (``net.params`` is updated in place).
    epochs : int
        The run's last epoch (1-based): epochs ``first_epoch + 1 .. epochs`` are run.
    history : History
    epoch : int
        The epoch being run, 0-based (the record's ``epoch`` is ``epoch + 1``).
    first_epoch : int
        The epoch to start from, 0-based (a resumed run starts after its checkpoint).
    learning_rate : float
        The epoch's ``alpha``.
    accuracy : float or None
        The epoch's training accuracy, from ``on_batches_end`` on (None for regression).
    val_cost, val_accuracy : float or None
        The epoch's validation figures, once :class:`Validation` has run.
    record : EpochRecord or None
        The epoch's record, from ``on_epoch_end`` on.
    stop : bool
        Set by :meth:`request_stop`; the run ends after the current epoch's hooks.
    best_cost, waited, best_params
        The lowest validation cost so far, the epochs since it, and (with early
        stopping) a copy of ``net.params`` from its epoch.
    """

    net: Network
    epochs: int
    history: History = field(default_factory=History)
    epoch: int = 0
    first_epoch: int = 0
    learning_rate: float = 0.0
    accuracy: float | None = None
    val_cost: float | None = None
    val_accuracy: float | None = None
    record: EpochRecord | None = None
    stop: bool = False
    best_cost: float = math.inf
    waited: int = 0
    best_params: np.ndarray | None = None

    def request_stop(self) -> None:
        """End the run after this epoch (``history.stopped_early`` says if it was early)."""
        self.stop = True
        self.history.stopped_early = self.epoch + 1 < self.epochs


class Hook:
    """Base class: every moment does nothing unless a subclass overrides it."""

    def on_train_begin(self, state: TrainingState) -> None:
        return None

    def on_epoch_begin(self, state: TrainingState) -> None:
        return None

    def on_batch_end(self, state: TrainingState, batch: Batch) -> None:
        return None

    def on_batches_end(self, state: TrainingState) -> None:
        return None

    def on_epoch_end(self, state: TrainingState) -> None:
        return None

    def on_train_end(self, state: TrainingState) -> None:
        return None


class DivergenceGuard(Hook):
    """Keeps the parameters of the epoch's start, the last finite ones known, and puts
    them back before raising :class:`DivergenceError` for a non-finite cost (checked by
    the loop before each update, :meth:`check_cost`) or non-finite parameters after the
    epoch's last update (which no later batch's cost would see)."""

    def __init__(self, net: Network, inputs: Any = None) -> None:
        self.snapshot = np.empty_like(net.params)
        self.inputs = inputs  # the training inputs, to tell when they are the cause

    def on_epoch_begin(self, state: TrainingState) -> None:
        np.copyto(self.snapshot, state.net.params)

    def check_cost(self, state: TrainingState, cost: float, batch_number: int) -> None:
        if not math.isfinite(cost):
            np.copyto(state.net.params, self.snapshot)
            raise DivergenceError(
                f"the cost became {cost} at epoch {state.epoch + 1}, batch {batch_number}; "
                + self._advice(state)
            )

    def on_batches_end(self, state: TrainingState) -> None:
        if not np.isfinite(state.net.params).all():
            np.copyto(state.net.params, self.snapshot)
            raise DivergenceError(
                f"the parameters became infinite or NaN in the last batch of epoch "
                f"{state.epoch + 1}; " + self._advice(state)
            )

    def _advice(self, state: TrainingState) -> str:
        remedy = f"a smaller learning rate than {state.learning_rate:g}"
        return remedy if self.inputs is None else divergence_advice(self.inputs, remedy)


#: inputs larger than this in absolute value are named as a cause of divergence
LARGE_INPUT = 1e4


def largest_magnitude(X: Any, rows: int = 4096) -> float:
    """``max |X|`` of a dense or sparse ``X``, in blocks of rows (no copy of the whole set)."""
    if sparse.issparse(X):
        return float(np.abs(X.data).max()) if X.nnz else 0.0
    return max(float(np.abs(X[i : i + rows]).max()) for i in range(0, X.shape[0], rows))


def divergence_advice(X: Any, remedy: str) -> str:
    """What to try after a divergence: scale the inputs when they are large, else ``remedy``."""
    largest = largest_magnitude(X)
    if largest > LARGE_INPUT:
        return (
            f"X has values as large as {largest:.3g}: scale the inputs first (for example "
            f"to mean 0 and standard deviation 1), or try {remedy}"
        )
    return f"try {remedy}"


def labels_of(Yenc: np.ndarray) -> np.ndarray:
    """Class indices from encoded targets (one-hot rows, or one 0/1 column)."""
    if Yenc.shape[1] == 1:
        return (Yenc[:, 0] > 0.5).astype(np.int64)
    return Yenc.argmax(axis=1)


def predict_into(a: np.ndarray, out: np.ndarray) -> None:
    """The predicted class of each row of ``a`` into ``out``: class 1 where a single
    output exceeds 0.5, else the largest output's index."""
    if a.shape[1] == 1:
        np.greater(a[:, 0], 0.5, out=out)
    else:
        a.argmax(axis=1, out=out)


def evaluate_arrays(
    net: Network,
    X: np.ndarray,
    Yenc: np.ndarray,
    labels: np.ndarray | None,
    ws: backprop.Workspace,
) -> tuple[float, float | None]:
    """Cost and accuracy (None without ``labels``) of ``net`` on checked arrays, in
    chunks of ``ws.m`` rows through ``ws``."""
    m = X.shape[0]
    total, hits = 0.0, 0
    pred = np.empty(ws.m, dtype=np.intp) if labels is not None else None
    for start in range(0, m, ws.m):
        stop = min(start + ws.m, m)
        view = ws.rows(stop - start)
        a = backprop.forward(net, view, X[start:stop])
        total += backprop.cost(net, view, Yenc[start:stop]) * (stop - start)
        if labels is not None and pred is not None:
            predict_into(a, pred[: stop - start])
            hits += int(np.count_nonzero(pred[: stop - start] == labels[start:stop]))
    return total / m, (hits / m if labels is not None else None)


def evaluate_outputs(
    net: Network, out: np.ndarray, Yenc: np.ndarray, labels: np.ndarray | None
) -> tuple[float, float | None]:
    """Cost and accuracy (None without ``labels``) of outputs ``out = a[L]``."""
    accuracy = None
    if labels is not None:
        pred = np.empty(out.shape[0], dtype=np.intp)
        predict_into(out, pred)
        accuracy = int(np.count_nonzero(pred == labels)) / out.shape[0]
    return float(net.loss.value(out, Yenc)), accuracy


class Validation(Hook):
    """The validation cost and accuracy after every epoch, into ``state.val_*``.

    Parameters
    ----------
    X, Y : ndarray of shape (m_val, S[0]) and (m_val, S[L])
        Checked inputs and encoded targets.
    labels : ndarray of shape (m_val,) or None
        Class indices for the accuracy; None for regression.
    rows : int
        Rows per chunk of the forward sweep.
    """

    def __init__(
        self, net: Network, X: np.ndarray, Y: np.ndarray, labels: np.ndarray | None, rows: int
    ) -> None:
        self.X, self.Y, self.labels = X, Y, labels
        self.ws = (
            backprop.Workspace(net, min(rows, X.shape[0]), input_buffer=not sparse.issparse(X))
            if net.device == "cpu"
            else None
        )

    def on_batches_end(self, state: TrainingState) -> None:
        if self.ws is None:  # on a device: the outputs come back, the rest is done here
            state.val_cost, state.val_accuracy = evaluate_outputs(
                state.net, state.net.forward(self.X), self.Y, self.labels
            )
            return
        state.val_cost, state.val_accuracy = evaluate_arrays(
            state.net, self.X, self.Y, self.labels, self.ws
        )


class DeltaNorms(Hook):
    """Mean ``|delta[l]|`` of every layer per epoch, into ``history.delta_norms``.

    ``norms_of(batch)``, when given, tells a batch's figures instead of its workspace (a
    data-parallel step sums them over the ranks).
    """

    def __init__(self, norms_of: Callable[[Batch], list[float]] | None = None) -> None:
        self.norms: list[list[float]] = []
        self.norms_of = norms_of

    def on_epoch_begin(self, state: TrainingState) -> None:
        self.norms = []

    def on_batch_end(self, state: TrainingState, batch: Batch) -> None:
        if self.norms_of is not None:
            self.norms.append(self.norms_of(batch))
            return
        # mean * m = sum / S[l] undoes the engine's folded 1/m; sum costs a third of mean
        deltas = batch.ws.delta[1:]
        self.norms.append([float(np.abs(d).sum()) / d.shape[1] for d in deltas])

    def on_epoch_end(self, state: TrainingState) -> None:
        state.history.delta_norms.append(np.mean(self.norms, axis=0).tolist())


class EarlyStopping(Hook):
    """Tracks the best validation cost (``history.best_epoch``); with ``stop``, ends the
    run after ``patience`` epochs without an improvement of ``min_delta`` and restores
    the best epoch's parameters at the end."""

    def __init__(self, patience: int, min_delta: float, stop: bool) -> None:
        self.patience, self.min_delta, self.stop = patience, min_delta, stop

    def on_epoch_end(self, state: TrainingState) -> None:
        if state.val_cost is None:
            return
        if state.val_cost < state.best_cost - self.min_delta:
            state.best_cost, state.waited = state.val_cost, 0
            state.history.best_epoch = state.epoch + 1
            if self.stop:
                state.best_params = state.net.params.copy()
        else:
            state.waited += 1
            if self.stop and state.waited >= self.patience:
                state.request_stop()

    def on_train_end(self, state: TrainingState) -> None:
        if state.best_params is not None:
            np.copyto(state.net.params, state.best_params)


class Callbacks(Hook):
    """The user's callables, each given the epoch's record; one returning True stops."""

    def __init__(self, callbacks: Iterable[Callable[[EpochRecord], Any]]) -> None:
        self.callbacks = list(callbacks)

    def on_epoch_end(self, state: TrainingState) -> None:
        for cb in self.callbacks:
            if cb(state.record) is True:  # type: ignore[arg-type]
                state.request_stop()


class Checkpoints(Hook):
    """Resumes a run from a checkpoint, and writes one every ``every`` epochs, when the
    run stops and after its last epoch (see :mod:`deltaflow.training.checkpoint`).

    Parameters
    ----------
    directory : path
    every : int
    resumed : Checkpoint or None
        The checkpoint to continue from (``checkpoint.start_run``'s answer).
    optimizer, rng, source
        Whose state is saved and restored: the optimizer's arrays, the generator, and
        the source's ``order``.
    split : ndarray or None
        The validation split's permutation, stored so a resumed run takes the same.
    config, fingerprint, extra
        The settings, the data's digest and the caller's facts, stored in every file.
    writes : bool, default True
        Write checkpoints (in a data-parallel run rank 0 alone writes; every rank
        restores).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        every: int,
        resumed: checkpoint.Checkpoint | None,
        *,
        optimizer: Optimizer,
        rng: np.random.Generator,
        source: BatchSource,
        split: np.ndarray | None,
        config: dict[str, Any],
        fingerprint: str,
        extra: dict[str, Any] | None,
        writes: bool = True,
    ) -> None:
        self.directory, self.every, self.resumed = directory, every, resumed
        self.writes = writes
        self.optimizer, self.rng, self.source, self.split = optimizer, rng, source, split
        self.config, self.fingerprint, self.extra = config, fingerprint, extra

    def on_train_begin(self, state: TrainingState) -> None:
        ckpt = self.resumed
        if ckpt is None:
            return
        net = state.net
        checkpoint.restore(
            ckpt, net.weights + net.biases, self.optimizer, self.rng, self.source.order
        )
        state.history = checkpoint.restore_history(ckpt, History)
        state.best_cost, state.waited = float(ckpt.state["best_cost"]), int(ckpt.state["waited"])
        if ckpt.best_params is not None:
            state.best_params = np.empty_like(net.params)
            weights, biases = flat.split(state.best_params, net.sizes)
            for p, saved in zip(weights + biases, ckpt.best_params):
                p[...] = saved
        state.first_epoch = state.epochs if ckpt.state["finished"] else ckpt.epoch

    def on_epoch_end(self, state: TrainingState) -> None:
        done = state.epoch + 1
        finished = state.stop or done == state.epochs
        if not self.writes or not (finished or done % self.every == 0):
            return
        best = None
        if state.best_params is not None:
            weights, biases = flat.split(state.best_params, state.net.sizes)
            best = weights + biases
        checkpoint.save_run(
            self.directory,
            epoch=done,
            net=state.net,
            optimizer=self.optimizer,
            rng=self.rng,
            order=self.source.order,
            split=self.split,
            history=state.history.as_dict(),
            config=self.config,
            state={
                "best_cost": state.best_cost,
                "waited": state.waited,
                "finished": finished,
                "data": self.fingerprint,
            },
            best_params=best,
            extra=self.extra,
        )
