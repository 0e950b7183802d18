"""Costs ``C`` and the base case of the dynamic programme, ``delta^(L)``, with a registry.

A loss knows two things:

``value(a, y, weights=None)``
    the cost ``C = (1/m) sum_i C_i`` for outputs ``a = a^(L)`` and targets ``y``,
    both of shape ``(m, S_L)``; with per-example ``weights`` of shape ``(m,)``, the
    weighted mean ``C = sum_i w_i C_i / sum_i w_i``.
``output_delta(a, y, activation, out, scale)``
    ``out = scale * delta^(L)`` with ``delta^(L) = dC_i/dz^(L)`` per example. The
    backward pass passes ``scale = 1/m`` so that the mean over the batch is folded
    into the one small output-layer array instead of every weight gradient.

Both also take an optional ``scratch``, an array of ``a``'s shape they may overwrite
instead of allocating a temporary; the engine passes its workspace's (see
:func:`deltaflow.activations.accepts_scratch`).

The matched pairs (softmax with cross-entropy, sigmoid with binary cross-entropy, the
exponential with the Poisson deviance) have ``delta^(L) = a - y``: the cost's derivative
cancels against ``g'``. That
shortcut holds *only* for the matched activation, so those losses refuse any other
output activation; the squared error follows the general rule ``delta = dC/da * g'(z)``
with whatever output it is given. The backward pass has no special cases.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy.special import xlogy

from deltaflow.engine.activations import Activation, accepts_scratch
from deltaflow.errors import ConfigError

__all__ = [
    "LOSSES",
    "BinaryCrossEntropy",
    "CrossEntropy",
    "Loss",
    "Poisson",
    "SquaredError",
    "get_loss",
]


class Loss(Protocol):
    """What the engine needs of a cost ``C``."""

    name: str
    #: activation that the output layer gets by default with this cost
    default_output: str | None

    def value(self, a: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float: ...

    def output_delta(
        self, a: np.ndarray, y: np.ndarray, activation: Activation, out: np.ndarray, scale: float
    ) -> np.ndarray: ...


Scratch = np.ndarray | None


class SquaredError:
    """The notes' cost: ``C_i = sum_j (a_j^(L) - y_j)^2`` (no 1/2), averaged over ``m``.

    ``dC_i/da_j = 2 (a_j - y_j)``, so ``delta^(L) = 2 (a - y) * g'(z^(L))``.
    """

    name = "squared_error"
    default_output = None  # the hidden layers' activation, as in the notes

    def value(
        self,
        a: np.ndarray,
        y: np.ndarray,
        weights: np.ndarray | None = None,
        scratch: Scratch = None,
    ) -> float:
        diff = np.subtract(a, y, out=scratch)
        if weights is not None:
            return _weighted_mean(np.einsum("ij,ij->i", diff, diff), weights)
        return float(np.vdot(diff, diff)) / a.shape[0]

    def output_delta(
        self,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray,
        scale: float,
        scratch: Scratch = None,
    ) -> np.ndarray:
        np.subtract(a, y, out=out)
        out *= 2.0 * scale
        if scratch is not None and _takes_scratch(activation):
            activation.backprop(a, out, scratch)  # type: ignore[call-arg]
        else:
            activation.backprop(a, out)
        return out


class _MatchedPair:
    """A cost whose matched output activation makes ``delta^(L) = a - y``."""

    name: str
    default_output: str

    def output_delta(
        self,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray,
        scale: float,
        scratch: Scratch = None,
    ) -> np.ndarray:
        if activation.name != self.default_output:
            raise ConfigError(
                f"the {self.name} cost needs a {self.default_output} output layer, not "
                f"{activation.name}; use activation=[..., {self.default_output!r}] "
                "or cost='squared_error'"
            )
        np.subtract(a, y, out=out)
        out *= scale
        return out


class CrossEntropy(_MatchedPair):
    """Categorical cross-entropy ``C_i = -sum_j y_j log a_j^(L)`` with a softmax output.

    With softmax, ``delta^(L) = a - y`` (the softmax Jacobian is never formed).
    """

    name = "cross_entropy"
    default_output = "softmax"

    def value(
        self,
        a: np.ndarray,
        y: np.ndarray,
        weights: np.ndarray | None = None,
        scratch: Scratch = None,
    ) -> float:
        # Clip so that an output that underflowed to 0 costs -log(tiny), not inf.
        tiny = np.finfo(a.dtype).tiny
        log_a = np.log(np.maximum(a, tiny, out=scratch), out=scratch)
        if weights is not None:
            return -_weighted_mean(np.einsum("ij,ij->i", y, log_a), weights)
        return -float(np.vdot(y, log_a)) / a.shape[0]


class BinaryCrossEntropy(_MatchedPair):
    """``C_i = -sum_j [y_j log a_j + (1 - y_j) log(1 - a_j)]`` with a sigmoid output.

    With sigmoid, ``delta^(L) = a - y``.
    """

    name = "binary_cross_entropy"
    default_output = "sigmoid"

    def value(
        self,
        a: np.ndarray,
        y: np.ndarray,
        weights: np.ndarray | None = None,
        scratch: Scratch = None,
    ) -> float:
        eps = np.finfo(a.dtype).eps
        p = np.clip(a, eps, 1 - eps, out=scratch)
        if weights is not None:
            per_example = np.einsum("ij,ij->i", y, np.log(p)) + np.einsum(
                "ij,ij->i", 1 - y, np.log1p(-p)
            )
            return -_weighted_mean(per_example, weights)
        return -float(np.vdot(y, np.log(p)) + np.vdot(1 - y, np.log1p(-p))) / a.shape[0]


class Poisson(_MatchedPair):
    """Half the Poisson deviance, ``C_i = sum_j [y_j log(y_j / a_j) - y_j + a_j]``, with an
    exponential output ``a = e^z`` (the predicted mean, always positive).

    ``dC_i/da_j = 1 - y_j / a_j`` and ``g' = a``, so ``delta^(L) = a - y``. The cost is
    scikit-learn's ``loss="poisson"`` exactly, the constant ``y log y - y`` included (it
    makes ``C_i = 0`` at ``a = y``); targets must be non-negative counts or rates.
    """

    name = "poisson"
    default_output = "exp"

    def value(
        self,
        a: np.ndarray,
        y: np.ndarray,
        weights: np.ndarray | None = None,
        scratch: Scratch = None,
    ) -> float:
        # y log(y / a) as xlogy(y, y) - y log(a): no y / a, which overflows where a
        # underflowed to 0; clipping a at `tiny` keeps log(a) finite there
        tiny = np.finfo(a.dtype).tiny
        y_log_a = np.log(np.maximum(a, tiny, out=scratch), out=scratch)
        y_log_a *= y
        per_unit = xlogy(y, y)
        per_unit -= y_log_a
        per_unit -= y
        per_unit += a
        if weights is not None:
            return _weighted_mean(per_unit.sum(axis=1), weights)
        return float(per_unit.sum()) / a.shape[0]


def _takes_scratch(activation: Activation) -> bool:
    """Whether ``activation.backprop`` takes a scratch buffer."""
    return accepts_scratch(activation.backprop)


def _weighted_mean(c: np.ndarray, weights: np.ndarray) -> float:
    """``sum_i w_i C_i / sum_i w_i`` for per-example costs ``c``; 0 when the weights are."""
    total = float(weights.sum())
    return float(np.dot(weights, c)) / total if total > 0 else 0.0


LOSSES: dict[str, type] = {
    cls.name: cls for cls in (SquaredError, CrossEntropy, BinaryCrossEntropy, Poisson)
}


def get_loss(name: str | Loss) -> Loss:
    """Return the cost registered under ``name`` (or ``name`` itself if it is one).

    Raises
    ------
    ConfigError
        If ``name`` is not a registered cost.
    """
    if not isinstance(name, str):
        if hasattr(name, "value") and hasattr(name, "output_delta"):
            return name
        raise ConfigError(f"cost must be a name, got {type(name).__name__}")
    try:
        return LOSSES[name.lower()]()
    except KeyError:
        known = ", ".join(sorted(LOSSES))
        raise ConfigError(f"unknown cost {name!r}; choose one of: {known}") from None
