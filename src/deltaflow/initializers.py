"""Initial weights and biases by name, with a registry.

An initialiser draws the parameters of one layer ``l`` from the network's generator::

    theta, b = init(fan_in, fan_out, g, rng, hidden=h)

``fan_in = S[l-1]`` and ``fan_out = S[l]``; ``g`` is the name of the layer's activation
``g^(l)`` and ``h`` the name of ``g^(1)``, the activation of the first hidden layer (the
one scikit-learn's rule looks at). It returns float64 arrays ``theta`` of shape
``(S[l-1], S[l])`` and ``b`` of shape ``(S[l],)``; the network casts them to its dtype.
Layers are drawn in order ``l = 1..L``, the weights of a layer before its biases, so a
seed fixes every parameter.

* ``default``: ``he_normal`` where ``g`` is relu or leaky_relu, else ``glorot_uniform``.
* ``glorot_uniform``: ``Theta ~ U(-r, r)`` with ``r = sqrt(6 / (fan_in + fan_out))``,
  variance ``2 / (fan_in + fan_out)``; ``b = 0``.
* ``he_normal``: ``Theta ~ N(0, 2 / fan_in)``; ``b = 0``.
* ``sklearn`` (scikit-learn's MLP): ``Theta, b ~ U(-r, r)`` with
  ``r = sqrt(k / (fan_in + fan_out))``, ``k = 2`` when ``h`` is sigmoid, else ``k = 6``.
* ``torch`` (PyTorch's ``nn.Linear``): ``Theta, b ~ U(-r, r)`` with ``r = 1 / sqrt(fan_in)``.
* ``nielsen`` (the classic textbook code): ``Theta, b ~ N(0, 1)``.

A uniform ``U(-r, r)`` has mean 0 and variance ``r^2 / 3``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deltaflow.errors import ConfigError

__all__ = ["INITIALIZERS", "Initializer", "get_initializer"]

Initializer = Callable[..., tuple[np.ndarray, np.ndarray]]

# He normal compensates for relu zeroing half its inputs; Glorot uniform keeps the
# variance of sigmoid/tanh layers near 1.
_HE = {"relu", "leaky_relu"}


def glorot_uniform(
    fan_in: int, fan_out: int, g: str, rng: np.random.Generator, *, hidden: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """``Theta ~ U(-r, r)`` with ``r = sqrt(6 / (fan_in + fan_out))``; ``b = 0``."""
    r = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-r, r, size=(fan_in, fan_out)), np.zeros(fan_out)


def he_normal(
    fan_in: int, fan_out: int, g: str, rng: np.random.Generator, *, hidden: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """``Theta ~ N(0, 2 / fan_in)``; ``b = 0``."""
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in), np.zeros(fan_out)


def default(
    fan_in: int, fan_out: int, g: str, rng: np.random.Generator, *, hidden: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`he_normal` for a relu or leaky_relu layer, :func:`glorot_uniform` otherwise."""
    pick = he_normal if g in _HE else glorot_uniform
    return pick(fan_in, fan_out, g, rng)


def sklearn(
    fan_in: int, fan_out: int, g: str, rng: np.random.Generator, *, hidden: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's MLP: ``Theta, b ~ U(-r, r)``, ``r = sqrt(k / (fan_in + fan_out))``.

    ``k = 2`` when the hidden activation ``hidden`` is the sigmoid (scikit-learn's
    "logistic"), else 6. scikit-learn applies the hidden layers' rule to the output
    layer too, and so does this.
    """
    k = 2.0 if hidden == "sigmoid" else 6.0
    r = np.sqrt(k / (fan_in + fan_out))
    theta = rng.uniform(-r, r, size=(fan_in, fan_out))
    return theta, rng.uniform(-r, r, size=fan_out)


def torch(
    fan_in: int, fan_out: int, g: str, rng: np.random.Generator, *, hidden: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's ``nn.Linear``: ``Theta, b ~ U(-r, r)`` with ``r = 1 / sqrt(fan_in)``.

    ``nn.Linear`` draws its weights by Kaiming uniform with ``a = sqrt(5)``, whose bound
    ``sqrt(2 / (1 + a^2)) * sqrt(3 / fan_in)`` is ``1 / sqrt(fan_in)``, and its biases
    from the same interval.
    """
    r = 1.0 / np.sqrt(fan_in)
    theta = rng.uniform(-r, r, size=(fan_in, fan_out))
    return theta, rng.uniform(-r, r, size=fan_out)


def nielsen(
    fan_in: int, fan_out: int, g: str, rng: np.random.Generator, *, hidden: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal weights and biases, ``N(0, 1)``, as the classic textbook code."""
    theta = rng.standard_normal((fan_in, fan_out))
    return theta, rng.standard_normal(fan_out)


INITIALIZERS: dict[str, Initializer] = {
    "default": default,
    "glorot_uniform": glorot_uniform,
    "he_normal": he_normal,
    "sklearn": sklearn,
    "torch": torch,
    "nielsen": nielsen,
}


def get_initializer(name: str) -> Initializer:
    """The initialiser registered under ``name``.

    Raises
    ------
    ConfigError
        If ``name`` is not a registered initialiser.
    """
    if not isinstance(name, str):
        raise ConfigError(f"init must be a name such as 'default', got {type(name).__name__}")
    try:
        return INITIALIZERS[name.lower()]
    except KeyError:
        known = ", ".join(INITIALIZERS)
        raise ConfigError(f"unknown init {name!r}; choose one of: {known}") from None
