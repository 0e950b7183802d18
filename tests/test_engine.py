"""The engine against the derivation: finite differences, autograd, batch means, training."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaflow import ConfigError, DataError, Network, gradcheck
from deltaflow.data import load_digits

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "identity"]

# (cost, output activation) pairs the engine accepts; squared_error takes any output.
PAIRS = [
    ("squared_error", "sigmoid"),
    ("squared_error", "tanh"),
    ("squared_error", "identity"),
    ("squared_error", "softmax"),
    ("squared_error", "relu"),
    ("cross_entropy", "softmax"),
    ("binary_cross_entropy", "sigmoid"),
]


def targets(rng: np.random.Generator, cost: str, m: int, S_L: int) -> np.ndarray:
    if cost == "cross_entropy":
        return rng.integers(0, S_L, size=m)
    if cost == "binary_cross_entropy":
        return rng.integers(0, 2, size=(m, S_L)).astype(float)
    return rng.standard_normal((m, S_L))


@st.composite
def problems(draw):
    sizes = draw(st.lists(st.integers(1, 5), min_size=2, max_size=5))
    L = len(sizes) - 1
    cost, out = draw(st.sampled_from(PAIRS))
    if cost == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    acts = [draw(st.sampled_from(HIDDEN)) for _ in range(L - 1)] + [out]
    seed = draw(st.integers(0, 2**16))
    m = draw(st.integers(1, 6))
    return sizes, acts, cost, seed, m


def make(sizes, acts, cost, seed, m):
    net = Network(sizes, acts, cost, seed=seed)
    rng = np.random.default_rng(seed + 1)
    # Random biases: with zero biases a dead relu unit feeds exactly z = 0 into the next
    # relu, its kink, where the derivative (and so the finite difference) is undefined.
    for b in net.biases:
        b[...] = rng.uniform(-0.5, 0.5, b.shape)
    X = rng.standard_normal((m, sizes[0]))
    return net, X, targets(rng, cost, m, sizes[-1])


@given(problems())
@settings(max_examples=60)
def test_gradients_match_finite_differences(problem):
    net, X, Y = make(*problem)
    result = gradcheck(net, X, Y, eps=1e-6)
    # A wrong term (a missing g', a transposed Theta, a lost 1/m) shows up at O(1).
    assert result.max_error < 1e-5, str(result)


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    """The tolerance above would catch a real mistake: drop g' from one layer."""
    from deltaflow.engine import activations

    net = Network([3, 4, 2], "tanh", seed=0)
    X = np.random.default_rng(0).standard_normal((5, 3))
    Y = np.random.default_rng(1).standard_normal((5, 2))
    monkeypatch.setattr(activations.Tanh, "backprop", lambda self, a, delta: None)
    assert gradcheck(net, X, Y).max_error > 1e-2


def test_notes_cost_has_no_half_and_means_over_examples():
    net = Network([2, 2], "identity", seed=0)
    net.weights[0][...] = np.eye(2)
    X = np.array([[1.0, 2.0], [0.0, 0.0]])
    Y = np.array([[0.0, 0.0], [1.0, 1.0]])
    # C = (1/2) * [(1^2 + 2^2) + (1 + 1)] = 3.5
    assert net.cost(X, Y) == pytest.approx(3.5)


def test_base_case_and_recursion_by_hand():
    """delta[L] = 2(a - y) g'(z), delta[l] = (delta[l+1] Theta^T) g'(z), one example."""
    net = Network([2, 3, 2], seed=3)
    x, y = np.array([[0.5, -1.0]]), np.array([[1.0, 0.0]])
    sig = lambda u: 1 / (1 + np.exp(-u))  # noqa: E731
    W1, b1, W2, b2 = net.weights[0], net.biases[0], net.weights[1], net.biases[1]
    a1 = sig(x @ W1 + b1)
    a2 = sig(a1 @ W2 + b2)
    d2 = 2 * (a2 - y) * a2 * (1 - a2)
    d1 = (d2 @ W2.T) * a1 * (1 - a1)
    dtheta, db = net.gradients(x, y)
    np.testing.assert_allclose(dtheta[1], a1.T @ d2, rtol=1e-13)
    np.testing.assert_allclose(dtheta[0], x.T @ d1, rtol=1e-13)
    np.testing.assert_allclose(db[1], d2[0], rtol=1e-13)
    np.testing.assert_allclose(db[0], d1[0], rtol=1e-13)


@pytest.mark.parametrize("cost,out", PAIRS)
def test_batch_gradient_is_mean_of_example_gradients(cost, out):
    sizes = [4, 5, 3]
    net, X, Y = make(sizes, ["tanh", out], cost, 7, 6)
    dtheta, db = net.gradients(X, Y)
    per = [net.gradients(X[i : i + 1], Y[i : i + 1]) for i in range(6)]
    for l in range(2):
        np.testing.assert_allclose(dtheta[l], np.mean([p[0][l] for p in per], axis=0), atol=1e-14)
        np.testing.assert_allclose(db[l], np.mean([p[1][l] for p in per], axis=0), atol=1e-14)


def torch_gradients(net, X, Y, acts, cost):
    torch = pytest.importorskip("torch")
    fns = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": torch.nn.functional.leaky_relu,
        "identity": lambda u: u,
        "softmax": lambda u: torch.softmax(u, dim=1),
    }
    Ws = [torch.tensor(w, requires_grad=True) for w in net.weights]
    bs = [torch.tensor(b, requires_grad=True) for b in net.biases]
    a = torch.tensor(X)
    for W, b, g in zip(Ws, bs, acts):
        a = fns[g](a @ W + b)
    Yenc, _ = net.encode_targets(Y, X.shape[0])
    y = torch.tensor(Yenc)
    if cost == "squared_error":
        C = ((a - y) ** 2).sum(dim=1).mean()
    elif cost == "cross_entropy":
        C = -(y * torch.log(a)).sum(dim=1).mean()
    else:
        C = torch.nn.functional.binary_cross_entropy(a, y, reduction="sum") / X.shape[0]
    C.backward()
    return float(C.detach()), [W.grad.numpy() for W in Ws], [b.grad.numpy() for b in bs]


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("cost,out", PAIRS)
def test_autograd_oracle(hidden, cost, out):
    sizes = [6, 7, 5, 4]
    acts = [hidden, hidden, out]
    net, X, Y = make(sizes, acts, cost, 11, 9)
    C_t, dW_t, db_t = torch_gradients(net, X, Y, acts, cost)
    dtheta, db = net.gradients(X, Y)
    assert net.cost(X, Y) == pytest.approx(C_t, rel=1e-12)
    for ours, theirs in zip(dtheta + db, dW_t + db_t):
        scale = max(np.abs(theirs).max(), 1e-300)
        assert np.abs(ours - theirs).max() / scale < 1e-12


def test_float32_gradients_close_to_float64():
    net64 = Network([5, 6, 3], "tanh", "cross_entropy", seed=2)
    net32 = Network([5, 6, 3], "tanh", "cross_entropy", dtype="float32", seed=2)
    for w32, w64 in zip(net32.weights, net64.weights):
        w32[...] = w64
    X = np.random.default_rng(0).standard_normal((8, 5))
    y = np.arange(8) % 3
    g32, g64 = net32.gradients(X, y)[0], net64.gradients(X, y)[0]
    assert all(g.dtype == np.float32 for g in g32)
    for a, b in zip(g32, g64):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n", [100, 4096])  # expit below 2048 float32 entries, 1/(1+e^-z) above
def test_float32_sigmoid_is_exact_to_rounding_and_never_warns(n):
    from scipy.special import expit

    from deltaflow.engine.activations import Sigmoid

    rng = np.random.default_rng(0)
    z = (rng.standard_normal(n) * 30).astype(np.float32)
    z[:6] = [-1e30, -200, -88.8, 88.8, 200, 1e30]  # e^(-z) overflows for the first three
    want = expit(z.astype(np.float64))
    out = np.empty_like(z)
    Sigmoid().forward(z, out)  # warnings are errors in this suite: an overflow would fail
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=2e-7, atol=1e-38)
    assert out[0] == out[1] == 0.0 and out[4] == out[5] == 1.0
    Sigmoid().forward(z, z)  # in place, as the forward sweep calls it
    np.testing.assert_array_equal(z, out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [100, 20000])  # float32: maximum below 16,384 entries, clip above
def test_relu_forward_is_max_with_zero_on_both_paths(n, dtype):
    from deltaflow.engine.activations import ReLU

    z = (np.random.default_rng(0).standard_normal(n) * 10).astype(dtype)
    z[:6] = [np.nan, -np.inf, np.inf, -1e-45, 1e-45, 0.0]
    want = np.where(z > 0, z, 0).astype(dtype)
    want[0] = np.nan
    out = np.empty_like(z)
    ReLU().forward(z, out)
    np.testing.assert_array_equal(out, want)  # NaN where z is NaN, as max(z, 0) gives
    ReLU().forward(z, z)  # in place, as the forward sweep calls it
    np.testing.assert_array_equal(z, want)


def test_initialisation_suits_activation():
    relu = Network([400, 300, 10], "relu", seed=0)
    sig = Network([400, 300, 10], "sigmoid", seed=0)
    # He: std sqrt(2/fan_in); Glorot uniform: std sqrt(2/(fan_in+fan_out))
    assert relu.weights[0].std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert sig.weights[0].std() == pytest.approx(np.sqrt(2 / 700), rel=0.02)
    assert np.abs(sig.weights[0]).max() <= np.sqrt(6 / 700)
    assert all((b == 0).all() for b in relu.biases)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_same_seed_gives_bit_identical_training(optimizer):
    data = load_digits()
    runs = []
    for _ in range(2):
        net = Network([64, 16, 10], seed=5)
        net.fit(
            data.X_train[:300],
            data.y_train[:300],
            epochs=3,
            batch_size=16,
            learning_rate=0.5 if optimizer != "adam" else 0.01,
            optimizer=optimizer,
            validation_split=0.1,
            weight_decay=1e-4,
        )
        runs.append(net)
    for a, b in zip(runs[0].weights + runs[0].biases, runs[1].weights + runs[1].biases):
        assert np.array_equal(a, b)
    other = Network([64, 16, 10], seed=6)
    assert not np.array_equal(other.weights[0], runs[0].weights[0])


def test_notes_network_learns_the_digits():
    data = load_digits()
    net = Network([64, 30, 10], seed=0)  # sigmoid, squared error, plain SGD
    history = net.fit(data.X_train, data.y_train, epochs=30, batch_size=10, learning_rate=3.0)
    accuracy = (net.predict(data.X_test) == data.y_test).mean()
    assert accuracy >= 0.95
    assert history.cost[-1] < history.cost[0] / 3
    assert len(history) == 30 and history.val_cost == [None] * 30


@pytest.mark.parametrize(
    "opt,lr,cost,act",
    [
        ("momentum", 0.05, "cross_entropy", "relu"),
        ("adam", 0.005, "cross_entropy", "tanh"),
        ("nesterov", 0.3, "squared_error", "sigmoid"),
    ],
)
def test_optimizers_train_the_digits(opt, lr, cost, act):
    data = load_digits()
    net = Network([64, 32, 10], act, cost, seed=1)
    net.fit(data.X_train, data.y_train, epochs=15, batch_size=16, learning_rate=lr, optimizer=opt)
    assert (net.predict(data.X_test) == data.y_test).mean() >= 0.94


def test_regression_targets_and_one_hot_targets():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 2))
    y = np.sin(X[:, 0]) + X[:, 1] ** 2
    net = Network([2, 16, 1], ["tanh", "identity"], seed=0)
    h = net.fit(X, y, epochs=60, batch_size=16, learning_rate=0.05, optimizer="momentum")
    assert h.accuracy[-1] is None
    assert net.cost(X, y) < 0.01
    onehot = np.eye(3)[[0, 1, 2, 1]]
    clf = Network([2, 3], "sigmoid", seed=0)
    assert clf.encode_targets(onehot, 4)[1] is True
    np.testing.assert_array_equal(clf.encode_targets([0, 1, 2, 1], 4)[0], onehot)


def test_validation_early_stopping_restores_best_epoch():
    data = load_digits()
    net = Network([64, 64, 10], "relu", "cross_entropy", seed=0)
    seen = []
    h = net.fit(
        data.X_train,
        data.y_train,
        epochs=200,
        batch_size=8,
        learning_rate=0.3,
        validation_split=0.2,
        early_stopping=True,
        patience=3,
        callbacks=[seen.append],
    )
    assert h.stopped_early and len(h) < 200
    assert [r.epoch for r in seen] == h.epoch
    best = int(np.argmin(h.val_cost))
    assert h.best_epoch == best + 1
    assert all(v >= h.val_cost[best] - 0 for v in h.val_cost[best + 1 :][:3])


def test_callback_can_stop_and_schedule_changes_rate():
    data = load_digits()
    net = Network([64, 10], seed=0)
    h = net.fit(
        data.X_train,
        data.y_train,
        epochs=10,
        learning_rate=1.0,
        schedule="step",
        step_size=2,
        gamma=0.5,
        callbacks=[lambda r: r.epoch == 5],
    )
    assert len(h) == 5 and h.stopped_early
    assert h.learning_rate == [1.0, 1.0, 0.5, 0.5, 0.25]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"sizes": [3]}, "at least two"),
        ({"sizes": [3, 0, 2]}, "at least 1 unit"),
        ({"sizes": [3, 2.5]}, "whole numbers"),
        ({"activation": "swish"}, "unknown activation 'swish'"),
        ({"activation": ["relu"]}, "one per layer"),
        ({"cost": "hinge"}, "unknown cost 'hinge'"),
        ({"cost": "cross_entropy", "activation": ["relu", "relu"]}, "softmax output"),
        ({"dtype": "float16"}, "float32' or 'float64"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_bad_configuration(kwargs, match):
    args = {"sizes": [3, 4, 2], **kwargs}
    with pytest.raises(ConfigError, match=match):
        Network(args.pop("sizes"), **args)


@pytest.mark.parametrize(
    "X,Y,match",
    [
        (np.zeros((4, 3)), np.zeros(5, int), "X has 4 rows but Y has 5"),
        (np.zeros((4, 2)), np.zeros(4, int), "2 features but the input layer has 3"),
        (np.full((4, 3), np.nan), np.zeros(4, int), "NaN or infinite"),
        (np.zeros((4, 3)), np.array([0, 1, 2, 1]), "label 2 but the output layer has 2"),
        (np.zeros((4, 3)), np.array([0, -1, 1, 1]), "label -1"),
        (np.zeros((0, 3)), np.zeros(0, int), "empty"),
        (np.zeros((4, 3)), np.zeros((4, 5)), "shape"),
    ],
)
def test_bad_data(X, Y, match):
    net = Network([3, 4, 2], seed=0)
    with pytest.raises(DataError, match=match):
        net.fit(X, Y, epochs=1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -2}, "batch_size"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
        ({"schedule": "linear"}, "unknown schedule"),
        ({"validation_split": 1.5}, "validation_split"),
        ({"early_stopping": True}, "needs validation data"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    net = Network([3, 2], seed=0)
    with pytest.raises(ConfigError, match=match):
        net.fit(np.zeros((4, 3)), [0, 1, 0, 1], **kwargs)
