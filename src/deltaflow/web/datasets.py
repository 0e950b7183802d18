"""The playground's data: four two-dimensional sets, the 8x8 digits, and the input features.

The two-dimensional sets live in the square ``[-6, 6]^2`` that the page draws, with class
1 and class 0 in equal numbers. ``noise`` (0 to 0.5) widens each set's scatter; every
draw comes from the generator passed in, so a seed gives the same points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deltaflow.errors import ConfigError

__all__ = ["DATASETS", "DOMAIN", "FEATURES", "features", "make_points"]

#: The half-width of the square the two-dimensional sets and the heat maps cover.
DOMAIN = 6.0

#: The input features a two-dimensional set offers, by name, computed from ``(x1, x2)``.
FEATURES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "x1": lambda x1, x2: x1,
    "x2": lambda x1, x2: x2,
    "x1^2": lambda x1, x2: x1 * x1,
    "x2^2": lambda x1, x2: x2 * x2,
    "x1*x2": lambda x1, x2: x1 * x2,
    "sin(x1)": lambda x1, x2: np.sin(x1),
    "sin(x2)": lambda x1, x2: np.sin(x2),
}

_RADIUS = 5.0


def _circle(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class 1 inside radius 2.5, class 0 on the ring between 3.5 and 5."""
    y = np.arange(n) % 2
    r = np.where(y == 1, rng.uniform(0, 0.5, n), rng.uniform(0.7, 1.0, n)) * _RADIUS
    t = rng.uniform(0, 2 * np.pi, n)
    P = np.column_stack([r * np.cos(t), r * np.sin(t)])
    return P + rng.normal(0, noise * _RADIUS * 0.5, P.shape), y


def _xor(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class 1 in the quadrants where ``x1 x2 > 0``; points keep 0.3 away from the axes."""
    P = rng.uniform(-_RADIUS, _RADIUS, (n, 2))
    P += np.where(P > 0, 0.3, -0.3)
    y = (P[:, 0] * P[:, 1] > 0).astype(np.int64)
    return P + rng.normal(0, noise * _RADIUS * 0.5, P.shape), y


def _gauss(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two round clusters around ``(2, 2)`` (class 1) and ``(-2, -2)`` (class 0)."""
    y = np.arange(n) % 2
    centre = np.where(y[:, None] == 1, 2.0, -2.0)
    return centre + rng.normal(0, 0.5 + 3.5 * noise, (n, 2)), y


def _spiral(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved arms, each turning 1.75 times around the origin out to radius 5."""
    y = np.arange(n) % 2
    s = (np.arange(n) // 2) / max(n // 2, 1)
    r = s * _RADIUS
    t = 1.75 * s * 2 * np.pi + np.pi * y
    P = np.column_stack([r * np.sin(t), r * np.cos(t)])
    return P + rng.normal(0, noise * 2.0, P.shape), y


_MAKERS = {"circle": _circle, "xor": _xor, "gauss": _gauss, "spiral": _spiral}

#: Every data set the playground offers; ``digits`` is scikit-learn's 8x8 images.
DATASETS = (*_MAKERS, "digits")


def make_points(
    name: str, n: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of a two-dimensional set and their classes.

    Returns
    -------
    P : ndarray of shape (n, 2)
        ``(x1, x2)``, clipped to the drawn square.
    y : ndarray of int64, shape (n,)
        0 or 1.
    """
    maker = _MAKERS.get(name)
    if maker is None:
        raise ConfigError(f"unknown two-dimensional data set {name!r}; choose one of {_MAKERS}")
    P, y = maker(n, noise, rng)
    return np.clip(P, -DOMAIN, DOMAIN), y.astype(np.int64)


def features(P: np.ndarray, names: list[str]) -> np.ndarray:
    """The chosen input features of points ``P`` of shape (n, 2): shape (n, len(names))."""
    x1, x2 = P[:, 0], P[:, 1]
    return np.column_stack([FEATURES[f](x1, x2) for f in names])
