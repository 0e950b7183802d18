"""deltaflow's estimators against scikit-learn's MLP on the same data: L-BFGS, sparse
input, the Poisson loss, assignable weights, and the errors scikit-learn raises."""

from __future__ import annotations

import tracemalloc
import warnings
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn")
from scipy import sparse  # noqa: E402
from scipy.special import xlogy  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SklearnMLPRegressor  # noqa: E402

import deltaflow  # noqa: E402
from deltaflow import ConfigError, DataError, DivergenceError, Network, gradcheck  # noqa: E402
from deltaflow.cli import main  # noqa: E402
from deltaflow.data import load_digits  # noqa: E402
from deltaflow.engine.activations import get_activation  # noqa: E402
from deltaflow.engine.losses import get_loss  # noqa: E402
from deltaflow.estimators import MLPClassifier, MLPRegressor  # noqa: E402

_rng = np.random.default_rng(0)
_X = _rng.standard_normal((60, 5))
# (ours, theirs, targets, k) with deltaflow's cost C = k * scikit-learn's loss
_TARGETS = {
    "multiclass": (MLPClassifier, SklearnMLPClassifier, _rng.integers(0, 3, 60), 1.0),
    "binary": (
        MLPClassifier,
        SklearnMLPClassifier,
        np.array(["no", "yes"])[_rng.integers(0, 2, 60)],
        1.0,
    ),
    "regression": (
        MLPRegressor,
        SklearnMLPRegressor,
        2 * _X[:, 0] - _X[:, 1] ** 2 + 0.1 * _rng.standard_normal(60),
        2.0,
    ),
    "poisson": (MLPRegressor, SklearnMLPRegressor, _rng.poisson(np.exp(0.5 * _X[:, 0])), 1.0),
}
_WEIGHTS = _rng.integers(1, 4, 60).astype(float)


def _pair(target: str, weighted: bool, **settings: Any) -> tuple[Any, Any, np.ndarray, Any]:
    """Both estimators fitted once (max_iter=1), then holding scikit-learn's weights."""
    ours, theirs, y, _ = _TARGETS[target]
    if target == "poisson":
        settings["loss"] = "poisson"
    w = _WEIGHTS if weighted else None
    first = {**settings, "max_iter": 1, "warm_start": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = ours(**first).fit(_X, y, sample_weight=w)
        b = theirs(**first).fit(_X, y, sample_weight=w)
    a.coefs_ = b.coefs_  # copied into deltaflow's network: the same starting weights
    a.intercepts_ = b.intercepts_
    a.set_params(max_iter=settings.get("max_iter", 200))
    b.set_params(max_iter=settings.get("max_iter", 200))
    return a, b, y, w


def _sklearn_objective(est: Any, k: float, alpha: float, total: float) -> float:
    """scikit-learn's L-BFGS ``loss_`` from deltaflow's: ``C/k + alpha/(2 sum w) ||W||^2``."""
    penalty = sum(float(np.vdot(c, c)) for c in est.coefs_)
    return est.loss_ / k + 0.5 * alpha * penalty / total


# ------------------------------------------------------------------------------ L-BFGS


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("target", list(_TARGETS))
def test_lbfgs_takes_sklearns_steps_and_reaches_its_loss(target: str, weighted: bool) -> None:
    """From the same weights: five iterations agree to rounding, and run to convergence
    both reach the same loss within 1e-6 relative."""
    k = _TARGETS[target][3]
    settings = dict(
        hidden_layer_sizes=(6,), activation="tanh", solver="lbfgs", alpha=1.0, random_state=0
    )
    total = _WEIGHTS.sum() if weighted else 60.0
    a, b, y, w = _pair(target, weighted, max_iter=5, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a.fit(_X, y, sample_weight=w)
        b.fit(_X, y, sample_weight=w)
    assert a.n_iter_ == b.n_iter_ == 5
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)
    assert _sklearn_objective(a, k, 1.0, total) == pytest.approx(b.loss_, rel=1e-12)

    a, b, y, w = _pair(target, weighted, max_iter=3000, tol=1e-12, max_fun=100_000, **settings)
    a.fit(_X, y, sample_weight=w)
    b.fit(_X, y, sample_weight=w)
    assert _sklearn_objective(a, k, 1.0, total) == pytest.approx(b.loss_, rel=1e-6)
    assert len(a.loss_curve_) == a.n_iter_ and a.loss_curve_[-1] == a.loss_


def test_lbfgs_on_the_digits_is_as_accurate_as_sklearns() -> None:
    """From the same initial weights, 60 iterations on the digits' training set."""
    d = load_digits()
    settings = dict(hidden_layer_sizes=(16,), solver="lbfgs", random_state=0, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**settings, max_iter=1).fit(d.X_train, d.y_train)
        theirs = SklearnMLPClassifier(**settings, max_iter=1).fit(d.X_train, d.y_train)
        ours.coefs_, ours.intercepts_ = theirs.coefs_, theirs.intercepts_
        ours.set_params(max_iter=60).fit(d.X_train, d.y_train)
        theirs.set_params(max_iter=60).fit(d.X_train, d.y_train)
    acc_ours, acc_theirs = ours.score(d.X_test, d.y_test), theirs.score(d.X_test, d.y_test)
    print(f"digits, lbfgs: deltaflow {acc_ours:.4f}, scikit-learn {acc_theirs:.4f}")
    assert acc_ours > 0.93 and abs(acc_ours - acc_theirs) <= 0.01


def test_lbfgs_iterations_warning_and_partial_fit_as_sklearn() -> None:
    y = _TARGETS["multiclass"][2]
    settings = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=3, random_state=0)
    for est in (MLPClassifier(**settings), SklearnMLPClassifier(**settings)):
        with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 3 iter"):
            est.fit(_X, y)
        assert est.n_iter_ == 3
        assert not hasattr(est, "partial_fit")  # only the stochastic solvers have it
    ours = MLPClassifier(**settings)
    with pytest.warns(ConvergenceWarning):
        assert len(ours.fit(_X, y).loss_curve_) == 3
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as err:
        ours.partial_fit(_X, y)
    assert "only available for stochastic optimizers" in str(err.value.__cause__)
    # converged well before max_iter: no warning, n_iter_ counts the iterations run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        done = MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=5000, random_state=0)
        done.fit(_X, _X[:, 0] + _X[:, 1])
    assert done.n_iter_ == len(done.loss_curve_) < 5000


def test_fit_with_lbfgs_counts_iterations_as_epochs() -> None:
    d = load_digits()
    net = Network([64, 20, 10], "tanh", "cross_entropy", seed=0)
    seen: list[int] = []
    history = deltaflow.fit(
        net,
        d.X_train,
        d.y_train,
        optimizer="lbfgs",
        epochs=25,
        weight_decay=1e-3,
        validation_split=0.1,
        callbacks=[lambda rec: seen.append(rec.epoch)],
    )
    assert history.epoch == seen == list(range(1, 26))
    assert history.cost[-1] < 0.3 * history.cost[0]
    assert np.isnan(history.learning_rate).all()
    assert history.accuracy[-1] == pytest.approx(
        np.mean(net.predict(d.X_train[: len(d.X_train)]) == d.y_train), abs=0.2
    )
    # the cost recorded for the last iteration is the network's cost at its end
    stopped = Network([64, 20, 10], "tanh", "cross_entropy", seed=0)
    h = deltaflow.fit(stopped, d.X_train, d.y_train, optimizer="lbfgs", epochs=4)
    assert h.cost[-1] == pytest.approx(stopped.cost(d.X_train, d.y_train), rel=1e-12)
    with pytest.raises(ConfigError, match="checkpoint_dir is not available"):
        deltaflow.fit(stopped, d.X_train, d.y_train, optimizer="lbfgs", checkpoint_dir="x")


def test_cli_trains_with_lbfgs(tmp_path: Any, capsys: Any) -> None:
    model = tmp_path / "m.safetensors"
    argv = ["train", "--optimizer", "lbfgs", "--epochs", "20", "--cost", "cross_entropy"]
    assert main([*argv, "--activation", "tanh", "--save", str(model)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and model.exists()
    acc = float(out.split("test accuracy ")[1].split("%")[0])
    assert acc > 85.0


# ------------------------------------------------------------------------ sparse input


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_sparse_and_dense_input_give_the_same_weights(fmt: str, solver: str) -> None:
    X = _X * (_rng.random(_X.shape) < 0.3)
    Xs = sparse.csr_matrix(X) if fmt == "csr" else sparse.csc_matrix(X)
    y = _TARGETS["multiclass"][2]
    settings = dict(
        hidden_layer_sizes=(7,), solver=solver, batch_size=16, max_iter=4, alpha=0.1,
        random_state=0, early_stopping=solver == "adam", validation_fraction=0.2,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPClassifier(**settings).fit(X, y)
        sparse_fit = MLPClassifier(**settings).fit(Xs, y)
    for p, q in zip(dense.coefs_ + dense.intercepts_, sparse_fit.coefs_ + sparse_fit.intercepts_):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sparse_fit.predict_proba(Xs), dense.predict_proba(X), atol=1e-12)
    if solver != "lbfgs":
        dense.set_params(early_stopping=False).partial_fit(X, y)
        sparse_fit.set_params(early_stopping=False)
        sparse_fit.partial_fit(Xs, y)
        np.testing.assert_allclose(sparse_fit.coefs_[0], dense.coefs_[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("weighted", [False, True])
def test_fit_on_sparse_rows_equals_fit_on_dense(optimizer: str, weighted: bool) -> None:
    """deltaflow.fit itself: plain SGD fused into the backward pass (weighted or not) and
    Adam, with a validation split and evaluate, sparse against dense."""
    X = _X * (_rng.random(_X.shape) < 0.3)
    y = _TARGETS["multiclass"][2]
    w = _WEIGHTS if weighted else None
    nets = [Network([5, 4, 3], "tanh", "cross_entropy", seed=1) for _ in range(2)]
    histories = [
        deltaflow.fit(
            net,
            data,
            y,
            sample_weight=w,
            epochs=3,
            batch_size=7,
            optimizer=optimizer,
            learning_rate=0.1,
            weight_decay=0.01,
            validation_split=0.2,
            seed=0,
        )  # fmt: skip
        for net, data in zip(nets, (X, sparse.csr_matrix(X)))
    ]
    np.testing.assert_allclose(nets[1].params, nets[0].params, rtol=0, atol=1e-13)
    assert histories[1].cost == pytest.approx(histories[0].cost, rel=1e-12)
    assert histories[1].val_cost == pytest.approx(histories[0].val_cost, rel=1e-12)
    assert deltaflow.evaluate(nets[1], sparse.csc_matrix(X), y) == pytest.approx(
        deltaflow.evaluate(nets[1], X, y), rel=1e-12
    )


def test_sparse_epochs_match_sklearn_from_the_same_weights() -> None:
    Xs = sparse.csr_matrix(_X * (_rng.random(_X.shape) < 0.3))
    y = _TARGETS["regression"][2]
    settings = dict(
        hidden_layer_sizes=(6,), activation="tanh", solver="sgd", momentum=0.0,
        batch_size=60, learning_rate_init=0.05, shuffle=False, alpha=0.3, random_state=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPRegressor(**settings, max_iter=1, warm_start=True).fit(Xs, y)
        b = SklearnMLPRegressor(**settings, max_iter=1, warm_start=True).fit(Xs, y)
        a.coefs_, a.intercepts_ = b.coefs_, b.intercepts_
        a.set_params(max_iter=3).fit(Xs, y)
        b.set_params(max_iter=3).fit(Xs, y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-13)


def test_sparse_input_is_never_densified() -> None:
    """50,000 features: a dense copy of X would take 40 MB, the fit stays far below."""
    n, features = 100, 50_000
    rng = np.random.default_rng(1)
    X = sparse.random(n, features, density=1e-4, format="csr", random_state=1)
    y = rng.integers(0, 2, n)
    tracemalloc.start()
    try:
        clf = MLPClassifier((2,), solver="sgd", max_iter=2, random_state=0, batch_size=50)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        clf.predict(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    weights = features * 2 * 8
    assert peak < 8 * weights < n * features * 8 / 4


# ------------------------------------------------------------------------- Poisson loss


def test_poisson_cost_and_its_base_case() -> None:
    """The registry's Poisson cost is scikit-learn's half deviance; delta[L] = a - y
    passes the finite-difference check."""
    rng = np.random.default_rng(2)
    a, y = np.exp(rng.standard_normal((9, 2))), rng.poisson(1.5, (9, 2)).astype(float)
    loss = get_loss("poisson")
    half_deviance = (xlogy(y, y / a) - y + a).sum(axis=1)
    assert loss.value(a, y) == pytest.approx(half_deviance.mean(), rel=1e-13)
    w = rng.random(9)
    assert loss.value(a, y, w) == pytest.approx(np.average(half_deviance, weights=w), rel=1e-13)
    out = np.empty_like(a)
    np.testing.assert_allclose(loss.output_delta(a, y, get_activation("exp"), out, 1.0), a - y)
    net = Network([4, 5, 2], "tanh", "poisson", seed=3)
    assert net.activation_names == ["tanh", "exp"]
    assert gradcheck(net, rng.standard_normal((9, 4)), y).ok(1e-7)
    with pytest.raises(ConfigError, match="poisson cost needs a exp output"):
        Network([4, 5, 2], ["tanh", "identity"], "poisson")


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_poisson_regression_matches_sklearn(solver: str) -> None:
    y = _TARGETS["poisson"][2]
    settings = dict(
        loss="poisson", hidden_layer_sizes=(6,), activation="tanh", solver=solver,
        momentum=0.0, batch_size=60, learning_rate_init=0.02, shuffle=False, alpha=0.0,
        epsilon=1e-15, random_state=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPRegressor(**settings, max_iter=1, warm_start=True).fit(_X, y)
        b = SklearnMLPRegressor(**settings, max_iter=1, warm_start=True).fit(_X, y)
        a.coefs_, a.intercepts_ = b.coefs_, b.intercepts_
        a.set_params(max_iter=3).fit(_X, y)
        b.set_params(max_iter=3).fit(_X, y)
    assert a.out_activation_ == b.out_activation_ == "exp"
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-9 if solver == "adam" else 1e-13)
    # the same loss (k = 1) after the first fit, which started from other weights
    assert a.loss_curve_[1:] == pytest.approx(b.loss_curve_[1:], rel=1e-12)
    np.testing.assert_allclose(a.predict(_X), b.predict(_X), rtol=1e-9)
    with pytest.raises(DataError, match="negative which is not allowed for Poisson"):
        MLPRegressor(loss="poisson").fit(_X, -y)


# ------------------------------------------------------------------- assignable weights


def test_assigned_weights_are_copied_into_the_network() -> None:
    y = _TARGETS["regression"][2]
    est = MLPRegressor(hidden_layer_sizes=(4, 3), max_iter=1, random_state=0)
    with pytest.raises(NotFittedError, match="call fit first"):
        est.coefs_ = [np.zeros((5, 4))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(_X, y)
    views = est.coefs_ + est.intercepts_
    new_coefs = [np.full(c.shape, 0.01 * (i + 1)) for i, c in enumerate(est.coefs_)]
    new_intercepts = [np.full(b.shape, -0.5) for b in est.intercepts_]
    est.coefs_ = new_coefs
    est.intercepts_ = new_intercepts
    assert all(p is q for p, q in zip(est.coefs_ + est.intercepts_, views))  # same arrays
    assert all(np.shares_memory(p, est.network_.params) for p in views)
    for p, q in zip(est.coefs_ + est.intercepts_, new_coefs + new_intercepts):
        np.testing.assert_array_equal(p, q)
        assert p is not q
    expected = np.maximum(np.maximum(_X @ new_coefs[0] - 0.5, 0) @ new_coefs[1] - 0.5, 0)
    np.testing.assert_allclose(est.predict(_X), expected @ new_coefs[2][:, 0] - 0.5)
    with pytest.raises(ValueError, match=r"coefs_\[1\] has shape \(4, 4\) but layer 2 needs"):
        est.coefs_ = [new_coefs[0], np.zeros((4, 4)), new_coefs[2]]
    with pytest.raises(ValueError, match="must hold 3 arrays, one per layer, got 2"):
        est.intercepts_ = new_intercepts[:2]
    with pytest.raises(ValueError, match="finite"):
        est.intercepts_ = [np.full(b.shape, np.nan) for b in new_intercepts]
    np.testing.assert_array_equal(est.intercepts_[0], new_intercepts[0])  # left as it was


# ------------------------------------------------------------------------------ errors


def test_divergence_error_is_a_value_error() -> None:
    assert issubclass(DivergenceError, ValueError)
    assert issubclass(DivergenceError, ArithmeticError)
    assert issubclass(DivergenceError, deltaflow.DeltaflowError)


def test_a_diverging_fit_raises_valueerror_naming_the_users_rate() -> None:
    X, y = _X * 3, 10 * _X[:, 0]
    settings = dict(solver="sgd", learning_rate_init=1.0, max_iter=30, random_state=0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            SklearnMLPRegressor(**settings).fit(X, y)
    with pytest.raises(ValueError, match="Solver produced non-finite") as err:
        MLPRegressor(**settings).fit(X, y)
    assert "smaller learning_rate_init than 1;" in str(err.value) + ";"
    assert "0.5" not in str(err.value)  # deltaflow's internal rate for the squared error


def test_huge_inputs_are_named_as_the_cause() -> None:
    X = _X * 1e200
    for solver in ("adam", "lbfgs"):
        with pytest.raises(ValueError, match=r"X has values as large as \d\.\d+e\+200; scale"):
            MLPRegressor(solver=solver, random_state=0, max_iter=5).fit(X, _X[:, 0])
    net = Network([5, 3, 1], ["relu", "identity"], seed=0)
    with np.errstate(all="ignore"), pytest.raises(DivergenceError, match="scale the inputs"):
        deltaflow.fit(net, X, _X[:, :1], epochs=2)


def test_divergence_under_early_stopping_leaves_nan_scores_as_sklearn() -> None:
    """Neither library raises: the scores after the divergence are NaN, which scikit-learn's
    stopping rule never counts against the fit, so both run to max_iter and warn, keeping
    the best epoch's weights."""
    X, y = _X * 3, 10 * _X[:, 0]
    settings = dict(
        solver="sgd", learning_rate_init=1.0, early_stopping=True, n_iter_no_change=4,
        max_iter=30, random_state=0,
    )  # fmt: skip
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.warns(ConvergenceWarning):
            theirs = SklearnMLPRegressor(**settings).fit(X, y)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(30\)"):
        ours = MLPRegressor(**settings).fit(X, y)
    for est in (ours, theirs):
        scores = np.array(est.validation_scores_)
        assert est.n_iter_ == len(scores) == 30
        assert np.isnan(scores[-1]) and np.isfinite(scores[0])
        assert est.best_validation_score_ == np.nanmax(scores)
        assert np.isfinite(est.predict(X)).all()
    assert np.isnan(ours.loss_curve_[-1])


def test_messages_use_sklearns_words_and_the_users_labels() -> None:
    X = _X[:12]
    y = np.array(["cat", "dog", "emu"] * 4)
    small = dict(early_stopping=True, validation_fraction=0.05, random_state=0)
    for est in (MLPClassifier(**small), SklearnMLPClassifier(**small)):
        with pytest.raises(ValueError, match="The validation set is too small"):
            est.fit(X, y)
    clf = MLPClassifier((3,), random_state=0)
    clf.partial_fit(X, y, classes=["cat", "dog", "emu"])
    with pytest.raises(ValueError, match=r"classes not in `self.classes_`: \['yak'\]") as err:
        clf.partial_fit(X[:2], np.array(["cat", "yak"]))
    assert "np.str_" not in str(err.value) and "['cat', 'dog', 'emu']" in str(err.value)
    with pytest.raises(ValueError, match=r"`classes=\['cat', 'dog'\]` is not the same"):
        clf.partial_fit(X, y, classes=["cat", "dog"])
    warm = MLPClassifier((3,), max_iter=1, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
    with pytest.raises(ValueError, match=r"Previously got \['cat', 'dog', 'emu'\], `y` has"):
        warm.fit(X, np.array(["cat", "dog"] * 6))
