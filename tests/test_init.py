"""Initialisations by name: the default unchanged, and each one's mean and variance."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from deltaflow import ConfigError, Network
from deltaflow.estimators import MLPClassifier
from deltaflow.initializers import INITIALIZERS, get_initializer


def _old_default(sizes, names, dtype, seed):
    """The default initialisation as first written: the oracle for bit-identity."""
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for l in range(1, len(sizes)):
        fan_in, fan_out = sizes[l - 1], sizes[l]
        if names[l - 1] in ("relu", "leaky_relu"):
            theta = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        else:
            r = np.sqrt(6.0 / (fan_in + fan_out))
            theta = rng.uniform(-r, r, size=(fan_in, fan_out))
        weights.append(theta.astype(dtype))
        biases.append(np.zeros(fan_out, dtype=dtype))
    return weights, biases


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "activation",
    [["sigmoid"] * 3, ["relu", "relu", "identity"], ["leaky_relu", "tanh", "softmax"]],
)
def test_default_is_bit_identical_to_the_first_formula(activation, dtype) -> None:
    sizes = [13, 11, 7, 5]
    for seed in (0, 1, 12345):
        net = Network(sizes, activation, dtype=dtype, seed=seed)
        weights, biases = _old_default(sizes, activation, dtype, seed)
        assert net.init == "default"
        for got, want in zip(net.weights + net.biases, weights + biases):
            assert got.dtype == np.dtype(dtype)
            assert got.tobytes() == want.tobytes()
        named = Network(sizes, activation, dtype=dtype, seed=seed, init="default")
        assert all(np.array_equal(a, b) for a, b in zip(named.weights, net.weights))


# (name, hidden activation, expected (mean, variance) of Theta, and of b, for a layer
# with fan_in inputs and fan_out outputs)
def _expected(name: str, hidden: str, fan_in: int, fan_out: int):
    glorot = 2.0 / (fan_in + fan_out)
    if name == "glorot_uniform":
        return glorot, 0.0
    if name == "he_normal":
        return 2.0 / fan_in, 0.0
    if name == "default":
        return (2.0 / fan_in if hidden in ("relu", "leaky_relu") else glorot), 0.0
    if name == "sklearn":
        k = 2.0 if hidden == "sigmoid" else 6.0
        var = k / (fan_in + fan_out) / 3.0
        return var, var
    if name == "torch":
        return 1.0 / (3.0 * fan_in), 1.0 / (3.0 * fan_in)
    if name == "nielsen":
        return 1.0, 1.0
    raise AssertionError(name)


@pytest.mark.parametrize("hidden", ["sigmoid", "relu"])
@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_mean_and_variance_match_the_formula(name: str, hidden: str) -> None:
    fan_in, fan_out = 40, 25_000  # a million weights, 25,000 biases per draw
    net = Network([fan_in, fan_out, 3], hidden, "squared_error", seed=7, init=name)
    theta, b = net.weights[0], net.biases[0]
    var_theta, var_b = _expected(name, hidden, fan_in, fan_out)
    # standard errors: sd/sqrt(n) for the mean; the variance's relative error is
    # sqrt((kurtosis - 1)/n), below 2/sqrt(n) for the uniform and the normal
    for x, var in ((theta, var_theta), (b, var_b)):
        if var == 0.0:
            assert not x.any()
            continue
        n = x.size
        assert abs(x.mean()) < 5 * np.sqrt(var / n)
        assert x.var() == pytest.approx(var, rel=10 / np.sqrt(n))
    if name in ("glorot_uniform", "sklearn", "torch") or (name == "default" and hidden != "relu"):
        r = np.sqrt(3 * var_theta)  # a uniform U(-r, r) has variance r^2 / 3
        assert np.abs(theta).max() <= r
        assert np.abs(theta).max() > 0.999 * r


def test_sklearn_rule_uses_the_hidden_activation_for_the_output_layer_too() -> None:
    # scikit-learn draws every layer with k = 2 when the hidden layers are logistic
    net = Network([30, 20, 10], "sigmoid", "cross_entropy", seed=0, init="sklearn")
    assert net.activation_names == ["sigmoid", "softmax"]
    r_out = np.sqrt(2.0 / (20 + 10))
    assert r_out * 0.9 < np.abs(net.weights[1]).max() <= r_out
    tanh = Network([30, 20, 10], "tanh", "cross_entropy", seed=0, init="sklearn")
    assert np.abs(tanh.weights[1]).max() > r_out  # k = 6 gives a wider interval


def test_each_init_is_reproducible_and_in_the_network_dtype() -> None:
    for name in INITIALIZERS:
        a = Network([6, 5, 2], "tanh", dtype="float32", seed=3, init=name)
        b = Network([6, 5, 2], "tanh", dtype="float32", seed=3, init=name)
        for x, y in zip(a.weights + a.biases, b.weights + b.biases):
            assert x.dtype == np.float32
            assert np.array_equal(x, y)


def test_unknown_init_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown init 'xavier'; choose one of: default"):
        Network([3, 2], init="xavier")
    with pytest.raises(ConfigError, match="init must be a name"):
        get_initializer(3)  # type: ignore[arg-type]
    assert get_initializer("He_Normal") is INITIALIZERS["he_normal"]


def test_estimators_start_from_the_sklearn_rule() -> None:
    # one epoch at a negligible learning rate leaves the initial parameters visible:
    # scikit-learn's rule draws the biases too, from U(-r, r)
    X = np.random.default_rng(0).normal(size=(40, 8))
    y = np.arange(40) % 3
    clf = MLPClassifier((50,), solver="sgd", learning_rate_init=1e-12, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    r = np.sqrt(6.0 / (8 + 50))
    b = clf.intercepts_[0]
    assert 0.8 * r < np.abs(b).max() <= r * (1 + 1e-9)
    assert 0.8 * r < np.abs(clf.coefs_[0]).max() <= r * (1 + 1e-9)
