"""The scikit-learn estimators (deltaflow.estimators) and the engine's sample weights."""

from __future__ import annotations

import numpy as np
import pytest

from deltaflow import DataError, Network, backprop
from deltaflow.train import fit

# --------------------------------------------------------------- engine: sample weights


def _problem(cost: str, m: int = 7, seed: int = 0) -> tuple[Network, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    act = {"squared_error": "tanh", "cross_entropy": "tanh", "binary_cross_entropy": "relu"}[cost]
    net = Network([4, 5, 3], act, cost, seed=seed + 1)
    X = rng.standard_normal((m, 4))
    if cost == "squared_error":
        Y = rng.standard_normal((m, 3))
    elif cost == "cross_entropy":
        Y = np.eye(3)[rng.integers(0, 3, m)]
    else:
        Y = (rng.random((m, 3)) > 0.5).astype(float)
    return net, X, Y


@pytest.mark.parametrize("cost", ["squared_error", "cross_entropy", "binary_cross_entropy"])
def test_weighted_backward_matches_finite_differences(cost: str) -> None:
    net, X, Y = _problem(cost)
    w = np.array([2.0, 0.0, 1.0, 3.0, 0.5, 1.0, 4.0])
    ws = backprop.Workspace(net, X.shape[0])

    def weighted_cost() -> float:
        return net.loss.value(backprop.forward(net, ws, X), Y, w)

    backprop.forward(net, ws, X)
    backprop.backward(net, ws, Y, w)
    analytic = [g.copy() for g in ws.dtheta + ws.db]
    h = 1e-6
    for p, g in zip(net.weights + net.biases, analytic):
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            p[i] += h
            up = weighted_cost()
            p[i] -= 2 * h
            down = weighted_cost()
            p[i] += h
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cost", ["squared_error", "cross_entropy", "binary_cross_entropy"])
def test_integer_weights_equal_repeated_rows(cost: str) -> None:
    net, X, Y = _problem(cost)
    w = np.array([2, 0, 1, 3, 1, 1, 4])
    ws = backprop.Workspace(net, X.shape[0])
    backprop.forward(net, ws, X)
    backprop.backward(net, ws, Y, w.astype(float))
    repeated_theta, repeated_b = net.gradients(np.repeat(X, w, 0), np.repeat(Y, w, 0))
    for g, r in zip(ws.dtheta + ws.db, repeated_theta + repeated_b):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15)
    a = backprop.forward(net, ws, X)
    assert net.loss.value(a, Y, w.astype(float)) == pytest.approx(
        net.cost(np.repeat(X, w, 0), np.repeat(Y, w, 0)), rel=1e-13
    )


def test_weighted_full_batch_training_equals_repeated_rows() -> None:
    net, X, Y = _problem("cross_entropy", m=9)
    w = np.array([2, 0, 1, 3, 1, 1, 4, 2, 1])
    Xr, Yr = np.repeat(X, w, 0), np.repeat(Y, w, 0)
    a, b = net.copy(), net.copy()
    kw = dict(epochs=5, learning_rate=0.5, optimizer="adam", weight_decay=0.01, seed=0)
    ha = fit(a, X, Y, sample_weight=w, batch_size=X.shape[0], **kw)
    hb = fit(b, Xr, Yr, batch_size=Xr.shape[0], **kw)
    np.testing.assert_allclose(ha.cost, hb.cost, rtol=1e-12)
    for p, q in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)


def test_unit_weights_train_like_no_weights() -> None:
    net, X, Y = _problem("squared_error", m=12)
    a, b = net.copy(), net.copy()
    kw = dict(epochs=3, batch_size=5, learning_rate=0.05, seed=3)
    ha = fit(a, X, Y, sample_weight=np.ones(12), **kw)
    hb = fit(b, X, Y, **kw)
    np.testing.assert_allclose(ha.cost, hb.cost, rtol=1e-12)
    np.testing.assert_allclose(a.weights[0], b.weights[0], rtol=1e-12)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones(3), "shape"),
        (-np.ones(7), "non-negative"),
        (np.full(7, np.nan), "finite"),
        (np.zeros(7), "zero for every training row"),
    ],
)
def test_bad_sample_weights_are_refused(weights: np.ndarray, message: str) -> None:
    net, X, Y = _problem("squared_error")
    with pytest.raises(DataError, match=message):
        fit(net, X, Y, sample_weight=weights, epochs=1)
