"""Input scaling: what a model does to raw features before its first layer.

A :class:`Scaling` is fitted on the training rows and stored with the model, so that
evaluation and prediction transform new inputs exactly as training did:
``x' = (x / divisor - shift) / spread`` column by column.

Kinds
-----
``none``
    Inputs are used as they are.
``pixels``
    Divide by 255 (8-bit images); a bundled image source divides by its own maximum.
``standard``
    Subtract each column's training mean and divide by its standard deviation.
``minmax``
    Map each column's training range to ``[0, 1]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from deltaflow.errors import ConfigError, DataError

__all__ = ["SCALES", "Scaling", "fit_scaling", "looks_like_pixels"]

SCALES = ("auto", "none", "pixels", "standard", "minmax")
_KINDS = SCALES[1:]


@dataclass(frozen=True, eq=False)
class Scaling:
    """The transform ``x' = (x / divisor - shift) / spread``, per column.

    Attributes
    ----------
    kind : str
        ``none``, ``pixels``, ``standard`` or ``minmax``.
    divisor : float
        Raw inputs are divided by it first (255 for 8-bit pixels, 1 otherwise).
    shift, spread : numpy.ndarray of shape (S_0,), or None
        For ``standard`` and ``minmax``; every ``spread`` entry is positive.
    """

    kind: str
    divisor: float = 1.0
    shift: np.ndarray | None = None
    spread: np.ndarray | None = None

    def apply(self, X: np.ndarray, *, divided: bool = False) -> np.ndarray:
        """``X`` transformed, as float32; ``divided``: the divisor was already applied
        (a bundled loader's output)."""
        out: np.ndarray = np.asarray(X, dtype=np.float32)
        if self.divisor != 1.0 and not divided:
            out = out / np.float32(self.divisor)
        if self.shift is not None and self.spread is not None:
            out = (out - self.shift.astype(np.float32)) / self.spread.astype(np.float32)
        return np.ascontiguousarray(out, dtype=np.float32)

    def describe(self) -> str:
        """One phrase saying what :meth:`apply` does."""
        parts = []
        if self.divisor != 1.0:
            parts.append(f"divides the inputs by {self.divisor:g}")
        if self.kind == "standard":
            parts.append("standardises each column with the training mean and deviation")
        elif self.kind == "minmax":
            parts.append("maps each column's training range to [0, 1]")
        return " and ".join(parts) if parts else "uses the inputs unscaled"

    def suspicion(self, X: np.ndarray) -> str | None:
        """A warning when raw inputs ``X`` look already transformed, else None."""
        X = np.asarray(X)
        if X.size == 0:
            return None
        if self.divisor > 1.0 and X.min() >= 0.0 and X.max() <= 1.0:
            return (
                f"every input lies within [0, 1] but the model divides its inputs by "
                f"{self.divisor:g}: they look already scaled; give the raw values "
                f"(0..{self.divisor:g})"
            )
        if self.shift is None:
            return None
        z = self.apply(X)
        centre = 0.0 if self.kind == "standard" else 0.5
        limit = 1.5 if self.kind == "standard" else 1.0
        off = float(np.median(np.abs(z.mean(axis=0, dtype=np.float64) - centre)))
        if off > limit:
            return (
                f"the inputs lie far from the training data once scaled (the model "
                f"{self.describe()}; a typical column is off by {off:.1f}): they look "
                "already transformed or in other units; give the raw values"
            )
        return None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data; :meth:`from_json` reads it back."""
        return {
            "kind": self.kind,
            "divisor": self.divisor,
            "shift": None if self.shift is None else [float(v) for v in self.shift],
            "spread": None if self.spread is None else [float(v) for v in self.spread],
        }

    @classmethod
    def from_json(cls, data: Any, n_inputs: int, where: str) -> Scaling:
        """Read what :meth:`to_json` wrote, checking it against ``n_inputs`` columns.

        Raises
        ------
        DataError
            If anything is missing or malformed, naming ``where``.
        """
        bad = DataError(f"{where}: its stored input scaling is malformed; re-save the model")
        if not isinstance(data, dict) or data.get("kind") not in _KINDS:
            raise bad
        divisor = data.get("divisor")
        if isinstance(divisor, bool) or not isinstance(divisor, (int, float)):
            raise bad
        if not 0 < divisor < math.inf:
            raise bad
        columns: list[np.ndarray | None] = []
        for key in ("shift", "spread"):
            value = data.get(key)
            if value is None:
                columns.append(None)
                continue
            if not isinstance(value, list) or len(value) != n_inputs:
                raise bad
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise bad
            array = np.array(value, dtype=np.float64)
            if not np.isfinite(array).all():
                raise bad
            columns.append(array)
        shift, spread = columns
        if (shift is None) != (spread is None) or (spread is not None and (spread <= 0).any()):
            raise bad
        return cls(data["kind"], float(divisor), shift, spread)


def looks_like_pixels(X: np.ndarray) -> bool:
    """Whether ``X`` is evidently 8-bit images: whole numbers in 0..255, at least 64
    columns, some above 127."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] < 64 or X.size == 0:
        return False
    if X.min() < 0 or X.max() > 255 or X.max() <= 127:
        return False
    return bool(np.all(X == np.round(X)))


def fit_scaling(kind: str, X: np.ndarray, *, loader_divisor: float | None = None) -> Scaling:
    """The scaling ``kind`` fitted on training rows ``X``.

    Parameters
    ----------
    kind : {"auto", "none", "pixels", "standard", "minmax"}
        ``auto``: ``pixels`` for evident 8-bit images (a bundled image source, or
        :func:`looks_like_pixels`), ``standard`` for anything else.
    X : numpy.ndarray of shape (m, S_0)
        Training inputs; for a bundled source, as its loader returns them (already
        divided by ``loader_divisor``).
    loader_divisor : float, optional
        For a bundled image source: what its loader divides raw pixels by. Raw inputs
        given later are divided by it too, whatever ``kind`` adds.

    Raises
    ------
    ConfigError
        For an unknown ``kind``.
    """
    if kind not in SCALES:
        raise ConfigError(f"--scale must be one of {', '.join(SCALES)}; got {kind!r}")
    X = np.asarray(X, dtype=np.float64)
    if loader_divisor is not None:
        if kind in ("auto", "none", "pixels"):
            return Scaling("pixels", float(loader_divisor))
        return _by_column(kind, X, float(loader_divisor))
    if kind == "auto":
        kind = "pixels" if looks_like_pixels(X) else "standard"
    if kind == "none":
        return Scaling("none")
    if kind == "pixels":
        return Scaling("pixels", 255.0)
    return _by_column(kind, X, 1.0)


def _by_column(kind: str, X: np.ndarray, divisor: float) -> Scaling:
    if kind == "standard":
        shift, spread = X.mean(axis=0), X.std(axis=0)
    else:
        shift = X.min(axis=0)
        spread = X.max(axis=0) - shift
    spread = np.where(spread > 0, spread, 1.0)
    return Scaling(kind, divisor, shift, spread)
