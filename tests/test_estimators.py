"""The scikit-learn estimators (deltaflow.estimators) and the engine's sample weights."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.neural_network import MLPRegressor as SklearnMLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import deltaflow
from deltaflow import ConfigError, DataError, ModelFileError, Network
from deltaflow.data import load_digits
from deltaflow.engine import backprop
from deltaflow.estimators import MLPClassifier, MLPRegressor
from deltaflow.training.loop import fit

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread() -> Any:
    """The matrices here are small: BLAS threads only thrash when other jobs share the CPU."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1):
        yield


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


# ------------------------------------------------------ scikit-learn's own estimator checks

_NO_PARTIAL_FIT = "partial_fit refuses early_stopping=True, as scikit-learn's MLP does"
_TOO_FEW_ROWS = "10% of the check's 10 rows leaves under 2 validation rows (scikit-learn too)"
_EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    # float32 arithmetic agrees to about 5e-7; these checks ask for rtol=1e-7
    "float32": {
        "check_methods_sample_order_invariance": "float32 rounding exceeds the rtol=1e-7 asked",
        "check_sample_weight_equivalence_on_dense_data": "float32 rounding exceeds rtol=1e-7",
        "check_sample_weight_equivalence_on_sparse_data": "float32 rounding exceeds rtol=1e-7",
    },
    # scikit-learn's own MLPRegressor fails the same checks with early_stopping=True
    "early_stopping": {
        "check_fit_score_takes_y": _NO_PARTIAL_FIT,
        "check_n_features_in_after_fitting": _NO_PARTIAL_FIT,
        "check_estimators_partial_fit_n_features": _NO_PARTIAL_FIT,
        "check_estimators_nan_inf": _TOO_FEW_ROWS,
        "check_regressors_no_decision_function": _TOO_FEW_ROWS,
        "check_fit2d_1feature": _TOO_FEW_ROWS,
        "check_sample_weight_equivalence_on_dense_data": (
            "the validation split draws other rows from weighted than from repeated data"
        ),
        "check_sample_weight_equivalence_on_sparse_data": (
            "the validation split draws other rows from weighted than from repeated data"
        ),
    },
}


def _expected_failures(estimator: Any) -> dict[str, str]:
    if estimator.get_params().get("dtype") == "float32":
        return _EXPECTED_FAILURES["float32"]
    if estimator.get_params()["early_stopping"]:
        return _EXPECTED_FAILURES["early_stopping"]
    return {}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [
        MLPClassifier(),  # scikit-learn's defaults: 100 relu units, adam, max_iter=200
        MLPRegressor(),
        MLPClassifier(
            hidden_layer_sizes=(20, 10),
            activation=["tanh", "logistic"],  # hidden layers; the output follows y
            cost="squared_error",
            dtype="float32",
            solver="sgd",
            learning_rate_init=0.1,
            max_iter=100,
        ),
        MLPRegressor(solver="sgd", learning_rate="adaptive", early_stopping=True, random_state=0),
    ],
    expected_failed_checks=_expected_failures,
    xfail_strict=True,
)
def test_sklearn_estimator_checks(estimator: Any, check: Any) -> None:
    check(estimator)


# ------------------------------------------- the same updates as scikit-learn's MLP

_rng = np.random.default_rng(0)
_X = _rng.standard_normal((24, 5))
_TARGETS = {
    "multiclass": (MLPClassifier, SklearnMLPClassifier, _rng.integers(0, 3, 24), 1),
    "binary": (
        MLPClassifier,
        SklearnMLPClassifier,
        np.array(["no", "yes"])[_rng.integers(0, 2, 24)],
        1,
    ),
    "multilabel": (MLPClassifier, SklearnMLPClassifier, _rng.integers(0, 2, (24, 3)), 1),
    "regression": (MLPRegressor, SklearnMLPRegressor, _rng.standard_normal(24), 2),
    "multi-output": (MLPRegressor, SklearnMLPRegressor, _rng.standard_normal((24, 2)), 4),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("target", list(_TARGETS))
@pytest.mark.parametrize("solver", ["sgd", "sgd-invscaling", "momentum", "adam"])
@pytest.mark.parametrize("weighted", [False, True])
def test_epochs_from_the_same_weights_match_sklearn(
    target: str, solver: str, weighted: bool
) -> None:
    """Copy deltaflow's weights into scikit-learn's MLP, train both: the same weights come out.

    Full batches without shuffling, so both see the same gradients; ``alpha`` > 0 checks
    the L2 mapping; Adam's ``epsilon`` is tiny because the two add it at different places.
    """
    ours, theirs, y, loss_factor = _TARGETS[target]
    settings = dict(
        hidden_layer_sizes=(6, 4),
        activation="tanh",
        solver="adam" if solver == "adam" else "sgd",
        learning_rate="invscaling" if solver == "sgd-invscaling" else "constant",
        momentum=0.5 if solver == "momentum" else 0.0,
        epsilon=1e-15,
        alpha=0.3,
        batch_size=24,
        learning_rate_init=0.05,
        shuffle=False,
        max_iter=3,
        warm_start=True,
        random_state=0,
    )
    w = _rng.integers(1, 4, 24).astype(float) if weighted else None
    a = ours(**settings).fit(_X, y, sample_weight=w)
    b = theirs(**settings).fit(_X, y, sample_weight=w)
    b.coefs_ = [c.copy() for c in a.coefs_]
    b.intercepts_ = [c.copy() for c in a.intercepts_]
    a.fit(_X, y, sample_weight=w)
    b.fit(_X, y, sample_weight=w)
    tol = 1e-9 if solver == "adam" else 1e-13
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(p, q, rtol=0, atol=tol)
    # without the L2 term the costs agree up to the squared error's 2 * n_outputs
    a2 = ours(**{**settings, "alpha": 0.0, "max_iter": 1}).fit(_X, y, sample_weight=w)
    b2 = theirs(**{**settings, "alpha": 0.0, "max_iter": 1}).fit(_X, y, sample_weight=w)
    b2.coefs_ = [c.copy() for c in a2.coefs_]
    b2.intercepts_ = [c.copy() for c in a2.intercepts_]
    a2.fit(_X, y, sample_weight=w)
    b2.fit(_X, y, sample_weight=w)
    assert a2.loss_curve_[-1] == pytest.approx(loss_factor * b2.loss_curve_[-1], rel=1e-12)


# ------------------------------------------------------------ the estimator contract


@pytest.fixture(scope="module")
def digits() -> Any:
    return load_digits()


def test_partial_fit_continues_like_fit(digits: Any) -> None:
    X, y = digits.X_train[:300], digits.y_train[:300]
    settings = dict(hidden_layer_sizes=(16,), shuffle=False, random_state=0)
    whole = MLPClassifier(max_iter=4, **settings)
    with pytest.warns(ConvergenceWarning):
        whole.fit(X, y)
    parts = MLPClassifier(**settings)
    for _ in range(4):  # the same Adam optimizer carries on from call to call
        parts.partial_fit(X, y, classes=np.arange(10))
    for p, q in zip(whole.coefs_ + whole.intercepts_, parts.coefs_ + parts.intercepts_):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)
    assert parts.loss_curve_ == pytest.approx(whole.loss_curve_, rel=1e-12)
    assert (parts.n_iter_, parts.t_) == (1, 4 * 300)
    with pytest.raises(DataError, match=r"classes not in `self.classes_`: \[10\]"):
        parts.partial_fit(X[:5], np.array([10, 1, 2, 3, 4]))
    with pytest.raises(ConfigError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ConfigError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=np.arange(10))


def test_warm_start_continues_from_the_fitted_weights(digits: Any) -> None:
    X, y = digits.X_train[:300], digits.y_train[:300]
    settings = dict(hidden_layer_sizes=(16,), solver="sgd", momentum=0.0, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        five = MLPClassifier(max_iter=5, random_state=0, **settings).fit(X, y)
        two_then_three = MLPClassifier(max_iter=2, warm_start=True, random_state=0, **settings)
        two_then_three.fit(X, y).set_params(max_iter=3).fit(X, y)
        cold = clone(two_then_three).set_params(warm_start=False).fit(X, y)
    np.testing.assert_allclose(two_then_three.coefs_[0], five.coefs_[0], rtol=0, atol=1e-13)
    assert two_then_three.loss_curve_ == pytest.approx(five.loss_curve_, rel=1e-12)
    assert (two_then_three.n_iter_, two_then_three.t_) == (3, 5 * 300)
    assert len(cold.loss_curve_) == 3
    with pytest.raises(DataError, match="same classes"):
        two_then_three.fit(X[y < 5], y[y < 5])
    with pytest.warns(ConvergenceWarning):  # early_stopping switched on for a warm start
        two_then_three.set_params(early_stopping=True, max_iter=2).fit(X, y)
    assert len(two_then_three.validation_scores_) == 2 and two_then_three.best_loss_ is None


def test_early_stopping_keeps_the_best_epoch(digits: Any) -> None:
    snapshots: list[list[np.ndarray]] = []
    clf = MLPClassifier(
        hidden_layer_sizes=(32,),
        learning_rate_init=0.02,
        early_stopping=True,
        n_iter_no_change=3,
        random_state=0,
        callbacks=[lambda record: snapshots.append([w.copy() for w in clf.coefs_])],
    )
    clf.fit(digits.X_train, digits.y_train)
    scores = clf.validation_scores_
    assert clf.n_iter_ < clf.max_iter == 200
    assert len(scores) == len(clf.validation_loss_curve_) == len(snapshots) == clf.n_iter_
    assert clf.best_validation_score_ == max(scores) > 0.9
    best = int(np.argmax(scores))
    # scikit-learn's rule: stop once more than n_iter_no_change epochs fail to beat it by tol
    assert best == clf.n_iter_ - clf.n_iter_no_change - 2 or scores[-1] < max(scores) + clf.tol
    for w, kept in zip(clf.coefs_, snapshots[best]):
        np.testing.assert_array_equal(w, kept)
    assert clf.best_loss_ is None


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_multilabel_classification() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 6))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] * X[:, 4] > 0]).astype(int)
    clf = MLPClassifier((32,), learning_rate_init=0.01, max_iter=300, random_state=0).fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.network_.loss.name == "binary_cross_entropy"
    assert clf.predict(X).shape == clf.predict_proba(X).shape == (400, 3)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.score(X, Y) > 0.9  # subset accuracy


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_multi_output_regression() -> None:
    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, (400, 3))
    Y = np.column_stack([np.sin(2 * X[:, 0]) + X[:, 1], X[:, 1] * X[:, 2]])
    reg = MLPRegressor(
        hidden_layer_sizes=(32,),
        activation="tanh",
        learning_rate_init=0.01,
        max_iter=400,
        random_state=0,
    ).fit(X, Y)
    assert reg.predict(X).shape == (400, 2) and reg.n_outputs_ == 2
    assert reg.out_activation_ == "identity" and reg.network_.loss.name == "squared_error"
    assert reg.score(X, Y) > 0.95


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_string_labels_pandas_feature_names_and_float32(digits: Any) -> None:
    pd = pytest.importorskip("pandas")
    columns = [f"px{i}" for i in range(64)]
    X = pd.DataFrame(digits.X_train, columns=columns)  # float32 columns
    words = np.array("zero one two three four five six seven eight nine".split())
    y = pd.Series(words[digits.y_train])
    clf = MLPClassifier((32,), learning_rate_init=0.01, max_iter=60, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.feature_names_in_, columns)
    np.testing.assert_array_equal(clf.classes_, np.sort(words))
    Xt = pd.DataFrame(digits.X_test, columns=columns)
    assert (clf.predict(Xt) == words[digits.y_test]).mean() > 0.95
    assert clf.coefs_[0].dtype == clf.predict_proba(Xt).dtype == np.float32
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(Xt.rename(columns={"px0": "other"}))
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(digits.X_test)
    assert (
        MLPClassifier(dtype="float32", max_iter=1)
        .fit(digits.X_train.astype(np.float64), digits.y_train)
        .coefs_[0]
        .dtype
        == np.float32
    )
    assert (
        MLPClassifier(max_iter=1)
        .fit(digits.X_train.astype(np.float64), digits.y_train)
        .coefs_[0]
        .dtype
        == np.float64
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pipeline_grid_search_and_cross_validation(digits: Any) -> None:
    X, y = digits.X_train[:600], digits.y_train[:600]
    pipe = make_pipeline(
        StandardScaler(), MLPClassifier((24,), learning_rate_init=0.01, max_iter=40, random_state=0)
    )
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1.0]}, cv=3).fit(X, y)
    assert search.best_score_ > 0.9
    assert search.best_estimator_.score(digits.X_test, digits.y_test) > 0.9
    r2 = cross_val_score(
        MLPRegressor(
            hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01, random_state=0
        ),
        X,
        (y % 3).astype(float),
        cv=3,  # a number that depends on the digit
    )
    assert r2.shape == (3,) and r2.mean() > 0.5


def test_extras_per_layer_activations_cost_callbacks(capsys: Any, digits: Any) -> None:
    X, y = digits.X_train[:200], digits.y_train[:200]
    records: list[Any] = []
    clf = MLPClassifier(
        (12, 8),
        activation=["relu", "leaky_relu"],
        cost="squared_error",
        max_iter=20,
        verbose=True,
        callbacks=[records.append, lambda record: record.epoch == 4],  # True stops
    ).fit(X, y)
    assert clf.network_.activation_names == ["relu", "leaky_relu", "softmax"]
    assert clf.network_.loss.name == "squared_error"
    assert [r.epoch for r in records] == [1, 2, 3, 4] and clf.n_iter_ == 4
    assert [r.cost for r in records] == clf.loss_curve_
    assert capsys.readouterr().out.count("Iteration") == 4
    named = MLPClassifier((8,), activation=["tanh", "sigmoid"], cost="squared_error", max_iter=2)
    with pytest.warns(ConvergenceWarning):
        assert named.fit(X, y).network_.activation_names == ["tanh", "sigmoid"]


def test_sgd_learning_rate_schedules(digits: Any) -> None:
    X, y = digits.X_train[:100], digits.y_train[:100]
    rates: list[float] = []
    base = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.1, random_state=0)
    with pytest.warns(ConvergenceWarning):
        MLPClassifier(
            learning_rate="invscaling",
            power_t=0.5,
            max_iter=3,
            callbacks=[lambda r: rates.append(r.learning_rate)],
            **base,
        ).fit(X, y)
    assert rates == pytest.approx([0.1, 0.1 / 101**0.5, 0.1 / 201**0.5])
    rates.clear()
    # tol so large that no epoch counts as progress: the rate drops 5-fold every
    # n_iter_no_change + 1 epochs, and training stops once it is at most 1e-6
    clf = MLPClassifier(
        learning_rate="adaptive",
        tol=1e3,
        n_iter_no_change=1,
        max_iter=100,
        callbacks=[lambda r: rates.append(r.learning_rate)],
        **base,
    ).fit(X, y)
    assert rates[:5] == pytest.approx([0.1, 0.1, 0.1, 0.02, 0.02])
    assert clf.n_iter_ < 100 and rates[-1] == pytest.approx(0.1 / 5**8)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"solver": "newton"}, "solver must be 'lbfgs', 'sgd' or 'adam'"),
        ({"hidden_layer_sizes": (10, 0)}, "hidden_layer_sizes"),
        ({"alpha": -1.0}, "alpha"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"momentum": 1.5}, "momentum"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"cost": "hinge"}, "cost"),
        ({"activation": "swish"}, "unknown activation"),
        ({"activation": ["relu"] * 3}, "3 names for 1 hidden"),
        ({"activation": ["relu", "relu"]}, "softmax"),  # the log-loss needs softmax
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_bad_parameters_say_what_to_do(params: dict[str, Any], message: str) -> None:
    X, y = np.random.default_rng(0).standard_normal((30, 4)), np.arange(30) % 3
    with pytest.raises(ConfigError, match=message):
        MLPClassifier(**params).fit(X, y)
    with pytest.raises(ConfigError, match="loss must be 'squared_error' or 'poisson'"):
        MLPRegressor(loss="gamma").fit(X, y.astype(float))


def test_bad_data_follows_sklearn_conventions() -> None:
    X, y = np.random.default_rng(0).standard_normal((30, 4)), np.arange(30) % 3
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, X[:, 0])
    with pytest.raises(DataError, match="sample_weight is zero for every row"):
        MLPClassifier().fit(X, y, sample_weight=np.zeros(30))
    with pytest.raises(DataError, match="negative"):
        MLPRegressor().fit(X, y, sample_weight=-np.ones(30))


# ------------------------------------------------------------ deltaflow model files


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_save_and_load_round_trip(tmp_path: Path, digits: Any) -> None:
    X, y = digits.X_train[:300], np.array(list("abcdefghij"))[digits.y_train[:300]]
    clf = MLPClassifier((16,), activation=["tanh", "softmax"], max_iter=5, random_state=0)
    clf.fit(X, y)
    path = tmp_path / "clf.safetensors"
    clf.save(path)
    back = MLPClassifier.load(path)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    assert back.classes_.dtype == clf.classes_.dtype
    assert back.get_params() == clf.get_params()
    assert (back.n_iter_, back.t_, back.loss_curve_) == (clf.n_iter_, clf.t_, clf.loss_curve_)
    assert back.network_.dtype == np.float32  # the digits are float32
    net = deltaflow.load(path)  # the file is an ordinary deltaflow model
    np.testing.assert_array_equal(net.forward(X), clf.predict_proba(X))
    back.partial_fit(X, y)  # a loaded estimator trains on (with a fresh optimizer)
    assert back.n_iter_ == 1 and back.t_ == clf.t_ + 300
    stopped = MLPClassifier((8,), early_stopping=True, max_iter=3, random_state=0).fit(X, y)
    stopped.save(tmp_path / "stopped.safetensors")
    again = MLPClassifier.load(tmp_path / "stopped.safetensors")
    assert again.validation_scores_ == stopped.validation_scores_
    again.set_params(warm_start=True).fit(X, y)  # continues with the stopping state
    assert len(again.validation_scores_) == 6

    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(
        X, np.c_[X[:, 0], X[:, 1]]
    )
    reg.save(tmp_path / "reg.safetensors")
    np.testing.assert_array_equal(
        MLPRegressor.load(tmp_path / "reg.safetensors").predict(X), reg.predict(X)
    )
    with pytest.raises(ModelFileError, match="not saved by"):
        MLPRegressor.load(path)
    deltaflow.save(Network([64, 10]), tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="not saved by"):
        MLPClassifier.load(tmp_path / "plain.safetensors")
    extra = deltaflow.io.load_extra(path)
    extra["sklearn"]["state"]["n_features_in_"] = 63
    deltaflow.save(clf.network_, tmp_path / "bad.safetensors", extra=extra)
    with pytest.raises(ModelFileError, match="unusable"):
        MLPClassifier.load(tmp_path / "bad.safetensors")


# --------------------------------------------------------- the README's comparison


def _readme_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## scikit-learn estimators") : text.index("## Architecture")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_example_matches_sklearn_on_digits(tmp_path: Path, monkeypatch: Any) -> None:
    """The README's code, run as it is: same settings, both libraries, real digits."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    blocks = _readme_examples()
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    (ours, our_seconds), (theirs, their_seconds) = (
        namespace["results"]["deltaflow"],
        namespace["results"]["scikit-learn"],
    )
    print(
        f"digits: deltaflow {ours:.4f} in {our_seconds:.2f} s, "
        f"scikit-learn {theirs:.4f} in {their_seconds:.2f} s"
    )
    assert ours > 0.95 and abs(ours - theirs) <= 0.01
