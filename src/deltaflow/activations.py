"""Activation functions ``g`` and their derivatives ``g'``, with a registry.

Every activation here can compute ``g'(z)`` from ``a = g(z)`` alone (the notes' remark
that ``sigma'(u) = sigma(u) (1 - sigma(u))`` needs no second ``exp``). The forward
sweep therefore overwrites ``z`` with ``a`` in place and keeps one buffer per layer.

Protocol (duck-typed, see :class:`Activation`):

``forward(z, out)``
    write ``g(z)`` into ``out`` (``out`` may be ``z`` itself) and return it.
``backprop(a, delta)``
    replace ``delta = dC/da`` by ``dC/dz`` in place, given ``a = g(z)``. For the
    elementwise activations that is ``delta *= g'(z)``; for softmax it is the
    Jacobian-vector product (softmax couples the units of a layer).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy.special import expit

from .errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Identity",
    "LeakyReLU",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "get_activation",
]


class Activation(Protocol):
    """What the engine needs of an activation ``g``."""

    name: str

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = g(z)``; ``out`` may be ``z``."""
        ...

    def backprop(self, a: np.ndarray, delta: np.ndarray) -> None:
        """``delta := dC/dz`` from ``delta = dC/da`` and ``a = g(z)``, in place."""
        ...


class Sigmoid:
    """Logistic sigmoid ``sigma(u) = 1 / (1 + e^(-u))``; ``sigma' = a (1 - a)``."""

    name = "sigmoid"

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        # scipy's expit is a single ufunc pass, exact to rounding, and never overflows
        # (1 / (1 + exp(-z)) overflows exp for z < -709 in float64, -88 in float32).
        return expit(z, out=out)

    def backprop(self, a: np.ndarray, delta: np.ndarray) -> None:
        # delta * a * (1 - a) written as delta * (a - a*a) would need a temporary;
        # two in-place passes over delta do it without one.
        delta *= a
        delta -= delta * a


class Tanh:
    """Hyperbolic tangent; ``tanh' = 1 - a^2``."""

    name = "tanh"

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.tanh(z, out=out)

    def backprop(self, a: np.ndarray, delta: np.ndarray) -> None:
        delta -= delta * a * a


class ReLU:
    """Rectified linear unit ``max(0, u)``; ``g' = 1`` where ``a > 0``, else 0."""

    name = "relu"

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0, out=out)

    def backprop(self, a: np.ndarray, delta: np.ndarray) -> None:
        # g'(0) is taken as 0, as PyTorch does.
        delta *= a > 0


class LeakyReLU:
    """``u`` for ``u > 0`` else ``slope * u`` (slope 0.01, PyTorch's default)."""

    name = "leaky_relu"

    def __init__(self, slope: float = 0.01) -> None:
        self.slope = slope

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        # max(z, slope*z) equals leaky relu for 0 < slope < 1.
        return np.maximum(z, z * self.slope, out=out)

    def backprop(self, a: np.ndarray, delta: np.ndarray) -> None:
        # a > 0 exactly where z > 0 (the slope is positive), so a tells the branch.
        np.multiply(delta, self.slope, out=delta, where=a <= 0)


class Identity:
    """``g(u) = u``, for regression outputs; ``g' = 1``."""

    name = "identity"

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        if out is not z:
            np.copyto(out, z)
        return out

    def backprop(self, a: np.ndarray, delta: np.ndarray) -> None:
        return None


class Softmax:
    """``a_j = e^(z_j) / sum_k e^(z_k)`` over the units of a layer.

    Its derivative is a Jacobian, not an elementwise factor:
    ``dC/dz_j = a_j (dC/da_j - sum_k a_k dC/da_k)``. With the cross-entropy cost the
    loss supplies the fused ``a - y`` instead and this is never called.
    """

    name = "softmax"

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        # Subtracting the row maximum leaves softmax unchanged and keeps exp <= 1.
        np.subtract(z, z.max(axis=1, keepdims=True), out=out)
        np.exp(out, out=out)
        out /= out.sum(axis=1, keepdims=True)
        return out

    def backprop(self, a: np.ndarray, delta: np.ndarray) -> None:
        dot = np.einsum("ij,ij->i", a, delta)[:, None]
        delta -= dot
        delta *= a


ACTIVATIONS: dict[str, type] = {
    cls.name: cls for cls in (Sigmoid, Tanh, ReLU, LeakyReLU, Identity, Softmax)
}


def get_activation(name: str | Activation) -> Activation:
    """Return the activation registered under ``name`` (or ``name`` itself if it is one).

    Raises
    ------
    ConfigError
        If ``name`` is not a registered activation.
    """
    if not isinstance(name, str):
        if hasattr(name, "forward") and hasattr(name, "backprop") and hasattr(name, "name"):
            return name
        raise ConfigError(f"activation must be a name, got {type(name).__name__}")
    try:
        return ACTIVATIONS[name.lower()]()
    except KeyError:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ConfigError(f"unknown activation {name!r}; choose one of: {known}") from None
