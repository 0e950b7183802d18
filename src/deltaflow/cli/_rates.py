"""Learning rates for ``deltaflow train``: the default table and ``--lr auto``.

The default depends on the optimizer and on the network: the notes' network (sigmoid
units, squared-error cost) wants a large plain-SGD step, alpha = 3 as in Nielsen's book;
hidden units that do not saturate (tanh, ReLU, leaky ReLU, identity) want a far smaller
one; momentum and Nesterov multiply each step by about 1 / (1 - 0.9) = 10 and take a
tenth of it; Adam normalises its steps and wants about 0.01 or 0.001.
"""

from __future__ import annotations

import math

import numpy as np

from deltaflow.errors import DivergenceError
from deltaflow.network import Network
from deltaflow.training.loop import evaluate, fit

# (optimizer, network family) -> default learning rate; see family().
DEFAULT_LR: dict[tuple[str, str], float] = {}
FAMILIES = {
    "notes": "sigmoid units, squared error (the notes' network)",
    "sigmoid_ce": "sigmoid hidden units, a cross-entropy cost",
    "unsaturating": "a tanh, relu, leaky_relu or identity hidden layer, sigmoid or softmax out",
    "unbounded_out": "a tanh, relu, leaky_relu or identity output layer",
}
_RATES = {  # sgd, momentum and nesterov, adam
    "notes": (3.0, 0.05, 0.01),
    "sigmoid_ce": (0.5, 0.05, 0.01),
    "unsaturating": (0.1, 0.01, 0.001),
    "unbounded_out": (0.01, 0.001, 0.001),
}
for _fam, (_sgd, _mom, _adam) in _RATES.items():
    DEFAULT_LR.update(
        {("sgd", _fam): _sgd, ("momentum", _fam): _mom, ("nesterov", _fam): _mom},
    )
    DEFAULT_LR[("adam", _fam)] = _adam
# --lr auto tries these rates, each for a short run on a slice of the training data.
RANGE = tuple(float(f"{m}e{e}") for e in range(-4, 1) for m in (1, 3)) + (10.0,)
RANGE_ROWS = 1000
RANGE_EPOCHS = 2


def family(net: Network) -> str:
    """The row of the table a network belongs to."""
    names = net.activation_names
    if names[-1] not in ("sigmoid", "softmax"):
        return "unbounded_out"
    if any(name != "sigmoid" for name in names[:-1]):
        return "unsaturating"
    return "notes" if net.loss.name == "squared_error" else "sigmoid_ce"


def default_learning_rate(optimizer: str, net: Network) -> float:
    """The table's rate for ``optimizer`` and ``net`` (1 for lbfgs, whose line search
    chooses each step and never reads it)."""
    if optimizer == "lbfgs":
        return 1.0
    return DEFAULT_LR[(optimizer, family(net))]


def table_text() -> str:
    """The table, for ``train --help``."""
    rows = []
    for fam, words in FAMILIES.items():
        rates = ", ".join(
            f"{opt} {DEFAULT_LR[(opt, fam)]:g}" for opt in ("sgd", "momentum", "nesterov", "adam")
        )
        rows.append(f"{words}: {rates}")
    return "; ".join(rows)


def range_test(
    net: Network, X: np.ndarray, y: np.ndarray, *, optimizer: str, batch_size: int, seed: int
) -> tuple[float, dict[float, float]]:
    """A learning-rate range test: train copies of ``net`` for a short run at each rate
    of :data:`RANGE` on a slice of the data, and pick a rate a third of the one whose
    cost fell lowest (the best rate is near the edge of stability).

    Returns
    -------
    rate : float
    costs : dict
        The cost each tried rate reached (inf where it diverged).
    """
    rng = np.random.default_rng(seed)
    rows = rng.permutation(X.shape[0])[:RANGE_ROWS]
    Xs, ys = X[rows], y[rows]
    costs: dict[float, float] = {}
    for rate in RANGE:
        trial = net.copy()
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                fit(
                    trial,
                    Xs,
                    ys,
                    epochs=RANGE_EPOCHS,
                    batch_size=batch_size,
                    learning_rate=rate,
                    optimizer=optimizer,
                    seed=seed,
                )
                cost, _ = evaluate(trial, Xs, ys)
        except DivergenceError:
            cost = math.inf
        costs[rate] = cost if math.isfinite(cost) else math.inf
    best = min(costs, key=lambda r: (costs[r], r))
    return best / 3.0, costs
