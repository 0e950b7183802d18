"""The training loop: mini-batch gradient descent, history, validation, callbacks.

``fit`` returns data (a :class:`History`) and prints nothing; the CLI draws its progress
bar from the per-epoch callback.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deltaflow.engine import backprop
from deltaflow.engine.blas import cap_threads, writable_in_place
from deltaflow.errors import ConfigError, DataError, DivergenceError
from deltaflow.network import Network, as_generator
from deltaflow.parallel import as_communicator, fingerprint
from deltaflow.training import checkpoint
from deltaflow.training.data_parallel import DataParallelStep
from deltaflow.training.optimizers import Optimizer, get_optimizer, get_schedule

__all__ = ["EpochRecord", "History", "evaluate", "fit"]


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


Callback = Callable[[EpochRecord], Any]


def _labels(Yenc: np.ndarray) -> np.ndarray:
    """Class indices from encoded targets (one-hot rows, or one 0/1 column)."""
    if Yenc.shape[1] == 1:
        return (Yenc[:, 0] > 0.5).astype(np.int64)
    return Yenc.argmax(axis=1)


def _batch_starts(m: int, bs: int, threads: int | None) -> Iterator[int]:
    """The first row of each batch; meanwhile the engine's BLAS keeps to ``threads``.

    The setting is restored when the batches end, the loop is left or an error passes.
    """
    restore = cap_threads(threads) if threads else None
    try:
        yield from range(0, m, bs)
    finally:
        if restore is not None:
            restore()


def _predict_into(a: np.ndarray, out: np.ndarray) -> None:
    """The predicted class of each row of ``a`` into ``out``: class 1 where a single
    output exceeds 0.5, else the largest output's index."""
    if a.shape[1] == 1:
        np.greater(a[:, 0], 0.5, out=out)
    else:
        a.argmax(axis=1, out=out)


def _hits(a: np.ndarray, labels: np.ndarray) -> int:
    pred = np.empty(a.shape[0], dtype=np.intp)
    _predict_into(a, pred)
    return int(np.count_nonzero(pred == labels))


def evaluate(net: Network, X: Any, Y: Any, *, chunk: int = 4096) -> tuple[float, float | None]:
    """Cost and (for class targets) accuracy of ``net`` on ``X``, ``Y``.

    Computed in chunks of at most ``chunk`` rows, so memory does not grow with ``m``.

    Returns
    -------
    cost : float
    accuracy : float or None
        Fraction of examples whose predicted class is right; None for regression.
    """
    X = net.check_X(X)
    Yenc, is_class = net.encode_targets(Y, X.shape[0])
    return _evaluate(net, X, Yenc, _labels(Yenc) if is_class else None, chunk)


def _evaluate(
    net: Network,
    X: np.ndarray,
    Yenc: np.ndarray,
    labels: np.ndarray | None,
    chunk: int,
    ws: backprop.Workspace | None = None,
) -> tuple[float, float | None]:
    m = X.shape[0]
    if ws is None:
        ws = backprop.Workspace(net, min(chunk, m))
    total, hits = 0.0, 0
    for start in range(0, m, ws.m):
        stop = min(start + ws.m, m)
        view = ws.rows(stop - start)
        a = backprop.forward(net, view, X[start:stop])
        total += backprop.cost(net, view, Yenc[start:stop]) * (stop - start)
        if labels is not None:
            hits += _hits(a, labels[start:stop])
    return total / m, (hits / m if labels is not None else None)


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
    shuffle: bool = True,
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
    X : array-like of shape (m, S[0])
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
    optimizer : {"sgd", "momentum", "nesterov", "adam"}
    momentum, beta1, beta2, eps : float
        Settings of momentum/Nesterov and of Adam.
    weight_decay : float
        L2 penalty ``lambda``: ``lambda * Theta[l]`` is added to each weight gradient
        (biases are not decayed). The reported cost does not include it.
    schedule : {"constant", "step", "exponential", "cosine"} or callable
        Learning rate per epoch (see :func:`deltaflow.optimizers.get_schedule`).
    step_size, gamma : int, float
        Settings of the ``step`` and ``exponential`` schedules.
    shuffle : bool
        Draw a new order of the examples each epoch.
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

    X = net.check_X(X)
    Yenc, is_class = net.encode_targets(Y, X.shape[0])
    W = _sample_weights(sample_weight, X.shape[0], net.dtype)
    split = None
    if validation_data is not None:
        try:
            Xv_raw, Yv_raw = validation_data
        except (TypeError, ValueError):
            raise ConfigError("validation_data must be a pair (X_val, Y_val)") from None
        Xv = net.check_X(Xv_raw, "X_val")
        Yv, _ = net.encode_targets(Yv_raw, Xv.shape[0], "Y_val")
    elif validation_split > 0:
        m_val = int(round(validation_split * X.shape[0]))
        if m_val < 1 or m_val >= X.shape[0]:
            raise DataError(
                f"validation_split={validation_split} of {X.shape[0]} examples leaves "
                "no training or no validation rows; use more data or another fraction"
            )
        # a resumed run takes the split it drew at the start, not a new one
        if ckpt is None:
            order = split = rng.permutation(X.shape[0])
        else:
            order = split = checkpoint.stored_split(ckpt, X.shape[0])
        Xv, Yv = X[order[:m_val]], Yenc[order[:m_val]]
        X, Yenc = X[order[m_val:]], Yenc[order[m_val:]]
        W = None if W is None else W[order[m_val:]]
    else:
        Xv = Yv = None  # type: ignore[assignment]
    arrays = [a for a in (X, Yenc, Xv, Yv, W) if a is not None]
    data_print = ""
    if checkpoint_dir is not None:
        data_print = checkpoint.data_fingerprint(*arrays)
        if ckpt is not None:
            checkpoint.check_data(ckpt, data_print)
    if early_stopping and Xv is None:
        raise ConfigError(
            "early_stopping needs validation data; pass validation_split or validation_data"
        )

    m = X.shape[0]
    m_w = m if W is None else float(W.sum())  # the cost's denominator
    if m_w <= 0:
        raise DataError(
            "sample_weight is zero for every training row; give some rows a positive weight"
        )
    labels = _labels(Yenc) if is_class else None
    labels_v = _labels(Yv) if (is_class and Yv is not None) else None
    bs = min(batch_size, m)
    # plain SGD is applied inside the backward pass, when the parameters allow it
    fused = opt.fused_with_backward and writable_in_place(net.weights + net.biases, net.dtype)
    dp = None
    if comm is not None:
        if bs < comm.size:
            raise ConfigError(
                f"batch_size={bs} is smaller than the {comm.size} ranks, and every rank "
                f"needs rows of each batch; use batch_size >= {comm.size} (and as many "
                "training rows) or fewer ranks"
            )
        # every rank makes the same update from the summed gradient, after the all-reduce
        fused = False
        dp = DataParallelStep(comm, net, X, Yenc, W, labels, bs, weight_decay, track_delta_norms)
    ws = dp.ws if dp is not None else backprop.Workspace(net, bs, gradients=not fused)
    threads = 1 if dp is not None else backprop.blas_threads(net, bs)
    Ybuf = np.empty((bs, Yenc.shape[1]), dtype=net.dtype)
    Wbuf = None if W is None else np.empty(bs, dtype=W.dtype)
    # classes, in `order` (a rank counts its own rows' right guesses instead)
    pred = np.empty(m, dtype=np.intp) if labels is not None and dp is None else None
    ws_val = backprop.Workspace(net, min(max(bs, 1024), Xv.shape[0])) if Xv is not None else None
    params = net.weights + net.biases
    grads = ws.dtheta + ws.db
    callbacks = list(callbacks)

    history = History()
    best_cost, best_params, waited = math.inf, None, 0
    order = np.arange(m)
    first_epoch = 0
    if ckpt is not None:
        checkpoint.restore(ckpt, params, opt, rng, order)
        history = checkpoint.restore_history(ckpt, History)
        best_cost, waited = float(ckpt.state["best_cost"]), int(ckpt.state["waited"])
        best_params = ckpt.best_params
        first_epoch = epochs if ckpt.state["finished"] else ckpt.epoch
    if comm is not None:
        comm.check_same(
            "training data",
            fingerprint(*arrays, sample_bytes=1 << 20),
            "give every rank the same X, Y and sample weights",
        )
        comm.check_same(
            "settings or starting parameters",
            fingerprint(config, net.sizes, net.dtype.str, first_epoch, order, *params),
            "give every rank the same network (the same seed), settings and checkpoint "
            "directory (one that every rank can read)",
        )
    # the parameters at the start of the epoch: the last finite ones known if it diverges
    snapshot = [np.empty_like(p) for p in params]
    for epoch in range(first_epoch, epochs):
        t0 = time.perf_counter()
        lr = float(rate(epoch))
        if shuffle:
            rng.shuffle(order)
        for s, p in zip(snapshot, params):
            np.copyto(s, p)
        total, hits = 0.0, 0
        norms: list[list[float]] | None = [] if track_delta_norms else None
        # plain SGD on unweighted batches: each batch size's step bound once per epoch
        steps: dict[int, backprop.SgdStep] | None = {} if fused and W is None else None
        for batch, start in enumerate(_batch_starts(m, bs, threads)):
            # one step: gather the batch into the workspace, forward, cost, backward and
            # update, all in preallocated buffers (mode="clip" lets take write straight
            # into `out`; the indices are in range anyway)
            idx = order[start : start + bs]
            n = len(idx)
            if dp is not None:
                c, batch_total, batch_hits, batch_norms = dp.step(idx)
                if not math.isfinite(c):
                    for p, s in zip(params, snapshot):
                        p[...] = s
                    raise DivergenceError(
                        f"the cost became {c} at epoch {epoch + 1}, batch {batch + 1}; "
                        f"try a smaller learning rate than {lr:g}"
                    )
                total += batch_total
                hits += batch_hits
                opt.step(params, grads, lr)
                if norms is not None and batch_norms is not None:
                    norms.append(batch_norms)
                continue
            view, Yb = (ws, Ybuf) if n == bs else (ws.rows(n), Ybuf[:n])
            X.take(idx, axis=0, out=view.a[0], mode="clip")
            Yenc.take(idx, axis=0, out=Yb, mode="clip")
            step = None
            if steps is not None:
                step = steps.get(n)
                if step is None:
                    step = steps[n] = backprop.SgdStep(net, view, Yb, lr, weight_decay)
            Wb = None if W is None or Wbuf is None else W.take(idx, out=Wbuf[:n], mode="clip")
            if step is not None:
                a_L = step.forward()
                c = step.cost()
            else:
                a_L = backprop.forward(net, view)
                c = backprop.cost(net, view, Yb, Wb)
            if not math.isfinite(c):
                for p, s in zip(params, snapshot):
                    p[...] = s
                raise DivergenceError(
                    f"the cost became {c} at epoch {epoch + 1}, batch {batch + 1}; "
                    f"try a smaller learning rate than {lr:g}"
                )
            total += c * (n if Wb is None else float(Wb.sum()))
            if pred is not None:  # the classes, for the epoch's accuracy
                _predict_into(a_L, pred[start : start + n])
            if step is not None:
                step.backward()
                opt.count_step()
            elif fused:
                backprop.backward(net, view, Yb, Wb, weight_decay=weight_decay, sgd_rate=lr)
                opt.count_step()
            else:
                backprop.backward(net, view, Yb, Wb, weight_decay=weight_decay)
                opt.step(params, grads, lr)
            if norms is not None:
                norms.append(_delta_norms(view))
        if pred is not None and labels is not None:
            hits = int(np.count_nonzero(pred == labels[order]))
        if not all(np.isfinite(p).all() for p in params):
            # the epoch's last update overflowed, and no later batch's cost will see it
            for p, s in zip(params, snapshot):
                p[...] = s
            raise DivergenceError(
                f"the parameters became infinite or NaN in the last batch of epoch "
                f"{epoch + 1}; try a smaller learning rate than {lr:g}"
            )
        val_cost = val_acc = None
        if dp is not None and Xv is not None and Yv is not None and ws_val is not None:
            val_cost, val_acc = dp.evaluate(Xv, Yv, labels_v, ws_val)
        elif Xv is not None and Yv is not None and ws_val is not None:
            val_cost, val_acc = _evaluate(net, Xv, Yv, labels_v, ws_val.m, ws_val)
        rec = EpochRecord(
            epoch=epoch + 1,
            cost=total / m_w,
            accuracy=hits / m if labels is not None else None,
            val_cost=val_cost,
            val_accuracy=val_acc,
            learning_rate=lr,
            seconds=time.perf_counter() - t0,
        )
        history.append(rec)
        if norms is not None:
            history.delta_norms.append(np.mean(norms, axis=0).tolist())
        stop = False
        if val_cost is not None:
            if val_cost < best_cost - min_delta:
                best_cost, waited, history.best_epoch = val_cost, 0, epoch + 1
                if early_stopping:
                    best_params = [p.copy() for p in params]
            else:
                waited += 1
                stop = early_stopping and waited >= patience
        for cb in callbacks:
            if cb(rec) is True:
                stop = True
        if comm is not None and callbacks:
            stop = comm.any(stop)  # a callback on one rank stops them all
        if stop:
            history.stopped_early = epoch + 1 < epochs
        writes = comm is None or comm.is_root
        if (
            checkpoint_dir is not None
            and writes
            and (stop or epoch + 1 == epochs or (epoch + 1) % every == 0)
        ):
            checkpoint.save_run(
                checkpoint_dir,
                epoch=epoch + 1,
                net=net,
                optimizer=opt,
                rng=rng,
                order=order,
                split=split,
                history=history.as_dict(),
                config=config,
                state={
                    "best_cost": best_cost,
                    "waited": waited,
                    "finished": stop or epoch + 1 == epochs,
                    "data": data_print,
                },
                best_params=best_params,
                extra=checkpoint_extra,
            )
        if stop:
            break
    if best_params is not None:
        for p, b in zip(params, best_params):
            p[...] = b
    return history


def _delta_norms(ws: backprop.Workspace) -> list[float]:
    """Mean ``|delta[l]|`` for ``l = 1..L``, times ``m`` to undo the engine's folded ``1/m``.

    ``mean * m = sum / S[l]``; ``sum`` costs a third of ``mean`` on small batches.
    """
    return [float(np.abs(d).sum()) / d.shape[1] for d in ws.delta[1:]]  # type: ignore[union-attr]


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
