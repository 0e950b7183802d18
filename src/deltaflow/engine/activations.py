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

Both methods of the built-in activations also take an optional ``scratch``: an array of
the layer's shape ``(m, S_l)`` that they may overwrite instead of allocating a
temporary. The engine passes its workspace's scratch to every method that declares a
``scratch`` parameter (see :func:`accepts_scratch`), so a training step allocates
nothing; an activation written with the two-argument protocol works unchanged.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from scipy.special import expit

from deltaflow.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Exp",
    "Identity",
    "LeakyReLU",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "accepts_scratch",
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


#: float32 arrays of at least this many entries take the four-pass sigmoid (below it,
#: expit's single call is cheaper; in float64 expit was as fast or faster at every size
#: measured, 2026-11-27)
_EXP_FORM_MIN = 2048

#: float32 arrays of at least this many entries take ReLU as ``clip(z, 0, inf)``; below
#: it the clip's Python wrapper costs more than it saves (the two were even at 8,192
#: entries). In float64 clip was 1.4-1.6x faster alone but no faster in a training step
#: (0.97-1.0x, 2026-11-28), so float64 keeps maximum.
_CLIP_FORM_MIN = 16384


class Sigmoid:
    """Logistic sigmoid ``sigma(u) = 1 / (1 + e^(-u))``; ``sigma' = a (1 - a)``."""

    name = "sigmoid"

    def forward(
        self, z: np.ndarray, out: np.ndarray, scratch: np.ndarray | None = None
    ) -> np.ndarray:
        if out.dtype == np.float32 and out.size >= _EXP_FORM_MIN:
            # 1 / (1 + e^(-z)) in four passes of numpy's vectorised float32 loops beats
            # expit's one scalar pass on large arrays (2.3x at 16,000 entries). e^(-z)
            # overflows to inf for z < -88.7, where 1 / (1 + inf) = 0 is the right value.
            with np.errstate(over="ignore"):
                np.negative(z, out=out)
                np.exp(out, out=out)
            out += 1.0
            return np.reciprocal(out, out=out)
        # scipy's expit is a single ufunc pass, exact to rounding, and never overflows
        return expit(z, out=out)

    def backprop(self, a: np.ndarray, delta: np.ndarray, scratch: np.ndarray | None = None) -> None:
        # delta * a * (1 - a), as delta*a - (delta*a)*a: no (1 - a) array is needed.
        delta *= a
        if scratch is None:
            delta -= delta * a
        else:
            np.multiply(delta, a, out=scratch)
            delta -= scratch


class Tanh:
    """Hyperbolic tangent; ``tanh' = 1 - a^2``."""

    name = "tanh"

    def forward(
        self, z: np.ndarray, out: np.ndarray, scratch: np.ndarray | None = None
    ) -> np.ndarray:
        return np.tanh(z, out=out)

    def backprop(self, a: np.ndarray, delta: np.ndarray, scratch: np.ndarray | None = None) -> None:
        # delta * (1 - a^2) as delta - delta*a*a
        s = np.multiply(delta, a, out=scratch)
        s *= a
        delta -= s


class ReLU:
    """Rectified linear unit ``max(0, u)``; ``g' = 1`` where ``a > 0``, else 0."""

    name = "relu"

    def forward(
        self, z: np.ndarray, out: np.ndarray, scratch: np.ndarray | None = None
    ) -> np.ndarray:
        if out.dtype == np.float32 and out.size >= _CLIP_FORM_MIN:
            # numpy's float32 clip loop is vectorised where maximum against a scalar is
            # not: 2.4-2.7x faster from 131,072 entries, 1.04-1.07x on a whole
            # 784-256-256-10 step at batch 128 and 512 (2026-11-28). Both give the same
            # values; clip keeps the sign of a z of -0.0.
            return np.clip(z, 0, np.inf, out=out)
        return np.maximum(z, 0, out=out)

    def backprop(self, a: np.ndarray, delta: np.ndarray, scratch: np.ndarray | None = None) -> None:
        # g'(0) is taken as 0, as PyTorch does. The mask is written as 0.0/1.0 into the
        # scratch of delta's dtype, so the product is one pass of one dtype.
        delta *= np.greater(a, 0, out=scratch)


class LeakyReLU:
    """``u`` for ``u > 0`` else ``slope * u`` (slope 0.01, PyTorch's default)."""

    name = "leaky_relu"

    def __init__(self, slope: float = 0.01) -> None:
        self.slope = slope

    def forward(
        self, z: np.ndarray, out: np.ndarray, scratch: np.ndarray | None = None
    ) -> np.ndarray:
        # max(z, slope*z) equals leaky relu for 0 < slope < 1.
        return np.maximum(z, np.multiply(z, self.slope, out=scratch), out=out)

    def backprop(self, a: np.ndarray, delta: np.ndarray, scratch: np.ndarray | None = None) -> None:
        # a > 0 exactly where z > 0 (the slope is positive), so a tells the branch. The
        # mask of the other branch is written into the scratch's bytes, viewed as bools.
        mask = None if scratch is None else scratch.view(np.bool_)[:, : a.shape[1]]
        mask = np.less_equal(a, 0, out=mask)
        np.multiply(delta, self.slope, out=delta, where=mask)


class Identity:
    """``g(u) = u``, for regression outputs; ``g' = 1``."""

    name = "identity"

    def forward(
        self, z: np.ndarray, out: np.ndarray, scratch: np.ndarray | None = None
    ) -> np.ndarray:
        if out is not z:
            np.copyto(out, z)
        return out

    def backprop(self, a: np.ndarray, delta: np.ndarray, scratch: np.ndarray | None = None) -> None:
        return None


class Exp:
    """``g(u) = e^u``, the output of Poisson regression (a positive mean); ``g' = a``.

    ``z`` is capped at ``log`` of the dtype's largest number first, so that an output
    which would overflow is the largest finite number rather than inf with a warning;
    below the cap the values are ``np.exp``'s own.
    """

    name = "exp"

    def forward(
        self, z: np.ndarray, out: np.ndarray, scratch: np.ndarray | None = None
    ) -> np.ndarray:
        np.minimum(z, _exp_cap(out.dtype), out=out)
        return np.exp(out, out=out)

    def backprop(self, a: np.ndarray, delta: np.ndarray, scratch: np.ndarray | None = None) -> None:
        delta *= a


@functools.lru_cache(maxsize=4)
def _exp_cap(dtype: np.dtype) -> np.floating:
    """The largest ``z`` of ``dtype`` whose ``exp`` is finite in ``dtype``."""
    cap = np.array(math.log(float(np.finfo(dtype).max)), dtype=dtype)
    with np.errstate(over="ignore"):
        while not np.isfinite(np.exp(cap)):
            cap = np.nextafter(cap, dtype.type(0))
    return dtype.type(cap)


class Softmax:
    """``a_j = e^(z_j) / sum_k e^(z_k)`` over the units of a layer.

    Its derivative is a Jacobian, not an elementwise factor:
    ``dC/dz_j = a_j (dC/da_j - sum_k a_k dC/da_k)``. With the cross-entropy cost the
    loss supplies the fused ``a - y`` instead and this is never called.
    """

    name = "softmax"

    def forward(
        self, z: np.ndarray, out: np.ndarray, scratch: np.ndarray | None = None
    ) -> np.ndarray:
        # One column of the scratch holds the row maxima, then the row sums.
        col = None if scratch is None else scratch[:, :1]
        # Subtracting the row maximum leaves softmax unchanged and keeps exp <= 1.
        # (np.maximum.reduce is np.max without its Python wrapper: 1.7 against 4.2 us on
        # a batch of ten rows, 2026-11-28)
        np.subtract(z, np.maximum.reduce(z, axis=1, keepdims=True, out=col), out=out)
        np.exp(out, out=out)
        out /= np.add.reduce(out, axis=1, keepdims=True, out=col)
        return out

    def backprop(self, a: np.ndarray, delta: np.ndarray, scratch: np.ndarray | None = None) -> None:
        dot = np.einsum("ij,ij->i", a, delta)[:, None]
        delta -= dot
        delta *= a


def accepts_scratch(method: Callable[..., Any]) -> bool:
    """True when an activation's or a loss's method takes a ``scratch`` argument.

    The engine asks when it binds a workspace, so that activations and costs written
    with the plain protocol (no ``scratch``) keep working. The answer is cached per
    function.
    """
    return _accepts_scratch(getattr(method, "__func__", method))


@functools.lru_cache(maxsize=256)
def _accepts_scratch(fn: Callable[..., Any]) -> bool:
    try:
        return "scratch" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to read: call it the plain way
        return False


ACTIVATIONS: dict[str, type] = {
    cls.name: cls for cls in (Sigmoid, Tanh, ReLU, LeakyReLU, Identity, Exp, Softmax)
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
