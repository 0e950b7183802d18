"""scikit-learn estimators backed by deltaflow: ``MLPClassifier`` and ``MLPRegressor``.

They take scikit-learn's ``MLPClassifier`` / ``MLPRegressor`` parameters under the same
names, so that switching is a change of import::

    from deltaflow.estimators import MLPClassifier   # was: from sklearn.neural_network

and add deltaflow's extras as keyword arguments: ``activation`` may be a list (one name
per layer), the classifier's ``cost`` may be ``"squared_error"``, ``dtype`` keeps float32
as float32, and ``callbacks`` see every epoch. This module is an adapter and holds no
mathematics: scikit-learn's validation utilities check the input, labels are encoded
here, and the training is :func:`deltaflow.train.fit` on a :class:`deltaflow.Network`.

How scikit-learn's hyper-parameters map onto deltaflow
------------------------------------------------------
scikit-learn minimises, per batch of ``n_b`` rows with weights ``w_i`` (1 without
``sample_weight``), ``sum_i w_i L_i / sum_i w_i + alpha/(2 sum_i w_i) ||W||^2``, where
``L`` is the log-loss, or half the squared error summed over the outputs. deltaflow's
``C`` is the same log-loss, but its squared error has no 1/2 (``C = k L`` with ``k = 2``;
``k = 1`` for the log-losses). The estimators therefore pass

* ``weight_decay = k * alpha * n / (batch_size * sum_i w_i)``: the gradient of the
  penalty above, times ``k`` (exact for full batches; scikit-learn's own decay is larger
  on a short last batch);
* ``solver="sgd"``: ``learning_rate = learning_rate_init / k`` (``momentum`` with
  ``nesterovs_momentum`` picks deltaflow's ``nesterov``, ``momentum`` or plain ``sgd``);
* ``solver="adam"``: the same learning rate, ``eps = k * epsilon`` (Adam ignores the
  scale of the gradient except through ``eps``),

so that each update equals scikit-learn's (the tests check one epoch against
scikit-learn from the same weights). ``solver="lbfgs"`` minimises scikit-learn's
objective itself, ``C/k + alpha/(2 sum_i w_i) ||W||^2`` over the whole set (deltaflow's
full-batch L-BFGS with ``weight_decay = k alpha / sum_i w_i``, scaled by ``1/k``), with
``gtol = tol``, ``maxiter = max_iter`` and ``maxfun = max_fun``, so from the same
weights it takes scikit-learn's steps. The Poisson loss is scikit-learn's exactly
(``k = 1``). Two small differences remain: deltaflow's Adam adds
``eps`` to the bias-corrected ``sqrt(v)`` rather than to the raw one, and the initial
weights and biases, drawn by scikit-learn's rule (``init="sklearn"``, see
:mod:`deltaflow.initializers`), come from deltaflow's generator rather than from
scikit-learn's, so that the two agree on average over seeds rather than seed by seed.

``loss_curve_`` holds deltaflow's training cost per epoch, the mean over the epoch's
batches before each update, weighted by ``sample_weight``: the same numbers as
scikit-learn's for the log-loss and the Poisson loss except that they exclude the L2
penalty term, and for the squared error ``2 * n_outputs_`` times scikit-learn's (which
also averages over the outputs). ``tol`` is compared with these values. With ``lbfgs``,
``loss_curve_`` has one such value per iteration (at the new weights) and ``loss_`` is
the value at the end: scikit-learn's ``loss_`` there is the whole objective,
``loss_ / k`` plus the penalty.

``X`` may be a scipy.sparse CSR or CSC matrix in ``fit``, ``partial_fit`` and
``predict``: it is never densified (batches are gathered as CSR rows and the first layer
multiplies sparse @ dense).

Errors follow scikit-learn: a fit whose weights become non-finite raises a ValueError
(:class:`deltaflow.DivergenceError`) that names the cause, inputs too large or
``learning_rate_init`` too high; under ``early_stopping`` it instead records ``nan``
losses and validation scores until the stopping rule ends the fit, and the best epoch's
weights are kept.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from numbers import Integral, Real
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning, NotFittedError
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (
        check_classification_targets,
        type_of_target,
        unique_labels,
    )
    from sklearn.utils.validation import (
        check_array,
        check_is_fitted,
        column_or_1d,
        validate_data,
    )
except ImportError as exc:  # validate_data and __sklearn_tags__ arrived in 1.6
    raise ImportError(
        f"deltaflow.estimators needs scikit-learn 1.6 or newer ({exc}); "
        "upgrade with: python3 -m pip install -U scikit-learn"
    ) from None

from deltaflow import io
from deltaflow.engine.devices import get_device
from deltaflow.errors import ConfigError, DataError, DivergenceError, ModelFileError
from deltaflow.network import Network, check_dtype
from deltaflow.training.hooks import LARGE_INPUT, EpochRecord, largest_magnitude
from deltaflow.training.lbfgs import FullBatchObjective
from deltaflow.training.lbfgs import minimize as minimize_lbfgs
from deltaflow.training.loop import fit as train_fit
from deltaflow.training.optimizers import Optimizer, get_optimizer

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's names for deltaflow's activations, where they differ
_SKLEARN_NAMES = {"sigmoid": "logistic"}
_DELTAFLOW_NAMES = {"logistic": "sigmoid"}


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, training, saving."""

    # set by the subclasses
    _score_function: Callable[..., float]
    _numeric_targets = False

    # fitted state that fit and partial_fit keep
    loss_curve_: list[float]
    validation_scores_: list[float] | None
    validation_loss_curve_: list[float] | None
    best_validation_score_: float | None
    best_loss_: float | None

    # ------------------------------------------------------------ parameters
    def _check_params(self) -> None:
        """Raise ConfigError (a ValueError) for a hyper-parameter out of range."""
        self._hidden_sizes()
        if self.solver not in ("lbfgs", "sgd", "adam"):
            raise ConfigError(f"solver must be 'lbfgs', 'sgd' or 'adam', got {self.solver!r}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ConfigError(
                "learning_rate must be 'constant', 'invscaling' or 'adaptive', "
                f"got {self.learning_rate!r}"
            )
        if not (self.batch_size == "auto" or _is_int(self.batch_size, 1)):
            raise ConfigError(
                f"batch_size must be 'auto' or a positive whole number, got {self.batch_size!r}"
            )
        _check_number("alpha", self.alpha, 0.0)
        _check_number("learning_rate_init", self.learning_rate_init, 0.0, open_low=True)
        _check_number("power_t", self.power_t, 0.0)
        _check_number("tol", self.tol, 0.0)
        _check_number("momentum", self.momentum, 0.0, 1.0)
        _check_number("validation_fraction", self.validation_fraction, 0.0, 1.0, open_high=True)
        _check_number("beta_1", self.beta_1, 0.0, 1.0, open_high=True)
        _check_number("beta_2", self.beta_2, 0.0, 1.0, open_high=True)
        _check_number("epsilon", self.epsilon, 0.0, open_low=True)
        for name in ("max_iter", "max_fun"):
            if not _is_int(getattr(self, name), 1):
                raise ConfigError(
                    f"{name} must be a positive whole number, got {getattr(self, name)!r}"
                )
        if not (_is_int(self.n_iter_no_change, 1) or self.n_iter_no_change == np.inf):
            raise ConfigError(
                "n_iter_no_change must be a positive whole number or numpy.inf, "
                f"got {self.n_iter_no_change!r}"
            )
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.dtype is not None:
            check_dtype(self.dtype)
        get_device(getattr(self, "device", "cpu"))  # a bad name, no CuPy, no GPU: one line
        if self.callbacks is not None and not (
            isinstance(self.callbacks, Iterable) and all(callable(c) for c in self.callbacks)
        ):
            raise ConfigError("callbacks must be a list of functions of one EpochRecord")
        self._cost_name()

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if _is_int(sizes, 0) else sizes
        try:
            out = list(sizes)
        except TypeError:
            out = None
        if out is None or not all(_is_int(s, 1) for s in out):
            raise ConfigError(
                "hidden_layer_sizes must be a positive whole number or a list of them, "
                f"such as (100,) or [64, 32]; got {self.hidden_layer_sizes!r}"
            )
        return [int(s) for s in out]

    def _activation_names(self, n_hidden: int, output: str) -> list[str]:
        """deltaflow's name for every layer ``1..L``; ``output`` unless the list names it."""
        act = self.activation
        names = [act] * n_hidden if isinstance(act, str) else list(act)
        if len(names) == n_hidden:
            names.append(output)
        elif len(names) != n_hidden + 1:
            raise ConfigError(
                f"activation lists {len(names)} names for {n_hidden} hidden layers; give one "
                f"name, {n_hidden} names (hidden layers) or {n_hidden + 1} (with the output)"
            )
        return [_DELTAFLOW_NAMES.get(n, n) if isinstance(n, str) else n for n in names]

    # ------------------------------------------------------------ training
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        """Fit the model to ``X`` and ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The inputs ``a[0]``, one row per example (``m = n_samples``,
            ``S[0] = n_features``). pandas DataFrames keep their column names.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classifier; a 0/1 indicator matrix for multi-label) or real
            targets (regressor).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights: the cost becomes ``sum_i w_i C_i / sum_i w_i``.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any,
        *,
        incremental: bool,
        classes: Any = None,
    ) -> Any:
        self._check_params()
        if incremental and self.early_stopping:
            raise ConfigError("partial_fit does not support early_stopping=True; use fit")
        first = not hasattr(self, "network_") or not (self.warm_start or incremental)
        X, y = validate_data(
            self,
            X,
            y,
            reset=first,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            y_numeric=self._numeric_targets,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = self._encode_targets(y, first=first, incremental=incremental, classes=classes)
        dtype = check_dtype(self.dtype) if self.dtype is not None else X.dtype
        if not first:
            dtype = self.network_.dtype
        sw = _check_sample_weight(sample_weight, X.shape[0], dtype)

        rs = check_random_state(self.random_state)
        rng = np.random.default_rng(rs.randint(np.iinfo(np.int32).max))
        if first:
            n_outputs = Y.shape[1] if Y.ndim == 2 else len(self.classes_)
            self._initialise(X.shape[1], n_outputs, dtype, rng)
        elif self.early_stopping != (getattr(self, "validation_scores_", None) is not None):
            self._reset_stopping_state()  # a warm start that switched early_stopping
        if self.solver == "lbfgs":
            return self._fit_lbfgs(X, Y, sw)
        return self._fit_stochastic(X, Y, y, sw, rs, rng, incremental=incremental)

    def _fit_stochastic(
        self,
        X: Any,
        Y: np.ndarray,
        y: np.ndarray,
        sw: np.ndarray | None,
        rs: Any,
        rng: np.random.Generator,
        *,
        incremental: bool,
    ) -> Any:
        """``sgd`` and ``adam``: epochs of mini-batches through :func:`deltaflow.fit`."""
        if not incremental or not hasattr(self, "_optimizer"):
            # as scikit-learn: fit starts a fresh optimizer (and rate); partial_fit keeps them
            self._optimizer = self._new_optimizer()
            self._learning_rate = float(self.learning_rate_init)
        X_all = X
        Xv = Yv = yv = swv = None
        if self.early_stopping:
            X, Y, y, sw, Xv, Yv, yv, swv = self._validation_split(X, Y, y, sw, rs)
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(
                    f"batch_size={self.batch_size} is larger than the {n} training rows; "
                    "it is clipped to the number of rows",
                    UserWarning,
                    stacklevel=4,
                )
            batch_size = min(self.batch_size, n)
        k = self._gradient_scale()
        weight_share = 1.0 if sw is None else n / float(sw.sum())
        monitor = _Monitor(self, n, (Xv, yv, swv) if Xv is not None else None)
        self.n_iter_ = 0
        stopped_early = False
        try:
            history = train_fit(
                self.network_,
                X,
                Y,
                sample_weight=sw,
                epochs=1 if incremental else self.max_iter,
                batch_size=batch_size,
                optimizer=self._optimizer,
                # the rate is read each epoch, so 'invscaling' and 'adaptive' can change it
                schedule=lambda epoch: self._learning_rate / (k if self.solver == "sgd" else 1.0),
                weight_decay=k * self.alpha * weight_share / batch_size,
                shuffle=self.shuffle,
                validation_data=(Xv, Yv) if Xv is not None else None,
                callbacks=[monitor, *(self.callbacks or ())],
                seed=rng,
            )
            stopped_early = history.stopped_early
        except DivergenceError:
            if not self.early_stopping:
                raise DivergenceError(self._divergence_message(X_all)) from None
            # scikit-learn trains on with NaN weights: each epoch then scores NaN, counts
            # as no improvement, and the best epoch's weights are restored at the end
            stopped_early = monitor.diverged(self.max_iter)
        if self.early_stopping:
            for p, best in zip(self.network_.weights + self.network_.biases, self._best_params):
                p[...] = best
        if not incremental and not stopped_early and self.n_iter_ == self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet; raise max_iter or tol",
                ConvergenceWarning,
                stacklevel=4,
            )
        return self

    def _fit_lbfgs(self, X: Any, Y: np.ndarray, sw: np.ndarray | None) -> Any:
        """``lbfgs``: scikit-learn's objective ``L + alpha/(2 sum_i w_i) ||W||^2``, minimised
        by scipy's L-BFGS-B over the whole set (``C = k L`` in deltaflow's terms)."""
        net = self.network_
        Xc = net.check_X(X)
        Yenc, is_class = net.encode_targets(Y, Xc.shape[0])
        k = self._gradient_scale()
        total = Xc.shape[0] if sw is None else float(sw.sum())
        objective = FullBatchObjective(
            net, Xc, Yenc, sw, weight_decay=k * self.alpha / total, scale=1.0 / k
        )
        self.n_iter_ = 0
        self.loss_curve_ = []
        self.validation_scores_ = self.validation_loss_curve_ = None
        self.best_validation_score_ = None
        callbacks = list(self.callbacks or ())
        clock = [time.perf_counter()]

        def after_iteration(iteration: int, cost: float) -> bool:
            self.n_iter_ = iteration
            self.loss_curve_.append(cost)
            if self.verbose:
                print(f"Iteration {iteration}, loss = {cost:.8f}")
            now = time.perf_counter()
            rec = EpochRecord(iteration, cost, None, None, None, math.nan, now - clock[0])
            clock[0] = now
            return any([cb(rec) is True for cb in callbacks])

        try:
            result = minimize_lbfgs(
                objective,
                max_iter=self.max_iter,
                max_fun=self.max_fun,
                gtol=self.tol,
                callback=after_iteration,
            )
        except DivergenceError:
            raise DivergenceError(self._divergence_message(X)) from None
        if not np.array_equal(objective.last_x, result.x):
            objective(result.x)  # the cost at the result itself
        self.loss_ = objective.cost
        self.best_loss_ = min(self.loss_curve_, default=self.loss_)
        self.n_iter_ = min(int(result.nit), self.max_iter)
        if result.status != 0 and result.status != 99:  # 99: a callback stopped it
            warnings.warn(
                f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                f"(status={result.status}): {result.message}; increase max_iter (now "
                f"{self.max_iter}) or max_fun (now {self.max_fun}), or scale the data",
                ConvergenceWarning,
                stacklevel=4,
            )
        return self

    def _divergence_message(self, X: Any) -> str:
        """Why the parameters became non-finite, in the user's own settings."""
        largest = largest_magnitude(X)
        start = "Solver produced non-finite parameter weights"
        if largest > LARGE_INPUT:
            return (
                f"{start}: X has values as large as {largest:.3g}; scale the inputs first "
                "(for example with sklearn.preprocessing.StandardScaler)"
            )
        if self.solver == "lbfgs":
            return f"{start}; scale the inputs (for example with StandardScaler) or raise alpha"
        return (
            f"{start} at iteration {self.n_iter_ + 1}; try a smaller learning_rate_init "
            f"than {self.learning_rate_init:g}"
        )

    def _initialise(
        self, n_features: int, n_outputs: int, dtype: np.dtype, rng: np.random.Generator
    ) -> None:
        """A fresh network and fresh fitted state (scikit-learn's first pass)."""
        hidden = self._hidden_sizes()
        output, cost = self._output_and_cost()
        sizes = [n_features, *hidden, n_outputs]
        names = self._activation_names(len(hidden), output)
        # scikit-learn's own initialisation, so that results match it on average
        self.network_ = Network(sizes, names, cost, dtype=dtype, seed=rng, init="sklearn")
        self.network_.to(getattr(self, "device", "cpu"))
        self.n_outputs_ = sizes[-1]
        self.n_layers_ = len(sizes)
        last = self.network_.activation_names[-1]
        self.out_activation_ = _SKLEARN_NAMES.get(last, last)
        self.t_ = 0
        self.loss_curve_ = []
        self._reset_stopping_state()

    def _reset_stopping_state(self) -> None:
        """What scikit-learn's stopping rule tracks, for the current ``early_stopping``."""
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.validation_loss_curve_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
            self._best_params = [p.copy() for p in self.network_.weights + self.network_.biases]
        else:
            self.validation_scores_ = self.validation_loss_curve_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _gradient_scale(self) -> float:
        """``k`` with deltaflow's ``C = k L`` for scikit-learn's loss ``L`` (module docstring)."""
        return 2.0 if self.network_.loss.name == "squared_error" else 1.0

    def _new_optimizer(self) -> Optimizer:
        if self.solver == "adam":
            eps = self._gradient_scale() * self.epsilon
            return get_optimizer("adam", beta1=self.beta_1, beta2=self.beta_2, eps=eps)
        if self.momentum == 0:
            return get_optimizer("sgd")
        name = "nesterov" if self.nesterovs_momentum else "momentum"
        return get_optimizer(name, momentum=self.momentum)

    def _validation_split(
        self, X: np.ndarray, Y: np.ndarray, y: np.ndarray, sw: np.ndarray | None, rs: Any
    ) -> tuple[Any, ...]:
        """Hold out ``validation_fraction`` of the rows (stratified for binary classes)."""
        stratify = y if self._stratify() else None
        train, val = train_test_split(
            np.arange(X.shape[0]),
            test_size=self.validation_fraction,
            random_state=rs,
            stratify=stratify,
        )
        if val.shape[0] < 2:
            raise DataError(
                f"The validation set is too small ({val.shape[0]} row(s) with "
                f"validation_fraction={self.validation_fraction}). Increase "
                "'validation_fraction' or the size of your dataset."
            )
        sw_train, sw_val = (None, None) if sw is None else (sw[train], sw[val])
        return X[train], Y[train], y[train], sw_train, X[val], Y[val], y[val], sw_val

    def _stratify(self) -> bool:
        return False

    def _check_solver(self) -> bool:
        """partial_fit exists for the stochastic solvers only, as in scikit-learn."""
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} "
                "is not stochastic."
            )
        return True

    # ------------------------------------------------------------ prediction
    def _forward(self, X: Any) -> np.ndarray:
        """``a[L]`` for checked ``X``: shape (n_samples, n_outputs_)."""
        check_is_fitted(self)
        X = validate_data(
            self, X, reset=False, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32)
        )
        return self.network_.forward(X)

    def _score(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> float:
        """Score without input validation (for early stopping); NaN for a non-finite output.

        Finite but huge outputs (a fit on its way to diverging) can overflow the metric's
        squares; the score is then -inf or NaN, which the stopping rule handles, so numpy's
        overflow warning would only repeat it.
        """
        out = self.network_.forward(X)
        if not np.isfinite(out).all():
            return math.nan
        with np.errstate(over="ignore", invalid="ignore"):
            return float(self._score_function(y, self._decode(out), sample_weight=sample_weight))

    def _decode(self, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _encode_targets(
        self, y: np.ndarray, *, first: bool, incremental: bool, classes: Any
    ) -> np.ndarray:
        raise NotImplementedError

    def _output_and_cost(self) -> tuple[str, str]:
        raise NotImplementedError

    def _cost_name(self) -> str:
        raise NotImplementedError

    # fitted parameters, in scikit-learn's layout: coefs_[l-1] is Theta^(l), (S[l-1], S[l])
    @property
    def coefs_(self) -> list[np.ndarray]:
        """``Theta^(l)`` at index ``l-1``, shape ``(S[l-1], S[l])``: the network's own arrays.

        Assigning a list of arrays of these shapes copies them into the network.
        """
        return self.network_.weights

    @coefs_.setter
    def coefs_(self, value: Any) -> None:
        self._assign_parameters(
            "coefs_", self.network_.weights if self._has_network() else [], value
        )

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """``b^(l)`` at index ``l-1``, shape ``(S[l],)``: the network's own arrays.

        Assigning a list of arrays of these shapes copies them into the network.
        """
        return self.network_.biases

    @intercepts_.setter
    def intercepts_(self, value: Any) -> None:
        self._assign_parameters(
            "intercepts_", self.network_.biases if self._has_network() else [], value
        )

    def _has_network(self) -> bool:
        if not hasattr(self, "network_"):
            raise NotFittedError(
                f"This {type(self).__name__} has no network yet; call fit first, then "
                "assign coefs_ and intercepts_"
            )
        return True

    @staticmethod
    def _assign_parameters(name: str, targets: list[np.ndarray], value: Any) -> None:
        """Copy ``value`` into ``targets`` in place (the network keeps its own arrays)."""
        try:
            arrays = [np.asarray(v) for v in value]
        except TypeError:
            raise ValueError(
                f"{name} must be a list of {len(targets)} arrays, got {type(value).__name__}"
            ) from None
        if len(arrays) != len(targets):
            raise ValueError(
                f"{name} must hold {len(targets)} arrays, one per layer, got {len(arrays)}"
            )
        for l, (new, old) in enumerate(zip(arrays, targets), start=1):
            if new.shape != old.shape:
                raise ValueError(
                    f"{name}[{l - 1}] has shape {new.shape} but layer {l} needs {old.shape}"
                )
            if not (np.issubdtype(new.dtype, np.number) and np.isfinite(new).all()):
                raise ValueError(f"{name}[{l - 1}] must hold finite numbers")
        for new, old in zip(arrays, targets):
            np.copyto(old, new, casting="unsafe")

    # ------------------------------------------------------------ model files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fitted estimator as a deltaflow model file (safetensors, no pickle).

        The file is an ordinary deltaflow model (``deltaflow.load`` reads the network);
        the estimator's parameters and fitted state ride along as JSON metadata. The
        optimizer's state is not kept: ``partial_fit`` after :meth:`load` starts a fresh
        optimizer.
        """
        check_is_fitted(self)
        params = self.get_params(deep=False)
        sizes = params["hidden_layer_sizes"]
        params["hidden_layer_sizes"] = [sizes] if _is_int(sizes, 0) else list(sizes)
        if not isinstance(params["activation"], str):
            params["activation"] = list(params["activation"])
        if not _is_int(params["random_state"], 0):
            params["random_state"] = None
        params["callbacks"] = None
        if params["dtype"] is not None:
            params["dtype"] = check_dtype(params["dtype"]).name
        state = {
            name: getattr(self, name)
            for name in _SAVED_STATE
            if name in vars(self) and getattr(self, name) is not None
        }
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in_"] = [str(f) for f in self.feature_names_in_]
        if hasattr(self, "classes_"):
            state["classes_"] = self.classes_.tolist()
            state["classes_dtype"] = self.classes_.dtype.str
        record = {"estimator": type(self).__name__, "params": params, "state": state}
        try:  # a round trip through JSON turns numpy scalars and arrays into plain values
            record = json.loads(json.dumps(record, default=_json_default))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"cannot save this estimator as a model file: {exc}") from None
        io.save(self.network_, path, extra={"sklearn": record})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Any:
        """Load an estimator saved by :meth:`save`; it predicts exactly as the saved one.

        Raises
        ------
        ModelFileError
            For a file that is not a deltaflow model saved by this estimator class, or
            whose stored state disagrees with its network.
        """
        record = io.load_extra(path).get("sklearn")
        if not isinstance(record, dict) or record.get("estimator") != cls.__name__:
            raise ModelFileError(
                f"{path} was not saved by deltaflow.estimators.{cls.__name__}.save; "
                "load it with deltaflow.load or the class that saved it"
            )
        net = io.load(path)
        try:
            params, state = dict(record["params"]), dict(record["state"])
            unknown = set(params) - set(cls().get_params())
            if unknown:
                raise ValueError(f"unknown parameters {sorted(unknown)}")
            params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
            est = cls(**params)
            est._check_params()
            est.network_ = net
            for name in _SAVED_STATE:
                if name in state:
                    setattr(est, name, state[name])
            if "feature_names_in_" in state:
                est.feature_names_in_ = np.asarray(state["feature_names_in_"], dtype=object)
            if est.early_stopping:  # the saved weights are the best epoch's, restored
                est._best_params = [p.copy() for p in net.weights + net.biases]
            if "classes_" in state:
                est.classes_ = np.asarray(state["classes_"], dtype=np.dtype(state["classes_dtype"]))
            est._check_loaded()
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(
                f"{path}: the stored estimator state is unusable ({exc})"
            ) from None
        return est

    def _check_loaded(self) -> None:
        """Raise ValueError unless the loaded state agrees with the loaded network."""
        sizes = self.network_.sizes
        if (
            self.n_features_in_ != sizes[0]
            or self.n_outputs_ != sizes[-1]
            or self._hidden_sizes() != sizes[1:-1]
        ):
            raise ValueError(
                f"n_features_in_={self.n_features_in_}, n_outputs_={self.n_outputs_} and "
                f"hidden_layer_sizes={self.hidden_layer_sizes} do not match the network's "
                f"sizes {sizes}"
            )
        names = getattr(self, "feature_names_in_", None)
        if names is not None and len(names) != self.n_features_in_:
            raise ValueError(f"{len(names)} feature names for {self.n_features_in_} features")


# the fitted attributes kept in a model file, besides the network and the labels
_SAVED_STATE = (
    "n_features_in_",
    "n_outputs_",
    "n_layers_",
    "out_activation_",
    "n_iter_",
    "t_",
    "loss_",
    "loss_curve_",
    "best_loss_",
    "validation_scores_",
    "validation_loss_curve_",
    "best_validation_score_",
    "_no_improvement_count",
    "_y_type",
)


class _Monitor:
    """scikit-learn's per-epoch bookkeeping, as a :func:`deltaflow.train.fit` callback.

    Records ``loss_curve_``, ``n_iter_``, ``t_`` and the validation scores, applies
    scikit-learn's stopping rule (no improvement by more than ``tol`` for more than
    ``n_iter_no_change`` epochs) and its learning-rate rules for ``sgd``; returning True
    stops training.
    """

    def __init__(self, est: _BaseMLP, n_train: int, validation: tuple[Any, ...] | None) -> None:
        self.est = est
        self.n_train = n_train
        self.validation = validation

    def __call__(self, rec: EpochRecord) -> bool:
        score = None
        if self.validation is not None:
            Xv, yv, swv = self.validation
            score = self.est._score(Xv, yv, swv)
        return self._record(rec.cost, score, rec.val_cost)

    def diverged(self, max_iter: int) -> bool:
        """The epochs scikit-learn runs once the weights are NaN, each recording a NaN loss
        and score, up to its stopping rule or ``max_iter`` (a NaN never fails its test of
        improvement, so in practice up to ``max_iter``). True if the rule stopped them."""
        while self.est.n_iter_ < max_iter:
            if self._record(math.nan, math.nan if self.validation else None, math.nan):
                return True
        return False

    def _record(self, cost: float, score: float | None, val_cost: float | None) -> bool:
        est = self.est
        est.n_iter_ += 1
        est.t_ += self.n_train
        est.loss_ = cost
        est.loss_curve_.append(cost)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {cost:.8f}")
        if score is not None:
            scores, losses = est.validation_scores_, est.validation_loss_curve_
            best = est.best_validation_score_
            assert scores is not None and losses is not None and best is not None
            assert val_cost is not None  # train.fit was given validation_data
            scores.append(score)
            losses.append(val_cost)
            if est.verbose:
                print(f"Validation score: {score:f}")
            # written as scikit-learn writes it, so that a NaN score counts as it does there
            improved = not score < best + est.tol
            if score > best:
                est.best_validation_score_ = score
                params = est.network_.weights + est.network_.biases
                est._best_params = [p.copy() for p in params]
        else:
            best_loss = est.best_loss_
            assert best_loss is not None
            improved = not cost > best_loss - est.tol
            est.best_loss_ = min(best_loss, cost)
        est._no_improvement_count = 0 if improved else est._no_improvement_count + 1
        sgd = est.solver == "sgd"
        if sgd and est.learning_rate == "invscaling":
            est._learning_rate = est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count <= est.n_iter_no_change:
            return False
        if sgd and est.learning_rate == "adaptive" and est._learning_rate > 1e-6:
            est._learning_rate /= 5.0
            est._no_improvement_count = 0
            return False
        return True


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by deltaflow; scikit-learn's interface.

    Multi-class targets get a softmax output with the cross-entropy cost; binary and
    multi-label targets (a 0/1 indicator matrix) get sigmoid outputs with the binary
    cross-entropy, as in scikit-learn. Labels may be integers or strings.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        ``S[1..L-1]``, the units of each hidden layer.
    activation : str or list of str, default "relu"
        ``identity``, ``logistic`` (or ``sigmoid``), ``tanh``, ``relu``, or deltaflow's
        ``leaky_relu``. A list gives one name per hidden layer, or per layer including
        the output (which must then suit ``cost``; with a sigmoid output for multi-class
        targets, ``predict_proba`` returns the per-class sigmoids, which need not sum
        to 1).
    solver : {"adam", "sgd", "lbfgs"}, default "adam"
        ``lbfgs`` is full-batch L-BFGS (scipy's L-BFGS-B) on scikit-learn's objective;
        ``max_iter`` bounds its iterations, ``max_fun`` its evaluations of the cost, and
        ``tol`` is its gradient tolerance. ``partial_fit`` is then unavailable, and
        ``early_stopping`` is ignored, as in scikit-learn.
    alpha : float, default 1e-4
        L2 penalty, with scikit-learn's scaling (see the module docstring).
    batch_size : int or "auto", default "auto"
        ``min(200, n_samples)`` for "auto".
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant"
        Schedule for ``sgd``, as in scikit-learn.
    learning_rate_init : float, default 0.001
    power_t : float, default 0.5
    max_iter : int, default 200
        Epochs.
    shuffle : bool, default True
    random_state : int, RandomState or None
        Seeds the initialisation, the shuffling and the validation split.
    tol : float, default 1e-4
    verbose : bool, default False
    warm_start : bool, default False
    momentum : float, default 0.9
    nesterovs_momentum : bool, default True
    early_stopping : bool, default False
        Hold out ``validation_fraction`` (stratified for binary targets), stop when the
        validation accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs,
        and keep the best epoch's weights.
    validation_fraction : float, default 0.1
    beta_1, beta_2, epsilon : float
        Adam's settings.
    n_iter_no_change : int, default 10
    max_fun : int, default 15000
        The most evaluations of the cost and gradient, with ``solver="lbfgs"``.
    cost : {"log_loss", "squared_error"}, default "log_loss"
        deltaflow extra: the squared error (the course notes' cost) for classification.
    dtype : {None, "float32", "float64"}, default None
        deltaflow extra: the network's dtype; None follows ``X`` (float32 stays float32).
    callbacks : list of callable, optional
        deltaflow extra: each is called with a :class:`deltaflow.EpochRecord` after
        every epoch; one that returns True stops training.
    device : {"cpu", "cuda"}, default "cpu"
        deltaflow extra: where the network trains and predicts; ``"cuda"`` needs CuPy
        and a GPU (``coefs_`` and ``intercepts_`` are then CuPy arrays).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coefs_, intercepts_ : list of ndarray
        ``Theta^(l)`` of shape ``(S[l-1], S[l])`` and ``b^(l)``, at index ``l-1``.
    network_ : deltaflow.Network
        The trained network itself.
    loss_, loss_curve_ : float, list of float
        deltaflow's training cost (see the module docstring for how it compares).
    validation_scores_, best_validation_score_ : list of float, float
        Validation accuracy per epoch and its best (with ``early_stopping``).
    validation_loss_curve_ : list of float
        deltaflow extra: the validation cost per epoch (with ``early_stopping``).
    best_loss_ : float
    n_iter_, t_ : int
        Epochs run by the last call; examples seen in all.
    n_features_in_, feature_names_in_, n_outputs_, n_layers_, out_activation_
        As in scikit-learn.
    """

    _score_function = staticmethod(accuracy_score)

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str | list[str] = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        cost: str = "log_loss",
        dtype: Any = None,
        callbacks: Any = None,
        device: str = "cpu",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.cost = cost
        self.dtype = dtype
        self.callbacks = callbacks
        self.device = device

    def _cost_name(self) -> str:
        if self.cost not in ("log_loss", "squared_error"):
            raise ConfigError(f"cost must be 'log_loss' or 'squared_error', got {self.cost!r}")
        return self.cost

    def _output_and_cost(self) -> tuple[str, str]:
        if self._y_type == "multiclass":
            output, log_loss = "softmax", "cross_entropy"
        else:  # binary and multi-label: one sigmoid unit per label
            output, log_loss = "sigmoid", "binary_cross_entropy"
        return output, log_loss if self.cost == "log_loss" else "squared_error"

    def _stratify(self) -> bool:
        # as scikit-learn: only single-output (binary) targets are stratified, so that
        # small multi-class data sets still split
        return self.n_outputs_ == 1

    def _encode_targets(
        self, y: np.ndarray, *, first: bool, incremental: bool, classes: Any
    ) -> np.ndarray:
        """Targets for the network: class indices (multi-class) or 0/1 columns."""
        if first:
            if type_of_target(y) == "multilabel-indicator":
                self._y_type = "multilabel-indicator"
                self.classes_ = np.arange(y.shape[1])
            else:
                check_classification_targets(y)
                if incremental:
                    if classes is None:
                        raise ConfigError(
                            "classes must be passed on the first call to partial_fit: "
                            "every label the model will ever see, e.g. numpy.unique(y_all)"
                        )
                    self.classes_ = unique_labels(np.asarray(classes))
                else:
                    self.classes_ = unique_labels(y)
                self._y_type = "multiclass" if len(self.classes_) > 2 else "binary"
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ConfigError(
                f"`classes={_show(unique_labels(classes))}` is not the same as on last call "
                f"to partial_fit, was: {_show(self.classes_)}; pass the same classes or none"
            )
        if self._y_type == "multilabel-indicator":
            if type_of_target(y) != "multilabel-indicator" or y.shape[1] != len(self.classes_):
                raise DataError(
                    f"y must be a 0/1 indicator matrix with {len(self.classes_)} columns, "
                    "as in the first fit"
                )
            return y.astype(np.float64)
        check_classification_targets(y)
        seen = unique_labels(y)
        if not first and self.warm_start and not incremental:
            if set(seen) != set(self.classes_):
                raise DataError(
                    "warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {_show(self.classes_)}, `y` has "
                    f"{_show(seen)}"
                )
        missing = np.setdiff1d(seen, self.classes_)
        if len(missing):
            raise DataError(
                f"`y` has classes not in `self.classes_`: {_show(missing)} (`self.classes_` "
                f"has {_show(self.classes_)}); pass every class to the first partial_fit call"
            )
        index = np.searchsorted(self.classes_, y)
        if self._y_type == "binary":
            return (index == 1).astype(np.float64)[:, None]
        return index

    def _decode(self, out: np.ndarray) -> np.ndarray:
        if self._y_type == "multilabel-indicator":
            return (out > 0.5).astype(np.int64)
        if self._y_type == "binary":
            if len(self.classes_) == 1:
                return np.repeat(self.classes_, out.shape[0])
            return self.classes_[(out[:, 0] > 0.5).astype(np.int64)]
        return self.classes_[out.argmax(axis=1)]

    def _check_loaded(self) -> None:
        super()._check_loaded()
        n_classes, n_out = len(self.classes_), self.n_outputs_
        fits = {
            "multiclass": n_classes == n_out > 2,
            "binary": n_classes <= 2 and n_out == 1,
            "multilabel-indicator": n_classes == n_out,
        }
        if not fits.get(self._y_type, False):
            raise ValueError(
                f"{n_classes} classes of kind {self._y_type!r} do not fit {n_out} output units"
            )

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> Any:
        """One epoch over ``X``, ``y``, continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        sample_weight : array-like of shape (n_samples,), optional
        classes : array-like, optional
            Every class across all calls; required on the first call (not for
            multi-label targets).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels: shape (n_samples,), or (n_samples, n_classes) for multi-label."""
        return self._decode(self._forward(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of shape (n_samples, n_classes), in the order of ``classes_``."""
        out = self._forward(X)
        if self._y_type == "binary":
            if len(self.classes_) == 1:
                return np.ones((out.shape[0], 1), dtype=out.dtype)
            return np.hstack([1 - out, out])
        return out

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.input_tags.sparse = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by deltaflow; scikit-learn's interface.

    The output layer is the identity and the cost deltaflow's squared error (no 1/2;
    see the module docstring for how ``alpha``, the rates and ``loss_curve_`` map), or
    with ``loss="poisson"`` the exponential and half the Poisson deviance.
    Targets may have several columns (multi-output regression).

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default "squared_error"
        ``poisson``: an exponential output layer and half the Poisson deviance
        ``y log(y / a) - y + a``, scikit-learn's definition (targets must be >= 0).
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, \
learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start, \
momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, \
epsilon, n_iter_no_change, max_fun, dtype, callbacks
        As for :class:`MLPClassifier`; with ``early_stopping`` the validation score is
        R^2. A list ``activation`` that names the output layer may replace the identity.

    Attributes
    ----------
    coefs_, intercepts_, network_, loss_, loss_curve_, validation_scores_, \
validation_loss_curve_, best_validation_score_, best_loss_, n_iter_, t_, n_features_in_, \
feature_names_in_, n_outputs_, n_layers_, out_activation_
        As for :class:`MLPClassifier`.
    """

    _score_function = staticmethod(r2_score)
    _numeric_targets = True

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: Any = (100,),
        activation: str | list[str] = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        dtype: Any = None,
        callbacks: Any = None,
        device: str = "cpu",
    ) -> None:
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.callbacks = callbacks
        self.device = device

    def _cost_name(self) -> str:
        if self.loss not in ("squared_error", "poisson"):
            raise ConfigError(f"loss must be 'squared_error' or 'poisson', got {self.loss!r}")
        return str(self.loss)

    def _output_and_cost(self) -> tuple[str, str]:
        if self.loss == "poisson":
            return "exp", "poisson"
        return "identity", "squared_error"

    def _encode_targets(
        self, y: np.ndarray, *, first: bool, incremental: bool, classes: Any
    ) -> np.ndarray:
        Y = y.reshape(y.shape[0], -1)
        if self.loss == "poisson" and (Y < 0).any():
            raise DataError(
                "Some value(s) of y are negative which is not allowed for Poisson "
                "regression; pass counts or rates (y >= 0) or use loss='squared_error'"
            )
        if not first and Y.shape[1] != self.n_outputs_:
            raise DataError(
                f"y has {Y.shape[1]} output column(s) but the model was fitted with "
                f"{self.n_outputs_}; pass the same targets or fit afresh"
            )
        return Y

    def _decode(self, out: np.ndarray) -> np.ndarray:
        return out[:, 0] if out.shape[1] == 1 else out

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        """One epoch over ``X``, ``y``, continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions ``a[L]``: shape (n_samples,), or (n_samples, n_outputs)."""
        return self._decode(self._forward(X))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.input_tags.sparse = True
        return tags


# ------------------------------------------------------------------ helpers
def _is_int(value: Any, low: int) -> bool:
    return (
        isinstance(value, Integral)
        and not isinstance(value, (bool, np.bool_))
        and int(value) >= low
    )


def _check_number(
    name: str,
    value: Any,
    low: float,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    ok = isinstance(value, Real) and not isinstance(value, (bool, np.bool_)) and value == value
    if ok:
        ok = (value > low if open_low else value >= low) and (
            high is None or (value < high if open_high else value <= high)
        )
    if not ok:
        lo, hi = "(" if open_low else "[", ")" if open_high or high is None else "]"
        span = f"{lo}{low}, {'inf' if high is None else high}{hi}"
        raise ConfigError(f"{name} must be a number in {span}, got {value!r}")


def _check_sample_weight(sample_weight: Any, n: int, dtype: np.dtype) -> np.ndarray | None:
    """``sample_weight`` as a checked array of shape (n,), or None."""
    if sample_weight is None:
        return None
    sw = check_array(sample_weight, ensure_2d=False, dtype=dtype, input_name="sample_weight")
    if sw.shape != (n,):
        raise DataError(
            f"sample_weight has shape {sw.shape} but X has {n} rows; pass one weight per row"
        )
    if (sw < 0).any():
        raise DataError("sample_weight has negative values; weights must be zero or more")
    if not (sw > 0).any():
        raise DataError("sample_weight is zero for every row; give some rows a positive weight")
    return sw


def _show(labels: Any) -> str:
    """Class labels as the user wrote them: ``['cat', 'dog']``, ``[3, 7]``."""
    return repr(np.asarray(labels).tolist())


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays in JSON, for the model file's metadata."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
