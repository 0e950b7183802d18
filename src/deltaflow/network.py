"""The network: layer sizes, parameters ``Theta[l]`` and ``b[l]``, and initialisation.

:class:`Network` is the object users hold. Its parameters live in one flat array,
``net.params``, laid out ``Theta[1], b[1], Theta[2], b[2], ...`` (see
:mod:`deltaflow.engine.params`); ``net.weights`` and ``net.biases`` are lists of views
into it. The arithmetic lives in :mod:`deltaflow.engine.backprop` and the training loop
in :mod:`deltaflow.training`, so this module is mostly bookkeeping and input checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from deltaflow.engine import backprop, on_device
from deltaflow.engine import params as flat
from deltaflow.engine.activations import Activation, get_activation
from deltaflow.engine.devices import Device, get_device
from deltaflow.engine.losses import Loss, get_loss
from deltaflow.errors import ConfigError, DataError
from deltaflow.initializers import get_initializer

if TYPE_CHECKING:
    from deltaflow.training.loop import History

__all__ = ["Network", "as_generator", "check_dtype"]

_DTYPES = {"float32": np.float32, "float64": np.float64}


def check_dtype(dtype: Any) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise ConfigError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in _DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a generator (used as is) or None."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ConfigError(f"seed must be an int, a numpy Generator or None, got {seed!r}")
    if seed is not None and seed < 0:
        raise ConfigError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(seed)


class Network:
    """A fully connected network with layers ``0..L``.

    Parameters
    ----------
    sizes : sequence of int
        ``[S_0, S_1, ..., S_L]``: the units of each layer, input first. At least two
        layers, each of size at least 1.
    activation : str or sequence of str, default "sigmoid"
        One name for every layer ``1..L`` (as in the notes) or a list of ``L`` names,
        one per layer, the last being the output's. With one name and the
        ``cross_entropy`` cost the output layer is softmax; with
        ``binary_cross_entropy`` it is sigmoid. Names: sigmoid, tanh, relu,
        leaky_relu, identity, exp, softmax.
    cost : str, default "squared_error"
        ``squared_error`` (the notes' ``C``), ``cross_entropy`` (softmax output),
        ``binary_cross_entropy`` (sigmoid output) or ``poisson`` (exp output).
    dtype : {"float64", "float32"}, default "float64"
        Dtype of the parameters and of every computation.
    seed : int, numpy.random.Generator or None
        Source of all randomness: initialisation here and, unless ``fit`` is given its
        own, shuffling during training. The same seed gives bit-identical training.
    init : str, default "default"
        How the initial ``Theta[l]`` and ``b[l]`` are drawn: ``"default"`` (He normal
        for relu and leaky_relu layers, Glorot uniform otherwise, zero biases),
        ``"glorot_uniform"``, ``"he_normal"``, ``"sklearn"`` (scikit-learn's MLP),
        ``"torch"`` (PyTorch's ``nn.Linear``) or ``"nielsen"`` (``N(0, 1)`` weights and
        biases). :mod:`deltaflow.initializers` gives each one's formula.
    device : {"cpu", "cuda"}, default "cpu"
        Where the parameters live and the computations run (see :meth:`to`). The
        parameters are drawn on the host first, so a seed gives the same network on both.

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        Every parameter in one C-contiguous vector: ``Theta[1]`` (row-major), ``b[1]``,
        ``Theta[2]``, ``b[2]``, ..., ``b[L]``. Writing into it changes the model.
    weights : list of ndarray
        ``weights[l-1]`` is ``Theta^(l)``, of shape ``(S[l-1], S[l])``: a C-contiguous
        view into ``params``, so writing into it (``net.weights[0][...] = x``) changes
        the model. The list itself is read-only; :meth:`set_params` copies new values in.
    biases : list of ndarray
        ``biases[l-1]`` is ``b^(l)``, of shape ``(S[l],)``, a view into ``params``.
    activations : list of Activation
        ``activations[l-1]`` is ``g^(l)``.
    loss : Loss
        The cost ``C``.
    rng : numpy.random.Generator
        The generator seeded by ``seed``.
    init : str
        The name of the initialisation the parameters were drawn with.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str | Sequence[str] = "sigmoid",
        cost: str = "squared_error",
        *,
        dtype: Any = "float64",
        seed: int | np.random.Generator | None = None,
        init: str = "default",
        device: str | Device = "cpu",
    ) -> None:
        self.sizes = _check_sizes(sizes)
        place = get_device(device)  # refused before any work when there is no such device
        self.dtype = check_dtype(dtype)
        self.loss: Loss = get_loss(cost)
        self.activations: list[Activation] = _resolve_activations(activation, self.L, self.loss)
        self.rng = as_generator(seed)
        self._adopt(np.zeros(flat.count(self.sizes), dtype=self.dtype))
        draw = get_initializer(init)
        self.init = init.lower()
        for l in range(1, self.L + 1):
            fan_in, fan_out = self.sizes[l - 1], self.sizes[l]
            g, hidden = self.activations[l - 1].name, self.activations[0].name
            theta, b = draw(fan_in, fan_out, g, self.rng, hidden=hidden)
            self._weights[l - 1][...] = theta  # cast to the dtype as astype would
            self._biases[l - 1][...] = b
        self._device: Device | None = None
        if place is not None:
            self._move(place)

    # ----------------------------------------------------------------- the device
    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda"`` (or ``"host"``: numpy through the device path), where
        :attr:`params` lives."""
        place = self.__dict__.get("_device")
        return "cpu" if place is None else place.name

    def to(self, device: str | Device) -> Network:
        """Move the parameters to ``device`` (``"cpu"`` or ``"cuda"``), in place; returns
        the network. On a GPU the parameters are a CuPy array and the views cut from it;
        training, :meth:`forward` and the rest then run there.

        Raises
        ------
        ConfigError
            For another name.
        MissingDependencyError, DeviceError
            For ``"cuda"`` without CuPy, or without a GPU.
        """
        place = get_device(device)
        if place is self._device:
            return self
        if self._device is not None:  # back to the host first
            self._adopt(self._device.to_host(self._params))
            self._device = None
        if place is not None:
            self._move(place)
        return self

    def _move(self, place: Device) -> None:
        """Put the host parameters on ``place``."""
        self._adopt(place.asarray(self._params))
        self._device = place

    def _adopt(self, params: np.ndarray) -> None:
        """Make ``params`` the flat buffer and cut the per-layer views from it."""
        weights, biases = flat.split(params, self.sizes)
        self._params = params
        self._weights = _Views(weights, "weights")
        self._biases = _Views(biases, "biases")

    # ----------------------------------------------------------------- parameters
    @property
    def params(self) -> np.ndarray:
        """All parameters in one vector, ``Theta[1], b[1], ..., Theta[L], b[L]``."""
        return self._params

    @property
    def weights(self) -> list[np.ndarray]:
        """``Theta[l]`` at index ``l-1``, views into :attr:`params`."""
        return self._weights

    @property
    def biases(self) -> list[np.ndarray]:
        """``b[l]`` at index ``l-1``, views into :attr:`params`."""
        return self._biases

    def set_params(self, weights: Iterable[Any], biases: Iterable[Any]) -> None:
        """Copy ``Theta[1..L]`` and ``b[1..L]`` into the parameters (cast to the dtype).

        Raises
        ------
        DataError
            If the counts or shapes differ from the network's.
        """
        weights, biases = list(weights), list(biases)
        if len(weights) != self.L or len(biases) != self.L:
            raise DataError(
                f"set_params takes {self.L} weight and {self.L} bias arrays, got "
                f"{len(weights)} and {len(biases)}"
            )
        for l, (w, b) in enumerate(zip(weights, biases), start=1):
            for name, new, old in (
                (f"Theta[{l}]", w, self._weights[l - 1]),
                (f"b[{l}]", b, self._biases[l - 1]),
            ):
                if np.shape(new) != old.shape:
                    raise DataError(
                        f"{name} has shape {np.shape(new)} but the network needs {old.shape}"
                    )
        for view, new in zip(self._weights + self._biases, weights + biases):
            view[...] = new

    def __getstate__(self) -> dict[str, Any]:
        # the views are cut again on unpickling, so they stay views of the new buffer
        state = dict(self.__dict__)
        del state["_weights"], state["_biases"]
        if state.get("_device") is not None:  # a pickle holds host arrays: it loads on the CPU
            state["_params"] = state["_device"].to_host(state["_params"])
            state["_device"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_device", None)
        self._adopt(self._params)

    # ----------------------------------------------------------------- description
    @property
    def L(self) -> int:
        """The index of the output layer (the number of weight layers)."""
        return len(self.sizes) - 1

    @property
    def activation_names(self) -> list[str]:
        """``g^(1)..g^(L)`` by name."""
        return [g.name for g in self.activations]

    @property
    def n_params(self) -> int:
        """Number of weights and biases."""
        return int(self._params.size)

    @property
    def is_classifier(self) -> bool:
        """True when the output layer's units are class scores (softmax or sigmoid)."""
        return self.activations[-1].name in ("softmax", "sigmoid")

    def __repr__(self) -> str:
        acts = self.activation_names
        act = acts[0] if len(set(acts)) == 1 else acts
        return (
            f"Network({self.sizes}, activation={act!r}, cost={self.loss.name!r}, "
            f"dtype={self.dtype.name!r})"
        )

    def copy(self, dtype: Any = None) -> Network:
        """A deep copy of the parameters (the generator is copied too).

        With ``dtype`` the copy's parameters, and so its computations, take that dtype.
        """
        new = object.__new__(Network)
        new.__dict__.update(self.__dict__)
        new.sizes = list(self.sizes)
        new.activations = list(self.activations)
        new.dtype = self.dtype if dtype is None else check_dtype(dtype)
        new._adopt(self._params.astype(new.dtype))  # on the same device as this one
        new.rng = np.random.Generator(type(self.rng.bit_generator)())
        new.rng.bit_generator.state = self.rng.bit_generator.state
        return new

    # ------------------------------------------------------------- checked inputs
    def check_X(self, X: Any, name: str = "X") -> Any:
        """``X`` as a C-ordered array of the network's dtype, of shape ``(m, S[0])``.

        A scipy.sparse matrix or array comes back as a CSR matrix of the network's dtype
        (its rows are what batches gather), never densified.

        Raises
        ------
        DataError
            If ``X`` is not a non-empty 2-D numeric array with ``S[0]`` columns of
            finite values.
        """
        if sparse.issparse(X):
            return self._check_sparse_X(X, name)
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{name} is not a numeric array ({exc})") from None
        if X.ndim == 1 and self.sizes[0] == X.shape[0]:
            X = X[None, :]
        if X.ndim != 2:
            raise DataError(
                f"{name} must be 2-D of shape (m, {self.sizes[0]}), got shape {X.shape}"
            )
        if X.shape[0] == 0:
            raise DataError(f"{name} is empty (0 rows); pass at least one example")
        if X.shape[1] != self.sizes[0]:
            raise DataError(
                f"{name} has {X.shape[1]} features but the input layer has {self.sizes[0]}; "
                "pass the same columns used for training or change the first layer size"
            )
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise DataError(f"{name} must be numeric, got dtype {X.dtype}")
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not _all_finite(X):
            r, c = np.argwhere(~np.isfinite(X))[0]
            raise DataError(
                f"{name} contains NaN or infinite values (first at row {r}, column {c}); "
                "clean or impute them first"
            )
        return X

    def _check_sparse_X(self, X: Any, name: str) -> sparse.csr_matrix:
        if X.ndim != 2 or X.shape[1] != self.sizes[0] or X.shape[0] == 0:
            raise DataError(
                f"{name} must be a non-empty sparse matrix of shape (m, {self.sizes[0]}), "
                f"got shape {X.shape}; pass the same columns used for training"
            )
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise DataError(f"{name} must be numeric, got dtype {X.dtype}")
        X = sparse.csr_matrix(X, dtype=self.dtype)
        if not np.isfinite(X.data).all():
            raise DataError(f"{name} contains NaN or infinite values; clean or impute them first")
        return X

    def encode_targets(self, Y: Any, m: int, name: str = "Y") -> tuple[np.ndarray, bool]:
        """Targets as a ``(m, S[L])`` array of the network's dtype, and whether they are classes.

        Accepted forms: class indices (1-D integers ``0..S_L-1``, one-hot encoded here;
        with a single output unit, 0/1 labels), one-hot rows, or real-valued targets of
        shape ``(m, S_L)`` (or ``(m,)`` when ``S_L == 1``) for regression.

        Raises
        ------
        DataError
            For a row count different from ``m``, labels outside the output layer's
            range, non-finite values or a shape that fits neither form.
        """
        try:
            Y = np.asarray(Y)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{name} is not a numeric array ({exc})") from None
        if Y.ndim == 0 or Y.shape[0] != m:
            got = "a scalar" if Y.ndim == 0 else f"{Y.shape[0]} rows"
            raise DataError(f"X has {m} rows but {name} has {got}; pass one target per example")
        if not (np.issubdtype(Y.dtype, np.number) or Y.dtype == bool):
            raise DataError(f"{name} must be numeric, got dtype {Y.dtype}")
        if not np.isfinite(Y).all():
            raise DataError(f"{name} contains NaN or infinite values; clean them first")
        S_L = self.sizes[-1]
        if Y.ndim == 1:
            integral = (
                np.issubdtype(Y.dtype, np.integer)
                or Y.dtype == bool
                or (S_L > 1 and np.array_equal(Y, np.round(Y)))
            )
            if S_L == 1:
                if not integral:  # one real-valued output: regression
                    return np.ascontiguousarray(Y[:, None], dtype=self.dtype), False
                Y = Y.astype(np.int64)
                if Y.min() < 0 or Y.max() > 1:
                    raise DataError(
                        f"{name} has labels outside 0..1 for a network with one output unit; "
                        "use as many output units as classes or pass float targets"
                    )
                return np.ascontiguousarray(Y[:, None], dtype=self.dtype), True
            if not integral:
                raise DataError(
                    f"{name} is 1-D with non-integer values but the output layer has {S_L} "
                    f"units; pass class indices 0..{S_L - 1} or targets of shape (m, {S_L})"
                )
            Y = Y.astype(np.int64)
            lo, hi = int(Y.min()), int(Y.max())
            if lo < 0 or hi >= S_L:
                bad = lo if lo < 0 else hi
                raise DataError(
                    f"{name} has label {bad} but the output layer has {S_L} units "
                    f"(labels 0..{S_L - 1}); check the labels or the last layer size"
                )
            onehot = np.zeros((m, S_L), dtype=self.dtype)
            onehot[np.arange(m), Y] = 1
            return onehot, True
        if Y.ndim != 2 or Y.shape[1] != S_L:
            raise DataError(
                f"{name} has shape {Y.shape} but the output layer has {S_L} units; pass "
                f"class indices of shape (m,) or targets of shape (m, {S_L})"
            )
        Y = np.ascontiguousarray(Y, dtype=self.dtype)
        is_onehot = S_L > 1 and bool(((Y == 0) | (Y == 1)).all() and (Y.sum(axis=1) == 1).all())
        return Y, is_onehot

    # ------------------------------------------------------------------ the model
    def forward(self, X: Any) -> np.ndarray:
        """The output ``a^(L)`` for a batch.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (m, S[0])

        Returns
        -------
        ndarray of shape (m, S[L])
        """
        X = self.check_X(X)
        if self._device is not None:
            return on_device.forward(self, self._device, X)
        ws = backprop.Workspace(self, X.shape[0], input_buffer=False)
        return backprop.forward(self, ws, X).copy()

    def predict(self, X: Any) -> np.ndarray:
        """Class predictions: ``argmax_j a_j^(L)``, or ``a^(L) > 0.5`` with one output unit.

        For regression use :meth:`forward`.

        Returns
        -------
        ndarray of int64, shape (m,)
        """
        out = self.forward(X)
        if out.shape[1] == 1:
            return (out[:, 0] > 0.5).astype(np.int64)
        return out.argmax(axis=1)

    def cost(self, X: Any, Y: Any) -> float:
        """The cost ``C = (1/m) sum_i C_i`` on a batch (without any weight decay)."""
        X = self.check_X(X)
        Yenc, _ = self.encode_targets(Y, X.shape[0])
        if self._device is not None:
            return on_device.cost(self, self._device, X, Yenc)
        ws = backprop.Workspace(self, X.shape[0], input_buffer=False)
        return self.loss.value(backprop.forward(self, ws, X), Yenc)

    def gradients(self, X: Any, Y: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``dC/dTheta[l]`` and ``dC/db[l]`` for every layer, by the dynamic programme.

        Returns
        -------
        dtheta, db : lists of ndarray
            Laid out like :attr:`weights` and :attr:`biases` (index ``l-1``).
        """
        X = self.check_X(X)
        Yenc, _ = self.encode_targets(Y, X.shape[0])
        if self._device is not None:
            return on_device.gradients(self, self._device, X, Yenc)
        ws = backprop.Workspace(self, X.shape[0], input_buffer=False)
        backprop.forward(self, ws, X)
        backprop.backward(self, ws, Yenc)
        return [g.copy() for g in ws.dtheta], [g.copy() for g in ws.db]

    def fit(self, X: Any, Y: Any, **kwargs: Any) -> History:
        """Train by mini-batch gradient descent; see :func:`deltaflow.train.fit`."""
        from deltaflow.training.loop import fit

        return fit(self, X, Y, **kwargs)


def _all_finite(X: np.ndarray, rows: int = 4096) -> bool:
    """Whether every entry of ``X`` is finite, checked in blocks of rows.

    ``np.isfinite(X).all()`` would build a boolean mask the size of the whole dataset
    (a quarter of a float32 copy); blocks keep the check's memory small and fixed.
    """
    return all(bool(np.isfinite(X[i : i + rows]).all()) for i in range(0, X.shape[0], rows))


def _check_sizes(sizes: Any) -> list[int]:
    try:
        out = [int(s) for s in sizes]
    except (TypeError, ValueError):
        raise ConfigError(
            f"sizes must be a list of layer sizes such as [64, 32, 10], got {sizes!r}"
        ) from None
    if any(o != s for o, s in zip(out, sizes)) or len(out) < 2:
        raise ConfigError(
            f"sizes must be at least two whole numbers such as [64, 32, 10], got {sizes!r}"
        )
    bad = [s for s in out if s < 1]
    if bad:
        raise ConfigError(f"every layer needs at least 1 unit; got sizes {out}")
    return out


def _resolve_activations(activation: Any, L: int, loss: Loss) -> list[Activation]:
    if isinstance(activation, str) or not isinstance(activation, Sequence):
        names: list[Any] = [activation] * L
        if loss.default_output is not None:
            names[-1] = loss.default_output
    else:
        names = list(activation)
        if len(names) != L:
            raise ConfigError(
                f"activation has {len(names)} names but the network has {L} layers after "
                "the input; give one name for all, or exactly one per layer"
            )
    acts = [get_activation(n) for n in names]
    if loss.default_output is not None and acts[-1].name != loss.default_output:
        raise ConfigError(
            f"the {loss.name} cost needs a {loss.default_output} output layer, "
            f"got {acts[-1].name}; make the last activation {loss.default_output!r}"
        )
    return acts


class _Views(list):  # type: ignore[type-arg]
    """The per-layer views: a list that refuses to have its arrays replaced.

    Putting another array in the list would cut that layer loose from ``params``;
    writing into the array it holds is the way to change it.
    """

    def __init__(self, views: list[np.ndarray], name: str) -> None:
        super().__init__(views)
        self._name = name

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            f"net.{self._name} holds views into net.params and cannot be rebound; write "
            f"into an array (net.{self._name}[0][...] = new) or use net.set_params(...)"
        )

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse  # type: ignore[assignment]
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse  # type: ignore[assignment]
