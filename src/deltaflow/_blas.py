"""The matrix products of the engine: one BLAS per training loop, on C-ordered arrays.

numpy and scipy each ship their own OpenBLAS, with its own pool of threads, and each
suits one kind of step best:

* **Small steps** (a batch of a few rows, or a narrow network): scipy's BLAS, called
  through ``scipy.linalg.blas``, on one thread (:func:`cap_threads`). Its wrappers cost
  about 1 microsecond a call against 2 for ``np.dot``, they take ``alpha`` and ``beta``
  (``C := alpha A B + beta C``), which lets the SGD update be written straight into
  ``Theta`` as its gradient is formed (``alpha = -learning_rate``, ``beta = 1`` or
  ``1 - learning_rate * weight_decay``: no gradient buffer and two fewer passes over the
  weights), and a batch of one row gets the matrix-vector routine ``gemv`` (``gemm``
  with one column is several times slower).
* **Large steps**: numpy's BLAS (``np.dot`` with ``out=``), with its threads. The
  products dominate there and numpy's OpenBLAS (0.3.31 against scipy's 0.3.30 at the
  time of writing) does the weight-gradient product ``a.T @ delta`` up to a third faster.

A workspace picks one of the two (:func:`blas_for`) and every matrix product of its
forward sweep, backward dynamic programme and update goes through it: alternating the
two libraries within a loop makes their thread pools fight over the cores (measured 14x
slower with two threads each). (The cost's single dot product is numpy's ``np.vdot``;
on a small step it has too few entries for OpenBLAS to wake a thread.)

BLAS is column-major (Fortran order); deltaflow's arrays are row-major (C order). The
transpose of a C-ordered matrix is a Fortran-ordered view of the same memory, so the
calls below pass ``A.T`` views and ask for the product's transpose: nothing is copied.
scipy's wrappers are called with positional arguments (keyword parsing costs more than
the product at batch size 1) and write in place into their ``out`` argument, which must
be C-contiguous and of the routine's dtype (:func:`writable_in_place` checks parameters).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.linalg import blas as _scipy_blas

__all__ = [
    "SMALL_PRODUCT",
    "NumpyBlas",
    "ScipyBlas",
    "blas_for",
    "cap_threads",
    "is_small",
    "writable_in_place",
]

#: a step whose largest matrix product has fewer multiply-adds than this is small: some
#: 50 microseconds of work on one core, too little to share between threads. Measured on
#: a 2-core AMD EPYC (2026-11-27, engine steps, medians of 5 interleaved turns, three
#: runs): 784-256-256-10 at batch 10 (2.0 M) ran 1.15-1.7x faster on scipy's BLAS and one
#: thread than on numpy's and two; 784-30-10 at batch 128 (3.0 M) and 784-256-256-10 at
#: batch 32 (6.4 M) were as fast or faster on numpy's.
SMALL_PRODUCT = 2**21


def is_small(largest_product: int) -> bool:
    """Whether a step whose largest product has this many multiply-adds is small."""
    return largest_product < SMALL_PRODUCT


def blas_for(dtype: Any, largest_product: int) -> ScipyBlas | NumpyBlas:
    """The BLAS for a step of one dtype whose largest product has this many multiply-adds."""
    if is_small(largest_product):
        return ScipyBlas.of(dtype)
    return NumpyBlas(dtype)


class ScipyBlas:
    """scipy's BLAS routines of one dtype, as row-major products (stateless, shared).

    Parameters
    ----------
    dtype : numpy dtype
        float32 or float64.
    """

    name = "scipy"
    #: alpha and beta cost nothing extra: the update can be folded into the product
    native_alpha_beta = True
    _shared: dict[np.dtype, ScipyBlas] = {}

    @classmethod
    def of(cls, dtype: Any) -> ScipyBlas:
        """The instance for ``dtype``, made once."""
        dt = np.dtype(dtype)
        blas = cls._shared.get(dt)
        if blas is None:
            blas = cls._shared[dt] = cls(dt)
        return blas

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.gemm, self.gemv = _scipy_blas.get_blas_funcs(("gemm", "gemv"), dtype=self.dtype)

    def matmul(self, A: np.ndarray, B: np.ndarray, out: np.ndarray) -> None:
        """``out = A @ B`` for ``A`` of shape (m, k), ``B`` of shape (k, n)."""
        if A.shape[0] == 1:  # out[0] = B.T @ A[0]
            self.gemv(1.0, B.T, A[0], 0.0, out[0], 0, 1, 0, 1, 0, 1)
        else:  # out.T = B.T @ A.T
            self.gemm(1.0, B.T, A.T, 0.0, out.T, 0, 0, 1)

    def affine(
        self, A: np.ndarray, B: np.ndarray, b: np.ndarray, out: np.ndarray, scratch: Any = None
    ) -> None:
        """``out = A @ B + b`` (``b`` of shape (n,) added to every row).

        ``b`` is copied into the rows first and the product added with ``beta = 1``:
        one pass fewer than adding it afterwards, and no broadcasting ufunc (numpy
        buffers those, and they are slow at these sizes).
        """
        np.copyto(out, b)
        if A.shape[0] == 1:
            self.gemv(1.0, B.T, A[0], 1.0, out[0], 0, 1, 0, 1, 0, 1)
        else:
            self.gemm(1.0, B.T, A.T, 1.0, out.T, 0, 0, 1)

    def matmul_bt(self, A: np.ndarray, B: np.ndarray, out: np.ndarray) -> None:
        """``out = A @ B.T`` for ``A`` of shape (m, n), ``B`` of shape (k, n)."""
        if A.shape[0] == 1:  # out[0] = B @ A[0]
            self.gemv(1.0, B.T, A[0], 0.0, out[0], 0, 1, 0, 1, 1, 1)
        else:  # out.T = B @ A.T
            self.gemm(1.0, B.T, A.T, 0.0, out.T, 1, 0, 1)

    def matmul_at(
        self,
        A: np.ndarray,
        B: np.ndarray,
        out: np.ndarray,
        alpha: float = 1.0,
        beta: float = 0.0,
        scratch: Any = None,
    ) -> None:
        """``out = alpha A.T @ B + beta out`` for ``A`` of shape (m, k), ``B`` of shape (m, n).

        With ``beta = 0`` this is a weight gradient; with ``beta != 0`` and ``out`` a
        weight matrix it is a weight gradient applied in place.
        """
        # For one row this is an outer product; gemm does it faster than ger at the
        # narrow shapes (ger works along the short dimension) and no slower elsewhere.
        self.gemm(alpha, B.T, A.T, beta, out.T, 0, 1, 1)  # out.T = alpha B.T @ A + beta out.T

    def column_sums(
        self,
        A: np.ndarray,
        ones: np.ndarray,
        out: np.ndarray,
        alpha: float = 1.0,
        beta: float = 0.0,
    ) -> None:
        """``out = alpha * (column sums of A) + beta out``, as the product ``A.T @ ones``.

        ``A`` has shape (m, n), ``ones`` shape (m,) and is all ones, ``out`` shape (n,).
        """
        self.gemv(alpha, A.T, ones, beta, out, 0, 1, 0, 1, 0, 1)


class NumpyBlas:
    """The same products through numpy's BLAS (``np.dot``); one instance per workspace.

    ``np.dot`` has no ``alpha`` or ``beta``: where they are asked for, the product goes
    into a scratch array of ``out``'s shape (made on first use) and is added from there.
    """

    name = "numpy"
    native_alpha_beta = False

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self._scratch: dict[tuple[int, ...], np.ndarray] = {}

    def _buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        buf = self._scratch.get(shape)
        if buf is None:
            buf = self._scratch[shape] = np.empty(shape, dtype=self.dtype)
        return buf

    def matmul(self, A: np.ndarray, B: np.ndarray, out: np.ndarray) -> None:
        np.dot(A, B, out=out)

    def affine(
        self, A: np.ndarray, B: np.ndarray, b: np.ndarray, out: np.ndarray, scratch: Any = None
    ) -> None:
        """``out = A @ B + b``; ``scratch`` (``out``'s shape) holds the rows of ``b``."""
        np.dot(A, B, out=out)
        if scratch is None:
            out += b
        else:  # a copy and a same-shape add: no broadcasting ufunc, which numpy buffers
            np.copyto(scratch, b)
            out += scratch

    def matmul_bt(self, A: np.ndarray, B: np.ndarray, out: np.ndarray) -> None:
        np.dot(A, B.T, out=out)

    def matmul_at(
        self,
        A: np.ndarray,
        B: np.ndarray,
        out: np.ndarray,
        alpha: float = 1.0,
        beta: float = 0.0,
        scratch: Any = None,
    ) -> None:
        """``out = alpha A.T @ B + beta out``; ``scratch`` (``B``'s shape) may hold ``alpha B``.

        Scaling ``B`` (a batch of deltas) instead of the product saves a pass over
        ``out`` (a weight matrix) when the batch has fewer rows than ``A`` has columns.
        """
        if alpha == 1.0 and beta == 0.0:
            np.dot(A.T, B, out=out)
            return
        if scratch is not None and B.shape[0] < A.shape[1]:
            B = np.multiply(B, alpha, out=scratch)
            alpha = 1.0
        product = self._buffer(out.shape)
        np.dot(A.T, B, out=product)
        _accumulate(out, product, alpha, beta)

    def column_sums(
        self,
        A: np.ndarray,
        ones: np.ndarray,
        out: np.ndarray,
        alpha: float = 1.0,
        beta: float = 0.0,
    ) -> None:
        # a matrix-vector product (gemv), 3 to 5 times faster than np.add.reduce over
        # axis 0 at these shapes (measured 2026-11-27: 2.4 against 21 us for 512 x 30)
        if alpha == 1.0 and beta == 0.0:
            np.dot(ones, A, out=out)
            return
        sums = self._buffer(out.shape)
        np.dot(ones, A, out=sums)
        _accumulate(out, sums, alpha, beta)


def _accumulate(out: np.ndarray, x: np.ndarray, alpha: float, beta: float) -> None:
    """``out := alpha x + beta out``, in place (``x`` is overwritten)."""
    if beta == 0.0:
        np.multiply(x, alpha, out=out)
        return
    if beta != 1.0:
        out *= beta
    if alpha != 1.0:
        x *= alpha
    out += x


def writable_in_place(arrays: list[np.ndarray], dtype: np.dtype) -> bool:
    """True when every array can be the ``out`` of the routines above.

    The wrappers copy an argument that is not Fortran-ordered (a C-ordered array's
    transpose) or not of their dtype; for an ``out`` argument the result would then go
    into the copy and be lost. Parameters that fail this are updated another way.
    """
    return all(
        a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable and a.size > 0
        for a in arrays
    )


_CONTROLLERS: list[Any] | None = None


def _controllers() -> list[Any]:
    """threadpoolctl's controllers of the BLAS that scipy ships (empty if unknown)."""
    global _CONTROLLERS
    if _CONTROLLERS is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # scikit-learn brings it; without it threads stay as they are
            _CONTROLLERS = []
        else:
            _CONTROLLERS = [
                c
                for c in ThreadpoolController().lib_controllers
                if c.user_api == "blas" and "scipy" in os.path.dirname(str(c.filepath))
            ]
    return _CONTROLLERS


def cap_threads(n: int) -> Callable[[], None]:
    """Let scipy's BLAS use at most ``n`` threads; return what restores the setting.

    Waking a second thread costs microseconds, more when the other core is busy, so a
    product of a few microseconds is faster on one (OpenBLAS shares a matrix-vector
    product of 9,216 entries between threads). scipy's BLAS is found with threadpoolctl;
    where it cannot be, nothing changes.
    """
    changed = []
    for c in _controllers():
        before = c.get_num_threads()
        if before > n:
            c.set_num_threads(n)
            changed.append((c, before))

    def restore() -> None:
        for c, before in changed:
            c.set_num_threads(before)

    return restore
