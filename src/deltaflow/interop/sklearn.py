"""scikit-learn conversion: fitted ``MLPClassifier`` / ``MLPRegressor`` to and from a Network.

scikit-learn keeps ``coefs_[l-1]`` of shape ``(S[l-1], S[l])`` and ``intercepts_[l-1]``
of shape ``(S[l],)``: deltaflow's ``Theta[l]`` and ``b[l]`` exactly, so the parameters
are copied as they are. scikit-learn has one activation for every hidden layer
(``identity``, ``logistic``, ``tanh`` or ``relu``; deltaflow's sigmoid is its logistic)
and picks the output's from the task: softmax for more than two classes, logistic for
two classes (one unit) and for multi-label targets, identity for regression.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deltaflow.errors import ConfigError
from deltaflow.interop._common import build_network, model_facts
from deltaflow.network import Network

__all__ = ["from_sklearn", "to_sklearn"]

_TO_SKLEARN = {"sigmoid": "logistic", "tanh": "tanh", "relu": "relu", "identity": "identity"}
_FROM_SKLEARN = {v: k for k, v in _TO_SKLEARN.items()} | {"softmax": "softmax"}


def from_sklearn(estimator: Any, *, cost: str | None = None) -> Network:
    """A Network that computes what a fitted scikit-learn MLP computes.

    Parameters
    ----------
    estimator : sklearn.neural_network.MLPClassifier or MLPRegressor, fitted
        (a fitted deltaflow estimator gives a copy of its network).
    cost : str, optional
        The network's cost; by default the one matching the output (cross-entropy for
        softmax, binary cross-entropy for logistic, squared error for identity).

    Returns
    -------
    Network
        With the estimator's weights bit for bit: its ``forward`` is the estimator's
        ``predict_proba`` (multi-class), the positive class's probability (binary) or
        ``predict`` (regression). Class labels stay with the estimator:
        ``estimator.classes_[net.predict(X)]`` is ``estimator.predict(X)``.

    Raises
    ------
    ConfigError
        For an estimator that is not a fitted MLP, or an activation deltaflow lacks.
    """
    if isinstance(getattr(estimator, "network_", None), Network):
        return estimator.network_.copy()
    coefs = getattr(estimator, "coefs_", None)
    intercepts = getattr(estimator, "intercepts_", None)
    out = getattr(estimator, "out_activation_", None)
    if coefs is None or intercepts is None or out is None:
        raise ConfigError(
            f"expected a fitted scikit-learn MLPClassifier or MLPRegressor, got "
            f"{type(estimator).__name__} without coefs_; fit it first"
        )
    hidden = str(getattr(estimator, "activation", None))
    for role, name in (("activation", hidden), ("out_activation_", out)):
        if name not in _FROM_SKLEARN:
            raise ConfigError(f"the estimator's {role} {name!r} has no deltaflow activation")
    dtype = np.asarray(coefs[0]).dtype
    if dtype not in (np.float32, np.float64):
        raise ConfigError(f"the estimator's weights are {dtype}; deltaflow reads float32/64")
    layers = []
    for l, (theta, b) in enumerate(zip(coefs, intercepts), start=1):
        g = _FROM_SKLEARN[str(out) if l == len(coefs) else hidden]
        theta = np.ascontiguousarray(theta, dtype=dtype)
        layers.append((theta, np.ascontiguousarray(b, dtype=dtype), g))
    return build_network(layers, dtype, cost, "the estimator", error=ConfigError)


def to_sklearn(net: Any, *, classes: Any = None) -> Any:
    """A fitted scikit-learn MLP that computes what ``net`` computes.

    The hidden layers must share one of sigmoid, tanh, relu or identity. A softmax
    output gives an ``MLPClassifier`` (with two units, scikit-learn's single logistic
    unit on ``z_1 - z_0``, which is the same probability); a sigmoid output a binary
    (one unit) or multi-label ``MLPClassifier``; an identity output an ``MLPRegressor``.

    Parameters
    ----------
    net : Network, path of a deltaflow model file, or fitted deltaflow estimator
    classes : sequence, optional
        The class labels, one per output class (default ``0..n-1``, or the classes a
        model file or estimator carries).

    Returns
    -------
    sklearn.neural_network.MLPClassifier or MLPRegressor
        Ready to ``predict`` (and ``predict_proba``); its ``coefs_`` and
        ``intercepts_`` are copies of the network's.

    Raises
    ------
    ConfigError
        For activations scikit-learn's MLP cannot express, or a wrong number of classes.
    """
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import LabelBinarizer

    facts = model_facts(net, class_names=classes)
    net = facts.net
    acts = net.activation_names
    hidden = set(acts[:-1]) or {"relu"}  # no hidden layer: scikit-learn's default, unused
    if len(hidden) != 1 or not hidden <= set(_TO_SKLEARN):
        raise ConfigError(
            f"scikit-learn's MLP has one hidden activation among sigmoid, tanh, relu and "
            f"identity; this network's hidden layers have {acts[:-1]}"
        )
    out, S_L = acts[-1], net.sizes[-1]
    coefs = [w.copy() for w in net.weights]
    intercepts = [b.copy() for b in net.biases]
    est: Any
    if out == "identity":
        est, out_activation = MLPRegressor(), "identity"
    elif out in ("softmax", "sigmoid"):
        est = MLPClassifier()
        if out == "softmax" and S_L == 2:  # softmax_1(z) = sigmoid(z_1 - z_0)
            coefs[-1] = coefs[-1][:, 1:] - coefs[-1][:, :1]
            intercepts[-1] = intercepts[-1][1:] - intercepts[-1][:1]
        out_activation = "softmax" if out == "softmax" and S_L > 2 else "logistic"
        if out == "softmax" and S_L == 1:
            raise ConfigError("a softmax over one unit is constant; scikit-learn has no such MLP")
        est._label_binarizer = _binarizer(LabelBinarizer, out, S_L, facts.class_names)
        est.classes_ = est._label_binarizer.classes_
    else:
        raise ConfigError(
            f"scikit-learn's MLP outputs softmax, logistic or identity; this network's "
            f"output layer is {out}"
        )
    est.set_params(hidden_layer_sizes=tuple(net.sizes[1:-1]), activation=_TO_SKLEARN[hidden.pop()])
    est.coefs_, est.intercepts_ = coefs, intercepts
    est.n_features_in_ = net.sizes[0]
    est.n_outputs_ = coefs[-1].shape[1]
    est.n_layers_ = len(net.sizes)
    est.out_activation_ = out_activation
    est.n_iter_ = est.t_ = 0
    est.loss_curve_ = []
    est.best_loss_ = np.inf
    est.validation_scores_ = est.best_validation_score_ = None
    est._no_improvement_count = 0
    est._best_coefs = [c.copy() for c in coefs]
    est._best_intercepts = [i.copy() for i in intercepts]
    return est


def _binarizer(cls: Any, out: str, S_L: int, classes: list[Any] | None) -> Any:
    """scikit-learn's label encoder for the network's classes."""
    if out == "sigmoid" and S_L > 1:  # multi-label: one 0/1 column per label
        return cls().fit(np.eye(S_L, dtype=np.int64))
    n = 2 if S_L == 1 else S_L
    labels = np.arange(n) if classes is None else np.asarray(classes)
    if labels.ndim != 1 or len(labels) != n or not np.array_equal(np.unique(labels), labels):
        raise ConfigError(
            f"classes must be {n} distinct labels in sorted order (scikit-learn's order of "
            f"the output units), got {classes!r}"
        )
    return cls().fit(labels)
