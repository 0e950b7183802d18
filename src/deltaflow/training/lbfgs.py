"""Full-batch L-BFGS on the dynamic programme's gradient.

L-BFGS (scipy's ``L-BFGS-B``) minimises a function of one vector given its value and
gradient. Here the vector is the network's flat parameter buffer ``net.params``
(``Theta[1], b[1], Theta[2], ...``), and one evaluation is one forward sweep and one
backward pass over the whole training set, in chunks of rows whose gradients add up in
the workspace's flat gradient buffer ``ws.grad``, laid out the same way. The objective is

    f = scale * (C + lambda/2 * sum_l ||Theta[l]||^2)

with ``C`` the (weighted) mean cost of the set, ``lambda`` the weight decay and ``scale``
a constant factor (scikit-learn's estimators minimise ``C / k``, see
:mod:`deltaflow.estimators`). Biases are not decayed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import scipy.optimize
from scipy import sparse

from deltaflow.engine import backprop
from deltaflow.errors import ConfigError, DataError, DivergenceError
from deltaflow.network import Network, as_generator
from deltaflow.training.hooks import EpochRecord, History, evaluate_arrays
from deltaflow.training.loop import _prepare_data

__all__ = ["FullBatchObjective", "fit_lbfgs", "minimize"]

#: rows per chunk of the forward sweep and backward pass over the whole set
CHUNK = 4096


class FullBatchObjective:
    """``f(x)`` and its gradient for L-BFGS: the cost of the whole set, as one vector.

    Calling it with a parameter vector ``x`` copies ``x`` into the network's arrays,
    runs the forward sweep and the backward dynamic programme over the set in chunks
    of at most ``chunk`` rows (sparse ``X`` stays sparse), and returns ``(f, grad)``.

    Parameters
    ----------
    net : Network
        Its parameters are overwritten by every call.
    X : ndarray or scipy.sparse CSR matrix of shape (M, S[0])
        Checked inputs (:meth:`Network.check_X`).
    Y : ndarray of shape (M, S[L])
        Encoded targets (:meth:`Network.encode_targets`).
    weights : ndarray of shape (M,), optional
        Per-example weights; ``C = sum_i w_i C_i / sum_i w_i``.
    weight_decay : float, default 0
        ``lambda``.
    scale : float, default 1
        The constant factor on the objective.
    labels : ndarray of shape (M,), optional
        Class indices: each call then also counts the examples it classifies right.
    chunk : int, default 4096

    Attributes
    ----------
    x0 : ndarray of shape (n_params,), float64
        The network's parameters when the objective was made.
    last_x : ndarray of shape (n_params,), float64
        The ``x`` of the last call.
    cost : float
        ``C`` at the last ``x`` evaluated (without the decay and the scale).
    hits : int or None
        Examples classified right at the last ``x`` (with ``labels``).
    evaluations : int
        Calls so far.
    """

    def __init__(
        self,
        net: Network,
        X: Any,
        Y: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        weight_decay: float = 0.0,
        scale: float = 1.0,
        labels: np.ndarray | None = None,
        chunk: int = CHUNK,
    ) -> None:
        self.net, self.X, self.Y, self.weights = net, X, Y, weights
        self.weight_decay, self.scale, self.labels = weight_decay, scale, labels
        self.M = X.shape[0]
        self.total = self.M if weights is None else float(weights.sum())
        if self.total <= 0:
            raise DataError("sample_weight is zero for every row; give some rows a positive weight")
        self.x0 = net.params.astype(np.float64)
        # the chunks' gradients add up in ws.grad, the flat buffer laid out like x
        self.ws = backprop.Workspace(net, min(chunk, self.M), input_buffer=False)
        assert self.ws.grad is not None
        self.grad: np.ndarray = self.ws.grad
        self.pred = None if labels is None else np.empty(self.ws.m, dtype=np.intp)
        self.cost = math.nan
        self.hits: int | None = None
        self.last_x = self.x0.copy()
        self.evaluations = 0

    def set_parameters(self, x: np.ndarray) -> None:
        """Copy the vector ``x`` into the network's flat parameter buffer, in place."""
        np.copyto(self.net.params, x)

    def penalty(self) -> float:
        """``lambda/2 * sum_l ||Theta[l]||^2`` at the network's current parameters."""
        if not self.weight_decay:
            return 0.0
        return 0.5 * self.weight_decay * sum(float(np.vdot(w, w)) for w in self.net.weights)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        net, ws, X, Y, W = self.net, self.ws, self.X, self.Y, self.weights
        np.copyto(self.last_x, x)
        self.set_parameters(x)
        self.grad[...] = 0.0
        total, hits = 0.0, 0
        # a line search may probe far out: an overflow there is an infinite f, which
        # sends it back, not an error
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for start in range(0, self.M, ws.m):
                stop = min(start + ws.m, self.M)
                view = ws.rows(stop - start)
                Wb = None if W is None else W[start:stop]
                a_L = backprop.forward(net, view, X[start:stop])
                c = backprop.cost(net, view, Y[start:stop], Wb)
                total += c * (stop - start if Wb is None else float(Wb.sum()))
                if self.pred is not None and self.labels is not None:
                    pred = self.pred[: stop - start]
                    pred[...] = a_L.argmax(axis=1) if a_L.shape[1] > 1 else a_L[:, 0] > 0.5
                    hits += int(np.count_nonzero(pred == self.labels[start:stop]))
                backprop.backward(
                    net, view, Y[start:stop], Wb, scale=1.0 / self.total, accumulate=True
                )
            self.cost = total / self.total
            self.hits = hits if self.labels is not None else None
            if self.weight_decay:
                for dtheta, w in zip(ws.dtheta, net.weights):
                    dtheta += self.weight_decay * w
            f = self.scale * (self.cost + self.penalty())
        self.evaluations += 1
        if not math.isfinite(f):
            return math.inf, np.zeros(self.grad.size)
        # a fresh array: scipy keeps the previous gradient while it asks for the next
        return f, self.scale * self.grad.astype(np.float64)


def minimize(
    objective: FullBatchObjective,
    *,
    max_iter: int,
    max_fun: int = 15000,
    gtol: float = 1e-5,
    callback: Callable[[int, float], Any] | None = None,
) -> scipy.optimize.OptimizeResult:
    """Run L-BFGS-B from ``objective.x0``; the network ends at the result's ``x``.

    Parameters
    ----------
    max_iter, max_fun : int
        Most iterations and most evaluations of ``f``.
    gtol : float
        Stop when every component of the (projected) gradient is at most this.
    callback : callable, optional
        ``callback(iteration, cost)`` after every iteration, with ``C`` at the new
        iterate (``objective.cost``; ``objective.hits`` too); returning True stops.

    Raises
    ------
    DivergenceError
        When ``f`` is not finite at the start, or the result's parameters are not.
    """
    f0, _ = objective(objective.x0)
    if not math.isfinite(f0):
        objective.set_parameters(objective.x0)
        raise DivergenceError(
            "the cost is infinite or NaN at the starting parameters; scale the inputs "
            "(for example to mean 0 and standard deviation 1) or start from smaller weights"
        )
    iteration = 0

    def after_iteration(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        nonlocal iteration
        iteration += 1
        x = intermediate_result.x
        # the line search ends on the accepted point, so the last evaluation is usually
        # this iterate; if not, evaluate it again for its cost
        if not np.array_equal(x, objective.last_x):
            objective(x)
        if callback is not None and callback(iteration, objective.cost) is True:
            raise StopIteration

    result = scipy.optimize.minimize(
        objective,
        objective.x0,
        method="L-BFGS-B",
        jac=True,
        callback=after_iteration,
        options={"maxiter": max_iter, "maxfun": max_fun, "gtol": gtol},
    )
    if not np.isfinite(result.x).all():
        objective.set_parameters(objective.x0)
        raise DivergenceError(
            "L-BFGS produced non-finite parameters; scale the inputs (for example to "
            "mean 0 and standard deviation 1)"
        )
    objective.set_parameters(result.x)
    return result


def fit_lbfgs(
    net: Network,
    X: Any,
    Y: Any,
    *,
    sample_weight: Any = None,
    epochs: int = 10,
    weight_decay: float = 0.0,
    validation_split: float = 0.0,
    validation_data: tuple[Any, Any] | None = None,
    early_stopping: bool = False,
    patience: int = 5,
    min_delta: float = 0.0,
    callbacks: Iterable[Callable[[EpochRecord], Any]] = (),
    seed: int | np.random.Generator | None = None,
) -> History:
    """:func:`deltaflow.fit` with ``optimizer="lbfgs"``: full batch, one epoch per iteration.

    Each iteration of L-BFGS is recorded as an epoch: ``cost`` and ``accuracy`` at the
    new parameters, the validation figures, and ``learning_rate`` NaN (L-BFGS chooses
    its own step by a line search). ``epochs`` is the most iterations; training ends
    sooner when the gradient vanishes (every component below 1e-5) or the cost stops
    falling. The arguments are :func:`deltaflow.fit`'s.
    """
    rng = net.rng if seed is None else as_generator(seed)
    data = _prepare_data(net, X, Y, sample_weight, validation_split, validation_data, rng, None)
    if early_stopping and data.Xv is None:
        raise ConfigError(
            "early_stopping needs validation data; pass validation_split or validation_data"
        )
    X, Yenc, W, labels = data.X, data.Y, data.W, data.labels
    Xv, Yv, labels_v = data.Xv, data.Yv, data.labels_v
    objective = FullBatchObjective(net, X, Yenc, W, weight_decay=weight_decay, labels=labels)
    ws_val = None
    if Xv is not None:
        ws_val = backprop.Workspace(
            net, min(CHUNK, Xv.shape[0]), input_buffer=not sparse.issparse(Xv)
        )
    history = History()
    callbacks = list(callbacks)
    best_cost, waited = math.inf, 0
    best_params: np.ndarray | None = None
    t0 = time.perf_counter()

    def after_iteration(iteration: int, cost: float) -> bool:
        nonlocal t0, best_cost, best_params, waited
        val_cost = val_acc = None
        if Xv is not None and Yv is not None and ws_val is not None:
            val_cost, val_acc = evaluate_arrays(net, Xv, Yv, labels_v, ws_val)
        hits = objective.hits
        rec = EpochRecord(
            epoch=iteration,
            cost=cost,
            accuracy=hits / X.shape[0] if hits is not None else None,
            val_cost=val_cost,
            val_accuracy=val_acc,
            learning_rate=math.nan,
            seconds=time.perf_counter() - t0,
        )
        t0 = time.perf_counter()
        history.append(rec)
        stop = False
        if val_cost is not None:
            if val_cost < best_cost - min_delta:
                best_cost, waited = val_cost, 0
                history.best_epoch = iteration
                if early_stopping:
                    best_params = net.params.copy()
            else:
                waited += 1
                stop = early_stopping and waited >= patience
        for cb in callbacks:
            if cb(rec) is True:
                stop = True
        history.stopped_early = stop and iteration < epochs
        return stop

    minimize(objective, max_iter=epochs, callback=after_iteration)
    if best_params is not None:
        np.copyto(net.params, best_params)
    return history
