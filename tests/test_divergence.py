"""Divergence stops training with a clear message; large |z| neither overflows nor warns.

pytest runs with ``filterwarnings = error``, so any numpy overflow or invalid-value
warning in the stability tests fails them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.special import logsumexp

from deltaflow import DivergenceError, Network, load
from deltaflow.cli import main
from deltaflow.data import load_digits
from deltaflow.engine.activations import ACTIVATIONS, get_activation
from deltaflow.engine.losses import get_loss

DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.X_train[:500], d.y_train[:500]


def params(net):
    return net.weights + net.biases


def same_bits(a, b):
    return all(x.tobytes() == y.tobytes() for x, y in zip(params(a), params(b)))


# --------------------------------------------------------------------------- divergence
def test_divergence_names_epoch_and_batch_and_restores_the_epoch_start(digits):
    X, y = digits
    kw = dict(batch_size=10, learning_rate=0.5, seed=1)
    net = Network([64, 16, 10], ["tanh", "identity"], seed=0)
    with pytest.raises(DivergenceError) as err:
        net.fit(X, y, epochs=10, **kw)
    msg = str(err.value)
    found = re.search(
        r"cost became (inf|nan) at epoch (\d+), batch (\d+); try a smaller "
        r"learning rate than 0\.5",
        msg,
    )
    assert found, msg
    epoch = int(found.group(2))
    assert epoch >= 2  # so the restored state is a trained one, not the initialisation
    # the parameters are those at the start of that epoch: a run of epoch - 1 epochs
    ref = Network([64, 16, 10], ["tanh", "identity"], seed=0)
    ref.fit(X, y, epochs=epoch - 1, **kw)
    assert same_bits(net, ref)
    assert all(np.isfinite(p).all() for p in params(net))


def test_overflow_in_the_last_update_of_the_last_epoch_is_caught():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(50, 4)), rng.normal(size=(50, 2)) * 100
    net = Network([4, 8, 2], ["tanh", "identity"], seed=0)
    start = [p.copy() for p in params(net)]
    # one batch, one epoch: no later cost would ever be computed on the broken weights
    with (
        np.errstate(over="ignore", invalid="ignore"),
        pytest.raises(DivergenceError, match=r"infinite or NaN in the last batch of epoch 1"),
    ):
        net.fit(X, Y, epochs=1, batch_size=50, learning_rate=1e308)
    assert all(np.array_equal(a, b) for a, b in zip(params(net), start))


CLI_DIVERGES = [
    "train",
    "--quiet",
    "--layers",
    "64,16,10",
    "--activation",
    "tanh,identity",
    "--lr",
    "0.5",
    "--epochs",
    "6",
]


def test_cli_divergence_saves_the_last_finite_model(tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert main([*CLI_DIVERGES, "--save", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    found = re.search(r"epoch (\d+), batch \d+; try a smaller learning rate than 0\.5", err)
    assert found and "saved the last finite weights" in err, err
    epoch = int(found.group(1))
    assert epoch >= 2
    saved = load(out)
    assert all(np.isfinite(p).all() for p in params(saved))
    # the same command stopped one epoch earlier saves exactly those weights
    ref = tmp_path / "ref.safetensors"
    argv = [a if a != "6" else str(epoch - 1) for a in CLI_DIVERGES]
    assert main([*argv, "--save", str(ref)]) == 0
    assert same_bits(saved, load(ref))


def test_cli_divergence_without_save_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(CLI_DIVERGES) == 2
    err = capsys.readouterr().err
    assert "smaller learning rate" in err and "saved" not in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- stability
def extreme_z(dtype):
    """Rows mixing |z| up to 1e4 with ordinary values, and all-equal huge rows."""
    z = np.array(
        [
            [1e4, -1e4, 0.0, 3.0],
            [-1e4, -1e4, -1e4, -1e4],
            [1e4, 1e4, 1e4, 1e4],
            [-9999.0, 1e4, -3.5, 1e4],
            [88.8, -88.8, 709.9, -745.2],  # where exp overflows/underflows in 32/64 bits
        ],
        dtype=dtype,
    )
    return z


@pytest.mark.parametrize("copies", [1, 120])  # 120 copies: 2,400 entries, a large layer
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_are_finite_and_silent_for_large_z(name, dtype, copies):
    g = get_activation(name)
    z = np.tile(extreme_z(dtype), (copies, 1))
    a = g.forward(z.copy(), out=np.empty_like(z))
    assert a.dtype == dtype and np.isfinite(a).all()
    delta = np.ones_like(a)
    g.backprop(a, delta)
    assert np.isfinite(delta).all()
    z64 = z.astype(np.float64)
    if name == "sigmoid":
        assert a[0, 0] == 1 and a[0, 1] == 0 and ((a >= 0) & (a <= 1)).all()
    elif name == "tanh":
        assert a[0, 0] == 1 and a[0, 1] == -1
    elif name == "softmax":
        expected = np.exp(z64 - logsumexp(z64, axis=1, keepdims=True))
        np.testing.assert_allclose(a, expected, rtol=1e-6, atol=1e-30)
        np.testing.assert_allclose(a.sum(axis=1), 1, rtol=1e-6)
        assert a[1, 0] == a[2, 0] == dtype(0.25)  # equal huge inputs share evenly
    elif name in ("relu", "identity"):
        np.testing.assert_array_equal(a, np.maximum(z, 0) if name == "relu" else z)


@pytest.mark.parametrize("dtype", DTYPES)
def test_costs_are_finite_and_silent_for_saturated_outputs(dtype):
    z = extreme_z(dtype)
    y_idx = np.array([1, 0, 3, 0, 3])  # the true class is often the one at -1e4
    y = np.eye(4, dtype=dtype)[y_idx]
    m = z.shape[0]

    soft = get_activation("softmax")
    a = soft.forward(z.copy(), out=np.empty_like(z))
    ce = get_loss("cross_entropy")
    c = ce.value(a, y)
    assert np.isfinite(c) and c > 0
    # exact value where nothing underflows: -log softmax from logsumexp
    z64 = z.astype(np.float64)
    exact = -(z64 - logsumexp(z64, axis=1, keepdims=True))[np.arange(m), y_idx]
    # rows whose true probability underflows are clipped at -log(tiny), a finite cap
    cap = -np.log(np.finfo(dtype).tiny)
    assert c == pytest.approx(np.minimum(exact, cap).mean(), rel=1e-5)
    d = ce.output_delta(a, y, soft, out=np.empty_like(a), scale=1.0 / m)
    assert np.isfinite(d).all()

    sig = get_activation("sigmoid")
    a = sig.forward(z.copy(), out=np.empty_like(z))
    bce = get_loss("binary_cross_entropy")
    c = bce.value(a, y)
    assert np.isfinite(c) and c > 0
    assert np.isfinite(bce.output_delta(a, y, sig, out=np.empty_like(a), scale=1.0 / m)).all()

    se = get_loss("squared_error")
    for g in (sig, get_activation("tanh"), get_activation("identity")):
        a = g.forward(z.copy(), out=np.empty_like(z))
        assert np.isfinite(se.value(a, y))
        assert np.isfinite(se.output_delta(a, y, g, out=np.empty_like(a), scale=1.0 / m)).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "acts, cost",
    [
        ("sigmoid", "squared_error"),
        ("sigmoid", "cross_entropy"),
        ("tanh", "binary_cross_entropy"),
        ("relu", "cross_entropy"),
    ],
)
def test_a_network_with_huge_pre_activations_stays_finite(acts, cost, dtype):
    net = Network([3, 4, 3], acts, cost, dtype=dtype, seed=0)
    for w in net.weights:  # |z| reaches about 1e4 in every layer
        w *= 2500.0 / np.abs(w).max()
    X = np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, 0.5], [0.0, 1.0, -1.0]])
    Y = [0, 2, 1] if cost != "binary_cross_entropy" else np.eye(3)[[0, 2, 1]]
    assert np.isfinite(net.forward(X)).all()
    assert np.isfinite(net.cost(X, Y))
    dtheta, db = net.gradients(X, Y)
    assert all(np.isfinite(g).all() for g in dtheta + db)
