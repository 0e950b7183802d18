"""One flat buffer for all parameters (or all gradients), and its per-layer views.

Layout, layer by layer: ``Theta[1]`` (row-major, shape ``(S[0], S[1])``), ``b[1]``,
``Theta[2]``, ``b[2]``, ..., ``Theta[L]``, ``b[L]``. Every view is C-contiguous, so the
engine's products take it as they took separate arrays, while the whole is one vector
for an optimizer update in one call, a gradient all-reduce, or ``scipy.optimize``.
The parameters of layer ``l`` sit together, so a reduction can start on the last layer's
gradient while earlier layers are still being computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["count", "layer_slices", "split"]


def count(sizes: Sequence[int]) -> int:
    """The number of entries of ``Theta[1..L]`` and ``b[1..L]`` together."""
    return sum((s_in + 1) * s_out for s_in, s_out in zip(sizes, sizes[1:]))


def layer_slices(sizes: Sequence[int]) -> list[tuple[slice, slice]]:
    """``(slice of Theta[l], slice of b[l])`` in the flat buffer, at index ``l-1``."""
    out, start = [], 0
    for s_in, s_out in zip(sizes, sizes[1:]):
        theta = slice(start, start + s_in * s_out)
        bias = slice(theta.stop, theta.stop + s_out)
        out.append((theta, bias))
        start = bias.stop
    return out


def split(flat: np.ndarray, sizes: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Views ``Theta[l]`` of shape ``(S[l-1], S[l])`` and ``b[l]`` of shape ``(S[l],)``
    into ``flat`` (1-D, C-contiguous, ``count(sizes)`` entries), at index ``l-1``."""
    if flat.ndim != 1 or flat.shape[0] != count(sizes) or not flat.flags.c_contiguous:
        raise ValueError(
            f"a flat buffer for sizes {list(sizes)} is 1-D and C-contiguous with "
            f"{count(sizes)} entries, got shape {flat.shape}"
        )
    weights, biases = [], []
    for (theta, bias), s_in, s_out in zip(layer_slices(sizes), sizes, sizes[1:]):
        weights.append(flat[theta].reshape(s_in, s_out))
        biases.append(flat[bias])
    return weights, biases
