"""One playground session: its settings, data, network and training, as plain messages.

:class:`Playground` is everything a browser tab drives, with no web server in it: the
server turns each message from the page into a call here and sends back the dicts these
methods return. All arithmetic is deltaflow's own: :func:`deltaflow.fit` trains,
:func:`deltaflow.evaluate` measures, the engine's forward sweep gives every unit's output
for the heat maps, and :func:`deltaflow.explain.trace_step` gives the dynamic programme's
table for the panel. The page only draws.

Every setting arrives from an untrusted page, so :meth:`Playground.configure` checks
each against :data:`LIMITS` and rejects anything else with a :class:`ConfigError`.
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from deltaflow import OPTIMIZERS, Network, evaluate, fit, get_optimizer
from deltaflow.engine import backprop
from deltaflow.errors import ConfigError, DivergenceError
from deltaflow.explain import trace_step
from deltaflow.web.datasets import DATASETS, DOMAIN, FEATURES, features, make_points

__all__ = ["COSTS", "HIDDEN_ACTIVATIONS", "LIMITS", "Playground", "Settings"]

HIDDEN_ACTIVATIONS = ("tanh", "sigmoid", "relu", "leaky_relu", "identity")
#: Each cost with the output activation it is paired with.
COSTS = {
    "binary_cross_entropy": "sigmoid",
    "squared_error": "sigmoid",
    "cross_entropy": "softmax",
}

#: The bounds every setting is checked against (inclusive).
LIMITS: dict[str, Any] = {
    "hidden_layers": 6,
    "units": 8,
    "points": (50, 1000),
    "noise": (0, 50),
    "train_ratio": (10, 90),
    "learning_rate": (1e-5, 10.0),
    "batch_size": (1, 100),
    "l2": (0.0, 1.0),
    "seed": (0, 2**31 - 1),
}

#: Side of the decision-boundary grid and of each unit's heat map, in cells.
BOUNDARY_CELLS = 50
UNIT_CELLS = 20
#: Test images of each digit shown in the digits view (and in its unit heat maps).
DIGITS_PER_CLASS = 10


@dataclass(frozen=True)
class Settings:
    """What the page can set. Percentages are whole numbers, as the sliders give them."""

    dataset: str = "circle"
    noise: int = 0
    train_ratio: int = 50
    points: int = 500
    features: tuple[str, ...] = ("x1", "x2")
    hidden: tuple[int, ...] = (4, 2)
    activations: tuple[str, ...] = ("tanh", "tanh")
    cost: str = "binary_cross_entropy"
    learning_rate: float = 0.1
    batch_size: int = 10
    optimizer: str = "sgd"
    l2: float = 0.0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# settings whose change needs new data, or a new network, or a new optimizer state
_NEW_DATA = {"dataset", "noise", "train_ratio", "points", "seed"}
_NEW_NETWORK = {"features", "hidden", "activations", "cost"}


def _whole(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    return value


def _real(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number from {lo:g} to {hi:g}, got {value!r}")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"{name} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


def _choice(value: Any, name: str, options: Any) -> str:
    if not isinstance(value, str) or value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


def _names(value: Any, name: str, options: Any, most: int) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > most:
        raise ConfigError(f"{name} must be a list of at most {most} names")
    return tuple(_choice(v, name, options) for v in value)


def checked(settings: Settings, changes: Any) -> Settings:
    """``settings`` with ``changes`` applied, every value checked against :data:`LIMITS`.

    Raises
    ------
    ConfigError
        For an unknown key or a value out of bounds; nothing is applied then.
    """
    if not isinstance(changes, dict):
        raise ConfigError("settings must be an object of name: value pairs")
    unknown = sorted(set(changes) - set(Settings.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}")
    new: dict[str, Any] = {}
    for key, v in changes.items():
        if key in LIMITS and key not in ("learning_rate", "l2"):
            new[key] = _whole(v, key, *LIMITS[key])
        elif key in ("learning_rate", "l2"):
            new[key] = _real(v, key, *LIMITS[key])
        elif key == "dataset":
            new[key] = _choice(v, key, DATASETS)
        elif key == "cost":
            new[key] = _choice(v, key, tuple(COSTS))
        elif key == "optimizer":
            new[key] = _choice(v, key, OPTIMIZERS)
        elif key == "features":
            names = _names(v, key, tuple(FEATURES), len(FEATURES))
            if not names or len(set(names)) != len(names):
                raise ConfigError("features must name at least one input feature, each once")
            new[key] = tuple(f for f in FEATURES if f in names)  # the page's order
        elif key == "hidden":
            most, units = LIMITS["hidden_layers"], LIMITS["units"]
            if not isinstance(v, list) or len(v) > most:
                raise ConfigError(f"hidden must be a list of at most {most} layer sizes")
            new[key] = tuple(_whole(s, "a hidden layer's size", 1, units) for s in v)
        elif key == "activations":
            new[key] = _names(v, key, HIDDEN_ACTIVATIONS, LIMITS["hidden_layers"])
    out = replace(settings, **new)
    acts = out.activations
    if len(acts) != len(out.hidden):  # a layer added or removed: extend with the last
        last = acts[-1] if acts else "tanh"
        acts = (acts + (last,) * len(out.hidden))[: len(out.hidden)]
        out = replace(out, activations=acts)
    return out


def _quantise(values: np.ndarray) -> str:
    """Values clipped to [-1, 1] as bytes 0..255, in base 64: a heat map for the page."""
    q = np.rint((np.clip(values, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return base64.b64encode(q.tobytes()).decode("ascii")


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def _rounded(value: Any, digits: int = 6) -> Any:
    """Nested lists of numbers with finite floats rounded and the others as None (JSON)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


def _grid(cells: int) -> np.ndarray:
    """Cell centres of a ``cells x cells`` grid over the square, top row first (x2 = +6)."""
    c = (np.arange(cells) + 0.5) / cells * 2 * DOMAIN - DOMAIN
    x1, x2 = np.meshgrid(c, c[::-1])
    return np.column_stack([x1.ravel(), x2.ravel()])


@dataclass
class _Data:
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    points: np.ndarray | None = None  # (x1, x2) of training then test rows
    shown: np.ndarray | None = None  # digits: indices into the test rows that are drawn


@dataclass
class _Progress:
    examples: int = 0  # examples trained on since the reset
    steps: int = 0
    train: list[tuple[int, float, float]] = field(default_factory=list)


class Playground:
    """The state of one page: settings, data, network, optimizer and progress.

    Parameters
    ----------
    settings : Settings, optional
        Initial settings (the defaults are TensorFlow Playground's: a circle, x1 and x2,
        hidden layers of 4 and 2 tanh units).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.playing = False
        self._new_data()

    # ------------------------------------------------------------------ building
    def _new_data(self) -> None:
        s = self.settings
        rng = np.random.default_rng(s.seed)
        if s.dataset == "digits":
            from deltaflow.data import load_digits

            d = load_digits(test_size=1 - s.train_ratio / 100, seed=s.seed)
            assert d.X_test is not None and d.y_test is not None
            shown = np.concatenate(
                [np.flatnonzero(d.y_test == c)[:DIGITS_PER_CLASS] for c in range(10)]
            )
            self.data = _Data(d.X_train, d.y_train, d.X_test, d.y_test, shown=shown)
        else:
            P, y = make_points(s.dataset, s.points, s.noise / 100, rng)
            order = rng.permutation(len(y))
            m = min(max(1, round(len(y) * s.train_ratio / 100)), len(y) - 1)
            train, test = order[:m], order[m:]
            self.data = _Data(
                P[train], y[train], P[test], y[test], np.concatenate([P[train], P[test]])
            )
        self._new_network()

    @property
    def is_digits(self) -> bool:
        return self.settings.dataset == "digits"

    def _inputs(self, P: np.ndarray) -> np.ndarray:
        return P if self.is_digits else features(P, list(self.settings.features))

    def _new_network(self) -> None:
        s = self.settings
        n_in = 64 if self.is_digits else len(s.features)
        n_out = 10 if self.is_digits else (2 if s.cost == "cross_entropy" else 1)
        self.net = Network(
            [n_in, *s.hidden, n_out],
            [*s.activations, COSTS[s.cost]],
            s.cost,
            seed=s.seed,
        )
        self.X = self._inputs(self.data.X)
        self.X_test = self._inputs(self.data.X_test)
        self.rng = np.random.default_rng(s.seed + 1)
        self.order = self.rng.permutation(len(self.data.y))
        self.optimizer = get_optimizer(s.optimizer)  # kept between calls to fit: its state
        self.progress = _Progress()
        self.delta_norms: list[list[float]] = []
        if self.is_digits:
            self._unit_rows = self.X_test[self.data.shown]
        else:
            self._unit_rows = self._inputs(_grid(UNIT_CELLS))
            self._boundary_rows = self._inputs(_grid(BOUNDARY_CELLS))
        self.playing = False

    def configure(self, changes: Any) -> bool:
        """Apply checked changes; True when the network was rebuilt (training restarts)."""
        old, new = self.settings, checked(self.settings, changes)
        self.settings = new
        changed = {k for k in Settings.__dataclass_fields__ if getattr(old, k) != getattr(new, k)}
        if changed & _NEW_DATA:
            self._new_data()
        elif changed & _NEW_NETWORK:
            self._new_network()
        elif "optimizer" in changed:
            self.optimizer = get_optimizer(new.optimizer)
        return bool(changed & (_NEW_DATA | _NEW_NETWORK))

    def reset(self) -> None:
        """New initial weights (the next seed), the same data; progress starts again."""
        self.settings = replace(self.settings, seed=(self.settings.seed + 1) % LIMITS["seed"][1])
        self._new_network()

    # ------------------------------------------------------------------ training
    def _fit(self, rows: np.ndarray | None, epochs_like: bool) -> None:
        """Train on ``rows`` of the training set (all of them, shuffled, when None)."""
        s = self.settings
        X, y = (self.X, self.data.y) if rows is None else (self.X[rows], self.data.y[rows])
        history = fit(
            self.net,
            X,
            y,
            epochs=1,
            batch_size=s.batch_size if epochs_like else len(y),
            learning_rate=s.learning_rate,
            optimizer=self.optimizer,
            weight_decay=s.l2,
            shuffle=epochs_like,
            seed=self.rng,
            track_delta_norms=True,
        )
        self.progress.examples += len(y)
        self.progress.steps += math.ceil(len(y) / (s.batch_size if epochs_like else len(y)))
        self.delta_norms.append(history.delta_norms[-1])
        del self.delta_norms[:-500]

    def epoch(self) -> None:
        """One pass over the training set in shuffled mini-batches (one frame of play)."""
        self._guarded(lambda: self._fit(None, True))

    def step(self) -> dict[str, Any]:
        """One mini-batch step; returns the trace of its first example, taken before it."""
        m, bs = len(self.order), self.settings.batch_size
        start = self.progress.steps * bs % m
        rows = self.order[start : start + bs]
        trace = self.trace(int(rows[0]))
        self._guarded(lambda: self._fit(rows, False))
        return trace

    def _guarded(self, train: Any) -> None:
        try:
            train()
        except DivergenceError as exc:
            self.playing = False
            raise ConfigError(f"training diverged: {exc}") from None

    @property
    def epochs(self) -> int:
        """Whole passes over the training set so far."""
        return self.progress.examples // len(self.data.y)

    # ------------------------------------------------------------------ messages
    def describe(self) -> dict[str, Any]:
        """The ``network`` message: settings, layer sizes, and the data to draw."""
        s, d = self.settings, self.data
        msg: dict[str, Any] = {
            "type": "network",
            "settings": s.as_dict(),
            "sizes": list(self.net.sizes),
            "activations": self.net.activation_names,
            "limits": LIMITS,
            "options": {
                "datasets": list(DATASETS),
                "features": list(FEATURES),
                "activations": list(HIDDEN_ACTIVATIONS),
                "costs": list(COSTS),
                "optimizers": list(OPTIMIZERS),
            },
            "domain": DOMAIN,
            "digits": self.is_digits,
            "train_size": int(len(d.y)),
            "test_size": int(len(d.y_test)),
        }
        if self.is_digits:
            assert d.shown is not None
            msg["images"] = _quantise(d.X_test[d.shown] * 2 - 1)
            msg["image_labels"] = d.y_test[d.shown].tolist()
        else:
            assert d.points is not None
            msg["points"] = _rounded(d.points.tolist(), 4)
            msg["labels"] = np.concatenate([d.y, d.y_test]).tolist()
            msg["feature_maps"] = [_quantise(col / np.abs(col).max()) for col in self._unit_rows.T]
        return msg

    def _layer_outputs(self, X: np.ndarray) -> list[np.ndarray]:
        """``a[1..L]`` of the engine's forward sweep on ``X``."""
        X = self.net.check_X(X)
        ws = backprop.Workspace(self.net, X.shape[0], gradients=False)
        backprop.forward(self.net, ws, X)
        return [a.copy() for a in ws.a[1:]]

    def _score(self, a_L: np.ndarray) -> np.ndarray:
        """The probability of class 1 from a two-class output layer, shape (rows,)."""
        return a_L[:, -1]

    def update(self) -> dict[str, Any]:
        """The ``update`` message: costs, parameters and every heat map, as they are now."""
        net, d = self.net, self.data
        loss, acc = evaluate(net, self.X, d.y)
        test_loss, test_acc = evaluate(net, self.X_test, d.y_test)
        outs = self._layer_outputs(self._unit_rows)
        units = [[_quantise(a[:, j]) for j in range(a.shape[1])] for a in outs[:-1]]
        msg: dict[str, Any] = {
            "type": "update",
            "playing": self.playing,
            "epoch": self.epochs,
            "steps": self.progress.steps,
            "examples": self.progress.examples,
            "loss": _finite(loss),
            "test_loss": _finite(test_loss),
            "accuracy": acc,
            "test_accuracy": test_acc,
            "delta_norms": self.delta_norms[-1] if self.delta_norms else None,
            "weights": _rounded([w.tolist() for w in net.weights], 4),
            "biases": _rounded([b.tolist() for b in net.biases], 4),
        }
        if self.is_digits:
            out = outs[-1]
            units.append([_quantise(out[:, j] * 2 - 1) for j in range(out.shape[1])])
            msg["predictions"] = out.argmax(axis=1).tolist()
        else:
            units.append([_quantise(self._score(outs[-1]) * 2 - 1)])
            boundary = self._score(self._layer_outputs(self._boundary_rows)[-1])
            msg["boundary"] = _quantise(boundary * 2 - 1)
        msg["units"] = units
        return msg

    def trace(self, row: int | None = None) -> dict[str, Any]:
        """The ``trace`` message: one step of the dynamic programme on training row ``row``.

        The engine's :func:`~deltaflow.explain.trace_step` on the current parameters,
        with plain SGD at the current learning rate; ``row`` defaults to the first
        example of the next mini-batch.
        """
        m = len(self.data.y)
        if row is None:
            row = int(self.order[self.progress.steps * self.settings.batch_size % m])
        row = _whole(row, "row", 0, m - 1)
        t = trace_step(
            self.net, self.X[row], self.data.y[row], learning_rate=self.settings.learning_rate
        )
        body = t.as_dict()
        body["counts"]["backward"] = t.counts.backward
        body["counts"]["path_total"] = t.counts.path_total
        body["fd_max_error"] = t.fd_max_error
        msg = {"type": "trace", "row": row, "label": int(self.data.y[row]), "epoch": self.epochs}
        msg["steps"] = self.progress.steps
        if self.data.points is not None:
            msg["point"] = self.data.points[row].tolist()
        msg["trace"] = _rounded(body)
        return msg
