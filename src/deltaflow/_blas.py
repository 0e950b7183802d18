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
* **Large steps**: numpy's BLAS, with its threads. The products dominate there and
  numpy's OpenBLAS (0.3.31 against scipy's 0.3.30 at the time of writing) does the
  weight-gradient product ``a.T @ delta`` up to a third faster. ``np.dot`` (with
  ``out=``) has no ``alpha`` or ``beta``, so the two products that want them, the
  forward ``a @ Theta + b`` and the weight gradient applied in place, call the same
  library's ``cblas_?gemm`` through ctypes (the engine steps of 784-256-256-10 ran
  5-17% faster for it at batch sizes 32 to 2048, medians of five interleaved turns,
  2026-11-27); where numpy brings another BLAS they fall back to ``np.dot`` and a pass
  of numpy arithmetic.

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

import ctypes
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.linalg import blas as _scipy_blas

__all__ = [
    "DIRECT_MIN",
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


#: numpy's ``cblas_?gemm`` is called directly (for its ``alpha`` and ``beta``) only when
#: the result has at least this many entries. The call through ctypes costs some 12 us
#: more than ``np.dot`` (measured 2026-11-27: 24 against 9 us for a 128 x 30 x 10
#: product), and what it saves is a pass over the result, about a nanosecond an entry.
DIRECT_MIN = 2**15


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

    def ops(self, name: str, *args: Any) -> list[Callable[[], Any]]:
        """The calls that ``getattr(self, name)(*args)`` makes, bound to their arrays.

        Running them in order does exactly what the method does (the same routines on
        the same arguments). A training step made of bound calls (see
        :class:`deltaflow.backprop.SgdStep`) skips the method dispatch, the transposed
        views and the shape tests each call would otherwise redo: some 15 of the
        130 microseconds of a 784-30-10 step at batch 32.
        """
        return list(getattr(self, "_ops_" + name)(*args))

    def _ops_affine(
        self, A: np.ndarray, B: np.ndarray, b: np.ndarray, out: np.ndarray, scratch: Any = None
    ) -> tuple[Callable[[], Any], ...]:
        fill = functools.partial(np.copyto, out, b)
        if A.shape[0] == 1:
            return fill, functools.partial(self.gemv, 1.0, B.T, A[0], 1.0, out[0], 0, 1, 0, 1, 0, 1)
        return fill, functools.partial(self.gemm, 1.0, B.T, A.T, 1.0, out.T, 0, 0, 1)

    def _ops_matmul_bt(
        self, A: np.ndarray, B: np.ndarray, out: np.ndarray
    ) -> tuple[Callable[[], Any], ...]:
        if A.shape[0] == 1:
            return (functools.partial(self.gemv, 1.0, B.T, A[0], 0.0, out[0], 0, 1, 0, 1, 1, 1),)
        return (functools.partial(self.gemm, 1.0, B.T, A.T, 0.0, out.T, 1, 0, 1),)

    def _ops_matmul_at(
        self,
        A: np.ndarray,
        B: np.ndarray,
        out: np.ndarray,
        alpha: float = 1.0,
        beta: float = 0.0,
        scratch: Any = None,
    ) -> tuple[Callable[[], Any], ...]:
        return (functools.partial(self.gemm, alpha, B.T, A.T, beta, out.T, 0, 1, 1),)

    def _ops_column_sums(
        self,
        A: np.ndarray,
        ones: np.ndarray,
        out: np.ndarray,
        alpha: float = 1.0,
        beta: float = 0.0,
    ) -> tuple[Callable[[], Any], ...]:
        return (functools.partial(self.gemv, alpha, A.T, ones, beta, out, 0, 1, 0, 1, 0, 1),)


class NumpyBlas:
    """The same products through numpy's BLAS; one instance per workspace.

    ``np.dot`` has no ``alpha`` or ``beta``. Where they are asked for (the bias added by
    the forward product, the SGD update folded into the weight gradient), numpy's own
    OpenBLAS is called directly: its ``cblas_?gemm`` is found with ctypes in the library
    numpy loaded (:func:`_numpy_cblas_gemm`). That is the same library and thread pool
    as ``np.dot``, so nothing fights. Where it cannot be found (a numpy built against
    another BLAS) the product goes into a scratch array of ``out``'s shape (made on first
    use) and is added from there: one or two passes more, the same result.
    """

    name = "numpy"

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self._scratch: dict[tuple[int, ...], np.ndarray] = {}
        self._gemm = _numpy_cblas_gemm(self.dtype)

    @property
    def direct_gemm(self) -> bool:
        """Whether numpy's ``cblas_?gemm`` was found, so that ``alpha`` and ``beta`` cost
        nothing extra on results of :data:`DIRECT_MIN` entries or more."""
        return self._gemm is not None

    def _direct(self, A: np.ndarray, B: np.ndarray, out: np.ndarray) -> bool:
        """Whether to call ``cblas_?gemm`` for ``out = ... A ... B``.

        Only when it can take the arrays as they are (C-ordered, of its dtype) and
        ``out`` is large enough for the pass of numpy arithmetic it saves to outweigh
        the call through ctypes (see :data:`DIRECT_MIN`).
        """
        if self._gemm is None or out.size < DIRECT_MIN or not out.flags.writeable:
            return False
        dt = self.dtype
        return all(a.dtype == dt and a.flags.c_contiguous and a.size > 0 for a in (A, B, out))

    def ops(self, name: str, *args: Any) -> list[Callable[[], Any]]:
        """``getattr(self, name)(*args)`` as one bound call (see :meth:`ScipyBlas.ops`).

        The steps that take this BLAS are long enough for the call overhead not to matter.
        """
        return [functools.partial(getattr(self, name), *args)]

    def _row_major_gemm(
        self,
        transpose_a: bool,
        alpha: float,
        A: np.ndarray,
        B: np.ndarray,
        beta: float,
        out: np.ndarray,
    ) -> None:
        """``out = alpha op(A) @ B + beta out``, ``op(A)`` being ``A`` or ``A.T``.

        All three are C-ordered (see :meth:`_direct`), so each leading dimension is
        its array's row length.
        """
        (m, n), k = out.shape, B.shape[0]
        trans = _TRANS if transpose_a else _NO_TRANS
        # the data addresses: __array_interface__ is quicker than .ctypes (1.6 against
        # 2.5 us) and leaves no reference cycles behind for the garbage collector
        A_ptr = A.__array_interface__["data"][0]
        B_ptr = B.__array_interface__["data"][0]
        out_ptr = out.__array_interface__["data"][0]
        self._gemm(_ROW_MAJOR, trans, _NO_TRANS, m, n, k, alpha, A_ptr, A.shape[1], B_ptr, n,
                   beta, out_ptr, n)  # fmt: skip

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
        """``out = A @ B + b``; ``scratch`` (``out``'s shape) holds the rows of ``b``.

        With ``cblas_?gemm``: ``b`` copied into the rows, then the product added with
        ``beta = 1``, as :meth:`ScipyBlas.affine` does.
        """
        if self._direct(A, B, out):
            np.copyto(out, b)
            self._row_major_gemm(False, 1.0, A, B, 1.0, out)
            return
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
        if self._direct(A, B, out):  # out = alpha A^T B + beta out
            self._row_major_gemm(True, alpha, A, B, beta, out)
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


# CBLAS's enumerations (cblas.h): CblasRowMajor, CblasNoTrans, CblasTrans
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

#: the exported names of ``cblas_?gemm`` in the OpenBLAS that numpy's wheels bundle
#: (scipy-openblas, 64-bit integers), newest naming first
_GEMM_SYMBOLS = ("scipy_cblas_{}gemm64_", "cblas_{}gemm64_")


def _numpy_cblas_gemm(dtype: np.dtype) -> Any:
    """numpy's own ``cblas_sgemm`` or ``cblas_dgemm`` as a ctypes function, or None.

    The library is the one threadpoolctl reports as numpy's BLAS (the file numpy has
    already loaded, so this opens nothing new). Only the 64-bit-integer (ILP64) builds
    are used, whose symbols carry the ``64_`` suffix: calling a 32-bit-integer build
    with 64-bit arguments would be wrong, so anything else gives None and the caller
    falls back to ``np.dot``. Set ``DELTAFLOW_NO_DIRECT_BLAS=1`` to force that fallback.
    """
    if os.environ.get("DELTAFLOW_NO_DIRECT_BLAS") or dtype.char not in "fd":
        return None
    key = dtype.char
    if key in _GEMMS:
        return _GEMMS[key]
    found = None
    for path in _numpy_blas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern in _GEMM_SYMBOLS:
            fn = getattr(lib, pattern.format("s" if key == "f" else "d"), None)
            if fn is not None:
                real = ctypes.c_float if key == "f" else ctypes.c_double
                i64, ptr, enum = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
                fn.argtypes = [
                    enum,
                    enum,
                    enum,
                    i64,
                    i64,
                    i64,
                    real,
                    ptr,
                    i64,
                    ptr,
                    i64,
                    real,
                    ptr,
                    i64,
                ]
                fn.restype = None
                found = fn
                break
        if found is not None:
            break
    _GEMMS[key] = found
    return found


_GEMMS: dict[str, Any] = {}


def _numpy_blas_paths() -> list[str]:
    """Files of the BLAS libraries numpy loaded, from threadpoolctl (empty if unknown)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return []
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    return [
        str(c.filepath)
        for c in ThreadpoolController().lib_controllers
        if c.user_api == "blas"
        and c.internal_api == "openblas"
        and os.path.basename(os.path.dirname(str(c.filepath))) == "numpy.libs"
        and str(c.filepath).startswith(numpy_dir)
    ]


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
