"""The training loop: epochs of batches from a source, through a step, with hooks between.

The parts, each in its own module:

* a batch source (:mod:`.batches`) fills the workspace with the next batch and owns the
  order of an epoch's rows;
* a step (:mod:`.steps`) runs forward, cost, backward and update on that batch;
* hooks (:mod:`.hooks`) do what happens between epochs: validation, early stopping,
  checkpoints, delta norms, the user's callbacks; a guard against divergence always runs.

:func:`run` is the loop over those parts; :func:`fit` checks its arguments, prepares the
data, picks the parts and hands over to :func:`run`. ``fit`` returns data (a
:class:`History`) and prints nothing; the CLI draws its progress bar from the per-epoch
callback.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from deltaflow.engine import backprop
from deltaflow.engine.blas import cap_threads
from deltaflow.errors import ConfigError, DataError
from deltaflow.network import Network, as_generator
from deltaflow.parallel import Communicator, as_communicator
from deltaflow.training import checkpoint
from deltaflow.training.batches import ArraySource, BatchSource
from deltaflow.training.data_parallel import (
    DataParallelStep,
    RankMappedSource,
    RankMappedValidation,
    RankSource,
    RankValidation,
    SameStart,
    StopVote,
)
from deltaflow.training.hooks import (
    Callbacks,
    Checkpoints,
    DeltaNorms,
    DivergenceGuard,
    EarlyStopping,
    EpochRecord,
    History,
    Hook,
    TrainingState,
    Validation,
    evaluate_arrays,
    evaluate_outputs,
    labels_of,
    predict_into,
)
from deltaflow.training.mapped import (
    MappedSource,
    MappedValidation,
    UndoOnBadData,
    evaluate_mapped,
    is_mapped,
)
from deltaflow.training.optimizers import Optimizer, get_optimizer, get_schedule
from deltaflow.training.orders import shuffle_mode
from deltaflow.training.steps import Step, make_step

__all__ = ["EpochRecord", "History", "evaluate", "fit", "run"]

Callback = Callable[[EpochRecord], Any]


def evaluate(net: Network, X: Any, Y: Any, *, chunk: int = 4096) -> tuple[float, float | None]:
    """Cost and (for class targets) accuracy of ``net`` on ``X``, ``Y``.

    Computed in chunks of at most ``chunk`` rows, so memory does not grow with ``m``.

    Returns
    -------
    cost : float
    accuracy : float or None
        Fraction of examples whose predicted class is right; None for regression.
    """
    if is_mapped(X):  # read from files a chunk at a time
        source = MappedSource(net, X, Y, None, None)
        ws = backprop.Workspace(net, min(chunk, source.m))
        return evaluate_mapped(net, source.data, None, ws)
    X = net.check_X(X)
    Yenc, is_class = net.encode_targets(Y, X.shape[0])
    if net.device != "cpu":  # the outputs (m x S[L]) come back from the device
        return evaluate_outputs(net, net.forward(X), Yenc, labels_of(Yenc) if is_class else None)
    ws = backprop.Workspace(net, min(chunk, X.shape[0]), input_buffer=not sparse.issparse(X))
    return evaluate_arrays(net, X, Yenc, labels_of(Yenc) if is_class else None, ws)


def fit(
    net: Network,
    X: Any,
    Y: Any,
    *,
    sample_weight: Any = None,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 0.1,
    optimizer: str | Optimizer = "sgd",
    momentum: float = 0.9,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    schedule: str | Callable[[int], float] = "constant",
    step_size: int = 10,
    gamma: float = 0.5,
    shuffle: bool | str = True,
    validation_split: float = 0.0,
    validation_data: tuple[Any, Any] | None = None,
    early_stopping: bool = False,
    patience: int = 5,
    min_delta: float = 0.0,
    callbacks: Iterable[Callback] = (),
    seed: int | np.random.Generator | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    checkpoint_extra: dict[str, Any] | None = None,
    track_delta_norms: bool = False,
    comm: Any = None,
) -> History:
    """Train ``net`` in place by mini-batch gradient descent.

    Each step takes a batch of ``batch_size`` rows, runs the forward sweep and the
    backward dynamic programme over the whole batch, and updates every ``Theta[l]``
    and ``b[l]`` with the optimizer (plain ``sgd`` is the notes' rule
    ``Theta := Theta - alpha dC/dTheta``).

    Parameters
    ----------
    net : Network
    X : array-like or scipy.sparse matrix of shape (m, S[0])
        Sparse input (CSR, CSC or any scipy.sparse format) is kept sparse: batches are
        gathered as CSR rows and the first layer multiplies them sparse @ dense.
        Arrays from ``np.load(path, mmap_mode="r")`` (or :func:`deltaflow.data.open_npy_dir`)
        are read where they lie (see :mod:`deltaflow.training.mapped`): each batch is
        gathered from the file, converted and checked for NaN and infinity in a
        background thread while the previous step runs, so memory does not grow with
        ``m``. A bad value found there raises :class:`DataError` with the parameters of
        the epoch's start put back.
    Y : array-like
        Class indices of shape (m,), one-hot rows of shape (m, S[L]), or real-valued
        targets of shape (m, S[L]) (or (m,) for one output).
    sample_weight : array-like of shape (m,), optional
        Non-negative weights ``w_i``: each batch then minimises the weighted cost
        ``C = sum_i w_i C_i / sum_i w_i`` (so integer weights act like repeated rows)
        and the reported cost is weighted the same way; accuracies stay unweighted.
        With ``validation_split`` the held-out rows' weights are dropped.
    epochs : int
        Passes over the training data.
    batch_size : int
        Rows per step (the last batch of an epoch may be smaller).
    learning_rate : float
        ``alpha``; with ``schedule`` the rate of the first epoch.
    optimizer : {"sgd", "momentum", "nesterov", "adam", "lbfgs"}
        ``lbfgs`` is full-batch L-BFGS (:mod:`deltaflow.training.lbfgs`): each epoch is
        one iteration over the whole set, ``batch_size``, ``learning_rate`` and the
        schedule do not apply, and neither checkpoints nor ``track_delta_norms`` are
        available.
    momentum, beta1, beta2, eps : float
        Settings of momentum/Nesterov and of Adam.
    weight_decay : float
        L2 penalty ``lambda``: ``lambda * Theta[l]`` is added to each weight gradient
        (biases are not decayed). The reported cost does not include it.
    schedule : {"constant", "step", "exponential", "cosine"} or callable
        Learning rate per epoch (see :func:`deltaflow.optimizers.get_schedule`).
    step_size, gamma : int, float
        Settings of the ``step`` and ``exponential`` schedules.
    shuffle : bool, "rows" or "blocks"
        Draw a new order of the examples each epoch: ``"rows"``, an exact permutation,
        or ``"blocks"``, which permutes blocks of contiguous rows and then the rows
        within a few blocks at a time, reading a memory-mapped file in long runs (see
        :mod:`deltaflow.training.orders`). True means ``"rows"`` for arrays in memory
        and ``"blocks"`` for memory-mapped ones; False keeps the given order.
    validation_split : float
        Fraction of ``X`` held out (drawn with the seed) to validate on each epoch.
    validation_data : (X_val, Y_val), optional
        Explicit validation data; overrides ``validation_split``.
    early_stopping : bool
        Stop when the validation cost has not improved by ``min_delta`` for
        ``patience`` epochs, and restore the parameters of the best epoch.
    callbacks : iterable of callable
        Each is called with an :class:`EpochRecord` after every epoch; a callback
        that returns True stops training.
    seed : int, Generator or None
        Randomness for shuffling and the validation split; None uses ``net.rng``.
    checkpoint_dir : str or path, optional
        Write a checkpoint there every ``checkpoint_every`` epochs and after the last
        (see :mod:`deltaflow.checkpoint`): parameters, optimizer state, the generator's
        state, the order of the examples, the history and these settings. Atomic; the
        newest two are kept.
    checkpoint_every : int
        Epochs between checkpoints.
    resume : bool
        Continue from the newest valid checkpoint in ``checkpoint_dir`` (start afresh
        if it has none). The result is bit-identical to a run never interrupted. The
        settings and data must be the ones the checkpoint was made with. Without
        ``resume`` a directory that already holds checkpoints is refused.
    checkpoint_extra : dict, optional
        JSON-serialisable facts stored in every checkpoint (the CLI keeps its arguments).
    track_delta_norms : bool
        Record in ``History.delta_norms`` the mean ``|delta^(l)|`` of every layer, per
        epoch (one extra pass over each ``delta`` per batch; nothing when False).
    comm : mpi4py intracommunicator, optional
        Train data-parallel over its ranks (``MPI.COMM_WORLD`` under ``mpiexec``):
        every rank calls ``fit`` with the same network, data and settings, draws the
        same order, takes its share of the rows of every batch, and one all-reduce a
        step sums the gradients, so every rank makes the same update and ends with the
        same parameters (those of one process, up to the order of additions). Rank 0
        alone writes checkpoints; ``checkpoint_dir`` must be a directory every rank
        can read to resume. Each rank's BLAS keeps to one thread.
        Memory-mapped ``X`` (and mapped validation data) is read per rank: in the order
        one process draws for it, each rank gathers, converts and checks only the rows
        of its own block of every batch (and of the validation rows). The targets are
        scanned whole on every rank (one column, checked once), and rank 0 alone reads
        the files through for a checkpoint's digest. A NaN or infinity met in one
        rank's rows stops every rank in the same step with the same :class:`DataError`.

    Returns
    -------
    History

    Raises
    ------
    ConfigError
        For a bad hyper-parameter, or a checkpoint made with other settings or data.
    ModelFileError
        When resuming and no checkpoint in ``checkpoint_dir`` is valid (a damaged
        newest one is skipped with a :class:`~deltaflow.checkpoint.CheckpointWarning`).
    DataError
        For data that does not fit the network.
    DivergenceError
        When the cost becomes NaN or infinite; the parameters are restored to the
        start of that epoch (the last finite ones known).
    """
    epochs = _positive_int(epochs, "epochs")
    if isinstance(optimizer, str) and optimizer.lower() == "lbfgs":
        return _fit_lbfgs(
            net,
            X,
            Y,
            sample_weight=sample_weight,
            epochs=epochs,
            weight_decay=weight_decay,
            validation_split=validation_split,
            validation_data=validation_data,
            early_stopping=early_stopping,
            patience=_positive_int(patience, "patience"),
            min_delta=min_delta,
            callbacks=callbacks,
            seed=seed,
            unsupported={
                "checkpoint_dir": checkpoint_dir is not None or resume,
                "track_delta_norms": track_delta_norms,
                "comm": comm is not None,
            },
        )
    batch_size = _positive_int(batch_size, "batch_size")
    if not 0.0 <= validation_split < 1.0:
        raise ConfigError(f"validation_split must be in [0, 1), got {validation_split}")
    if weight_decay < 0:
        raise ConfigError(f"weight_decay must be non-negative, got {weight_decay}")
    patience = _positive_int(patience, "patience")
    rate = get_schedule(schedule, learning_rate, epochs, step_size=step_size, gamma=gamma)
    opt = get_optimizer(optimizer, momentum=momentum, beta1=beta1, beta2=beta2, eps=eps)
    rng = net.rng if seed is None else as_generator(seed)
    every = _positive_int(checkpoint_every, "checkpoint_every")
    comm = as_communicator(comm)
    config = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": float(learning_rate),
        "optimizer": optimizer.lower() if isinstance(optimizer, str) else opt.name,
        "momentum": momentum,
        "beta1": beta1,
        "beta2": beta2,
        "eps": eps,
        "weight_decay": weight_decay,
        "schedule": schedule.lower() if isinstance(schedule, str) else "callable",
        "step_size": step_size,
        "gamma": gamma,
        "shuffle": shuffle,
        "validation_split": validation_split,
        "validation_data": validation_data is not None,
        "early_stopping": early_stopping,
        "patience": patience,
        "min_delta": min_delta,
        "track_delta_norms": track_delta_norms,
    }
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = checkpoint.start_run(checkpoint_dir, resume, net, config)
    mode = shuffle_mode(shuffle, is_mapped(X))
    data: _Data | None = None
    mapped: MappedSource | None = None
    if is_mapped(X):  # from files: checked and converted a batch at a time
        mapped = _mapped_source(
            net, X, Y, sample_weight, mode, validation_split, validation_data, rng, ckpt
        )
        arrays, split, labels, m = mapped.arrays(), mapped.split, mapped.labels, mapped.m
    else:
        data = _prepare_data(net, X, Y, sample_weight, validation_split, validation_data, rng, ckpt)
        arrays, split, labels, m = data.arrays(), data.split, data.labels, data.X.shape[0]
    # rank 0 alone reads the whole of mapped files for their digest
    reader = comm if mapped is not None else None
    fingerprint = _check_fingerprint(checkpoint_dir, ckpt, arrays, reader)
    total_weight = mapped.total_weight if mapped is not None else _total_weight(data)
    if total_weight <= 0:
        raise DataError(
            "sample_weight is zero for every training row; give some rows a positive weight"
        )
    bs = min(batch_size, m)
    dp = None  # the data-parallel step, only when there is a communicator
    if comm is not None:
        dense = mapped is not None or (data is not None and not sparse.issparse(data.X))
        classes = labels is not None
        dp = _data_parallel(comm, net, dense, classes, opt, weight_decay, bs, track_delta_norms)
    validation = _validation(net, data, mapped, dp, max(bs, 1024))
    if early_stopping and validation is None:
        raise ConfigError(
            "early_stopping needs validation data; pass validation_split or validation_data"
        )
    hooks = _epoch_hooks(validation, track_delta_norms, early_stopping, patience, min_delta, dp)
    hooks.append(Callbacks(callbacks))
    if net.device != "cpu":
        if data is None:
            raise ConfigError(
                "memory-mapped data trains on the CPU for now; load it into memory "
                "(np.asarray) to train on a GPU"
            )
        no_checkpoints = {"checkpoints": checkpoint_dir is not None}
        shuffled = mode is not None
        return _fit_on_device(net, data, opt, weight_decay, shuffled, bs, epochs, rate, rng, hooks,
                              track_delta_norms=track_delta_norms, **no_checkpoints)  # fmt: skip
    source: BatchSource
    if mapped is not None:
        source = mapped if dp is None else RankMappedSource(dp.comm, mapped, bs)
    elif dp is None:
        assert data is not None
        source = ArraySource(data.X, data.Y, data.W, shuffle=mode)
    else:
        assert data is not None
        source = RankSource(
            dp.comm, data.X, data.Y, data.W, data.labels, bs, shuffle=mode is not None
        )
    if dp is not None:
        hooks.append(StopVote(dp.comm))  # a callback on one rank stops them all
    if checkpoint_dir is not None:
        hooks.append(
            Checkpoints(
                checkpoint_dir,
                every,
                ckpt,
                optimizer=opt,
                rng=rng,
                source=source,
                split=split,
                config=config,
                fingerprint=fingerprint,
                extra=checkpoint_extra,
                writes=dp is None or dp.comm.is_root,
            )
        )
    step: Step
    threads = None
    if dp is not None:
        hooks.append(SameStart(dp.comm, source, arrays, config))
        # the step counts the right guesses itself; each rank's BLAS keeps to one thread
        step, labels, threads = dp, None, 1
    else:
        step = make_step(net, opt, weight_decay)
    # a NaN met in a file mid-epoch (on any rank) puts back the epoch's starting parameters
    undo = UndoOnBadData(net) if mapped is not None else None
    if undo is not None:
        hooks.insert(0, undo)
    try:
        return run(net, source, step, epochs, bs, rate, rng, hooks, labels=labels, threads=threads)
    except DataError:
        if undo is not None:
            undo.undo(net)
        raise


def _fit_on_device(
    net: Network,
    data: _Data,
    opt: Optimizer,
    weight_decay: float,
    shuffle: bool,
    batch_size: int,
    epochs: int,
    rate: Callable[[int], float],
    rng: np.random.Generator,
    hooks: list[Hook],
    **unavailable: bool,
) -> History:
    """``fit``'s loop on the network's device: its own source and step, the same hooks
    (validation, early stopping, callbacks); the training accuracy is not recorded.
    ``unavailable`` names the options that a device does not offer yet, each True when
    asked for."""
    from deltaflow.training import device as on_device

    on_device.check_options(**unavailable)
    place = net._device
    assert place is not None
    source = on_device.make_source(place, data.X, data.Y, data.W, shuffle)
    step = on_device.make_step(net, opt, place, weight_decay)
    with place.activate():
        return run(net, source, step, epochs, batch_size, rate, rng, hooks)


def run(
    net: Network,
    source: BatchSource,
    step: Step,
    epochs: int,
    batch_size: int,
    rate: Callable[[int], float],
    rng: np.random.Generator,
    hooks: Sequence[Hook] = (),
    *,
    labels: np.ndarray | None = None,
    threads: int | None = None,
) -> History:
    """Train ``net`` for ``epochs`` epochs of ``source``'s batches through ``step``.

    The loop itself: a workspace for ``batch_size`` rows, a :class:`DivergenceGuard`
    ahead of ``hooks``, and for each epoch the rate ``rate(epoch)``, the batches, the
    :class:`EpochRecord` and the hooks (see :mod:`deltaflow.training.hooks`).

    Parameters
    ----------
    source : BatchSource
        Bound here to the workspace; draws each epoch's order from ``rng``.
    step : Step
    rate : callable
        The learning rate of each epoch ``0..epochs-1``.
    labels : ndarray of shape (source.m,), optional
        Class index of each of the source's rows, for the epoch's accuracy.
    threads : int, optional
        BLAS threads meanwhile; by default what suits ``batch_size`` rows.
    """
    make_workspace = getattr(step, "workspace", None)  # a device step brings its own
    if make_workspace is not None:
        ws = make_workspace(batch_size)
    else:
        # a source of sparse rows hands each batch over as a CSR matrix, not in a dense a[0]
        ws = backprop.Workspace(
            net,
            batch_size,
            gradients=step.needs_gradients,
            input_buffer=not getattr(source, "sparse", False),
        )
    if threads is None:
        threads = backprop.blas_threads(net, batch_size)
    source.bind(ws)
    guard = DivergenceGuard(net, getattr(source, "X", None))
    hooks = [guard, *hooks]
    state = TrainingState(net, epochs)
    for hook in hooks:
        hook.on_train_begin(state)
    epoch = _Epoch(state, source, step, guard, hooks, labels, threads)
    for number in range(state.first_epoch, epochs):
        epoch.run(number, float(rate(number)), rng)
        if state.stop:
            break
    for hook in hooks:
        hook.on_train_end(state)
    return state.history


class _Epoch:
    """One epoch of :func:`run`: hooks, batches, accuracy, record, hooks."""

    def __init__(
        self,
        state: TrainingState,
        source: BatchSource,
        step: Step,
        guard: DivergenceGuard,
        hooks: list[Hook],
        labels: np.ndarray | None,
        threads: int | None,
    ) -> None:
        self.state, self.source, self.step, self.guard = state, source, step, guard
        self.hooks, self.labels, self.threads = hooks, labels, threads
        # hooks that look at every batch: only those that override on_batch_end
        self.batch_hooks = [
            h.on_batch_end for h in hooks if type(h).on_batch_end is not Hook.on_batch_end
        ]
        # the predicted class of each row, in the epoch's order, for the accuracy
        self.pred = np.empty(source.m, dtype=np.intp) if labels is not None else None

    def run(self, epoch: int, learning_rate: float, rng: np.random.Generator) -> None:
        t0 = time.perf_counter()
        state = self.state
        state.epoch, state.learning_rate = epoch, learning_rate
        state.val_cost = state.val_accuracy = None
        for hook in self.hooks:
            hook.on_epoch_begin(state)
        self.step.start_epoch(learning_rate)
        total = self.batches(rng)
        state.accuracy = None
        if self.pred is not None and self.labels is not None:
            hits = int(np.count_nonzero(self.pred == self.labels[self.source.order]))
            state.accuracy = hits / self.source.m
        for hook in self.hooks:
            hook.on_batches_end(state)
        state.record = EpochRecord(
            epoch=epoch + 1,
            cost=total / self.source.total_weight,
            accuracy=state.accuracy,
            val_cost=state.val_cost,
            val_accuracy=state.val_accuracy,
            learning_rate=learning_rate,
            seconds=time.perf_counter() - t0,
        )
        state.history.append(state.record)
        for hook in self.hooks:
            hook.on_epoch_end(state)

    def batches(self, rng: np.random.Generator) -> float:
        """Every batch of the epoch through the step; returns the summed (weighted) cost.

        Meanwhile the engine's BLAS keeps to ``threads`` (restored however the loop ends).
        """
        state, step, guard, pred = self.state, self.step, self.guard, self.pred
        batch_hooks, L = self.batch_hooks, state.net.L
        total = 0.0
        restore = cap_threads(self.threads) if self.threads else None
        try:
            for number, batch in enumerate(self.source.epoch(rng), start=1):
                c = step.forward(batch)
                if not math.isfinite(c):
                    guard.check_cost(state, c, number)
                total += c * batch.weight()
                if pred is not None:  # the classes, for the epoch's accuracy
                    predict_into(batch.ws.a[L], pred[batch.start : batch.start + batch.n])
                step.update(batch)
                for hook in batch_hooks:
                    hook(state, batch)
        finally:
            if restore is not None:
                restore()
        return total


@dataclass
class _Data:
    """Checked training arrays, and the validation arrays when there are any."""

    X: np.ndarray
    Y: np.ndarray
    W: np.ndarray | None
    labels: np.ndarray | None
    Xv: np.ndarray | None = None
    Yv: np.ndarray | None = None
    labels_v: np.ndarray | None = None
    split: np.ndarray | None = None

    def arrays(self) -> list[np.ndarray]:
        """The arrays a checkpoint's data fingerprint covers."""
        arrays = (*_arrays_of(self.X), self.Y, *_arrays_of(self.Xv), self.Yv, self.W)
        return [a for a in arrays if a is not None]


def _prepare_data(
    net: Network,
    X: Any,
    Y: Any,
    sample_weight: Any,
    validation_split: float,
    validation_data: tuple[Any, Any] | None,
    rng: np.random.Generator,
    ckpt: checkpoint.Checkpoint | None,
) -> _Data:
    """Check the data and hold out the validation rows (drawn with ``rng``, or, when
    resuming, the split the run drew at its start)."""
    X = net.check_X(X)
    Yenc, is_class = net.encode_targets(Y, X.shape[0])
    W = _sample_weights(sample_weight, X.shape[0], net.dtype)
    Xv = Yv = split = None
    if validation_data is not None:
        try:
            Xv_raw, Yv_raw = validation_data
        except (TypeError, ValueError):
            raise ConfigError("validation_data must be a pair (X_val, Y_val)") from None
        Xv = net.check_X(Xv_raw, "X_val")
        Yv, _ = net.encode_targets(Yv_raw, Xv.shape[0], "Y_val")
    elif validation_split > 0:
        m_val = _validation_rows(validation_split, X.shape[0])
        split = _draw_split(rng, ckpt, X.shape[0])
        Xv, Yv = X[split[:m_val]], Yenc[split[:m_val]]
        X, Yenc = X[split[m_val:]], Yenc[split[m_val:]]
        W = None if W is None else W[split[m_val:]]
    labels = labels_of(Yenc) if is_class else None
    labels_v = labels_of(Yv) if (is_class and Yv is not None) else None
    return _Data(X, Yenc, W, labels, Xv, Yv, labels_v, split)


def _mapped_source(
    net: Network,
    X: Any,
    Y: Any,
    sample_weight: Any,
    mode: str | None,
    validation_split: float,
    validation_data: tuple[Any, Any] | None,
    rng: np.random.Generator,
    ckpt: checkpoint.Checkpoint | None,
) -> MappedSource:
    """The batch source of memory-mapped ``X``, ``Y``, with the validation rows drawn
    as :func:`_prepare_data` draws them."""
    split, m_val = None, 0
    if validation_data is None and validation_split > 0:
        m_val = _validation_rows(validation_split, X.shape[0])
        split = _draw_split(rng, ckpt, X.shape[0])
    W = _sample_weights(sample_weight, X.shape[0], net.dtype)
    return MappedSource(
        net, X, Y, W, mode, split=split, m_val=m_val, validation_data=validation_data
    )


def _validation_rows(validation_split: float, m: int) -> int:
    """How many of ``m`` examples ``validation_split`` holds out (at least one, not all)."""
    m_val = int(round(validation_split * m))
    if m_val < 1 or m_val >= m:
        raise DataError(
            f"validation_split={validation_split} of {m} examples leaves "
            "no training or no validation rows; use more data or another fraction"
        )
    return m_val


def _draw_split(rng: np.random.Generator, ckpt: checkpoint.Checkpoint | None, m: int) -> np.ndarray:
    """The permutation whose first rows are held out; a resumed run takes the stored one."""
    return rng.permutation(m) if ckpt is None else checkpoint.stored_split(ckpt, m)


def _check_fingerprint(
    checkpoint_dir: str | os.PathLike[str] | None,
    ckpt: checkpoint.Checkpoint | None,
    arrays: list[Any],
    comm: Communicator | None = None,
) -> str:
    """The data's digest for checkpoints ("" without); a resumed run's must match.

    With ``comm``, rank 0 alone computes it and tells the others (who need not read
    the whole of files they otherwise read only in part)."""
    if checkpoint_dir is None:
        return ""
    if comm is None:
        fingerprint = checkpoint.data_fingerprint(*arrays)
    else:
        fingerprint = comm.bcast(checkpoint.data_fingerprint(*arrays) if comm.is_root else None)
    if ckpt is not None:
        checkpoint.check_data(ckpt, fingerprint)
    return fingerprint


def _total_weight(data: _Data | None) -> float:
    """The sum of the training rows' sample weights (their count when unweighted)."""
    assert data is not None
    return float(data.W.sum()) if data.W is not None else float(data.X.shape[0])


def _validation(
    net: Network,
    data: _Data | None,
    mapped: MappedSource | None,
    dp: DataParallelStep | None,
    rows: int,
) -> Hook | None:
    """Validation on the held-out rows in chunks of ``rows``, if there are any: read from
    the file for mapped data, split between the ranks in a data-parallel run."""
    if mapped is not None:
        if mapped.val is None:
            return None
        if dp is not None:
            return RankMappedValidation(dp.comm, net, mapped.val, mapped.val_rows, rows)
        return MappedValidation(net, mapped.val, mapped.val_rows, rows)
    assert data is not None
    if data.Xv is None or data.Yv is None:
        return None
    if dp is not None:
        return RankValidation(dp.comm, net, data.Xv, data.Yv, data.labels_v, rows)
    return Validation(net, data.Xv, data.Yv, data.labels_v, rows)


def _epoch_hooks(
    validation: Hook | None,
    track_delta_norms: bool,
    early_stopping: bool,
    patience: int,
    min_delta: float,
    dp: DataParallelStep | None = None,
) -> list[Hook]:
    """Validation, delta norms and the best epoch; in a data-parallel run ``dp`` first
    (the epoch's accuracy) and the delta norms as ``dp`` sums them."""
    hooks: list[Hook] = [] if dp is None else [dp]
    if validation is not None:
        hooks.append(validation)
    if track_delta_norms:
        hooks.append(DeltaNorms(None if dp is None else dp.batch_norms))
    if validation is not None:
        hooks.append(EarlyStopping(patience, min_delta, stop=early_stopping))
    return hooks


def _data_parallel(
    comm: Communicator,
    net: Network,
    dense: bool,
    labels: bool,
    optimizer: Optimizer,
    weight_decay: float,
    batch_size: int,
    track_delta_norms: bool,
) -> DataParallelStep:
    """The step of a data-parallel run, after checking that the run can be one (on the
    CPU, over ``dense`` rows); ``labels``: count right guesses."""
    if batch_size < comm.size:
        raise ConfigError(
            f"batch_size={batch_size} is smaller than the {comm.size} ranks, and every rank "
            f"needs rows of each batch; use batch_size >= {comm.size} (and as many "
            "training rows) or fewer ranks"
        )
    if net.device != "cpu" or not dense:
        raise ConfigError(
            "data-parallel training (comm=) runs on the CPU with dense rows; leave out "
            "comm, or train a CPU network on a dense array"
        )
    return DataParallelStep(
        comm,
        net,
        optimizer,
        weight_decay,
        labels=labels,
        track_delta_norms=track_delta_norms,
        overlap=comm.per_layer,
    )


def _arrays_of(X: Any) -> tuple[Any, ...]:
    """The arrays that hold ``X``'s values: itself, or a sparse matrix's three."""
    if sparse.issparse(X):
        return X.data, X.indices, X.indptr
    return (X,)


def _fit_lbfgs(
    net: Network, X: Any, Y: Any, unsupported: dict[str, bool], **kwargs: Any
) -> History:
    """``fit`` with ``optimizer="lbfgs"`` (:mod:`deltaflow.training.lbfgs`)."""
    from deltaflow.training.lbfgs import fit_lbfgs  # it builds on this module's parts

    for name, used in unsupported.items():
        if used:
            raise ConfigError(f"{name} is not available with optimizer='lbfgs'; leave it out")
    if not 0.0 <= kwargs["validation_split"] < 1.0:
        raise ConfigError(f"validation_split must be in [0, 1), got {kwargs['validation_split']}")
    if kwargs["weight_decay"] < 0:
        raise ConfigError(f"weight_decay must be non-negative, got {kwargs['weight_decay']}")
    return fit_lbfgs(net, X, Y, **kwargs)


def _sample_weights(sample_weight: Any, m: int, dtype: np.dtype) -> np.ndarray | None:
    """Checked per-example weights of shape ``(m,)``, or None."""
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight, dtype=dtype)
    except (TypeError, ValueError):
        raise DataError("sample_weight must be numbers, one per example") from None
    if w.shape != (m,):
        raise DataError(
            f"sample_weight has shape {w.shape} but X has {m} rows; pass one weight per example"
        )
    if not np.isfinite(w).all() or (w < 0).any():
        raise DataError("sample_weight must be finite and non-negative; fix or drop those weights")
    return np.ascontiguousarray(w)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
    return int(value)
