"""Counting multiply-adds: the dynamic programme against enumerating every path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from deltaflow.errors import ConfigError

if TYPE_CHECKING:
    pass

#: Networks whose path enumeration takes more multiplications than this are not
#: enumerated by :func:`trace_step` (the count is still computed from the sizes).
PATH_ENUMERATION_LIMIT = 200_000


# --------------------------------------------------------------------------- counting
@dataclass(frozen=True)
class OpCounts:
    """Multiply-adds per example for every weight gradient, by two methods.

    Both methods start from the same forward sweep (``W`` multiply-adds, ``W`` the
    number of weights) and the same base case ``delta^(L)``; the counts below are the
    work after that, for the weights (a bias's gradient is ``delta_j^(l)`` itself).

    Attributes
    ----------
    sizes : tuple of int
        ``S_0 .. S_L``.
    weights : int
        ``W = sum_l S_(l-1) S_l``.
    forward : int
        ``W``: one multiply-add per weight for ``z^(l) = a^(l-1) Theta^(l) + b^(l)``.
    recursion : int
        ``sum_(l=1)^(L-1) S_l S_(l+1)``: the products ``Theta^(l+1) delta^(l+1)``.
    derivative : int
        ``sum_(l=1)^(L-1) S_l``: the products with ``g'(z^(l))``.
    read_off : int
        ``W``: one product ``a_k^(l-1) delta_j^(l)`` per weight.
    paths : tuple of int
        For ``l = 1..L``, ``P_l = S_(l+1) ... S_L``: the paths from one unit of layer
        ``l`` to the output layer (1 for ``l = L``).
    path_enumeration : tuple of int
        For ``l = 1..L``, ``S_(l-1) S_l (2 (L - l) P_l + 1)``: every weight of layer
        ``l`` summing, on its own, over its ``P_l`` paths, each a product of
        ``2 (L - l) + 1`` factors (a ``Theta`` and a ``g'`` per layer crossed, then
        ``delta^(L)``), and one last product with ``a_k^(l-1)``.
    """

    sizes: tuple[int, ...]
    weights: int
    forward: int
    recursion: int
    derivative: int
    read_off: int
    paths: tuple[int, ...]
    path_enumeration: tuple[int, ...]

    @property
    def backward(self) -> int:
        """Multiply-adds of the backward dynamic programme after the base case."""
        return self.recursion + self.derivative + self.read_off

    @property
    def path_total(self) -> int:
        """Multiply-adds of the path enumeration, all layers."""
        return sum(self.path_enumeration)


def op_counts(sizes: Any) -> OpCounts:
    """Count the multiply-adds of the dynamic programme and of path enumeration.

    Parameters
    ----------
    sizes : sequence of int
        ``S_0 .. S_L``, at least two layers.

    Returns
    -------
    OpCounts
    """
    S = [int(s) for s in sizes]
    if len(S) < 2 or min(S) < 1:
        raise ConfigError(f"sizes must be at least two positive layer sizes, got {sizes!r}")
    L = len(S) - 1
    W = sum(S[l - 1] * S[l] for l in range(1, L + 1))
    paths = tuple(int(np.prod(S[l + 1 :], dtype=object)) for l in range(1, L + 1))
    per_layer = tuple(S[l - 1] * S[l] * (2 * (L - l) * paths[l - 1] + 1) for l in range(1, L + 1))
    return OpCounts(
        sizes=tuple(S),
        weights=W,
        forward=W,
        recursion=sum(S[l] * S[l + 1] for l in range(1, L)),
        derivative=sum(S[l] for l in range(1, L)),
        read_off=W,
        paths=paths,
        path_enumeration=per_layer,
    )
