"""The matrix products of the engine, on C-ordered arrays, through numpy's or scipy's BLAS.

numpy and scipy each ship their own OpenBLAS, with its own pool of threads, and each
suits some products best. A workspace takes one of three back ends (:func:`blas_for`),
and every matrix product of its forward sweep, backward dynamic programme and update
goes through it:

* **A batch of one row**, on :class:`ScipyBlas` and one thread (:func:`cap_threads`):
  every product is a matrix-vector product (``gemv``; ``gemm`` with one column is
  several times slower), and scipy's wrappers cost about 0.4 us a call against 0.8 us
  for ``np.dot`` and 1.1 us for a call through ctypes with its arguments converted
  beforehand (a 1 x 1 product, 2026-11-28). They take ``alpha`` and ``beta``
  (``C := alpha A B + beta C``), which lets the SGD update be written straight into
  ``Theta`` as its gradient is formed (``alpha = -learning_rate``, ``beta = 1`` or
  ``1 - learning_rate * weight_decay``: no gradient buffer and two fewer passes over the
  weights).
* **Other small steps** (a few rows, or a narrow network), on :class:`SmallStepBlas`
  and one thread: numpy's OpenBLAS (0.3.31 at the time of writing) computes the forward
  and backward products of a few rows 1.5-3x faster than scipy's (0.3.30), and scipy's
  wrappers are quicker to call for the tiny ones, so each product goes to the library
  that runs it faster. numpy's is called through its own ``cblas_?gemm`` and
  ``cblas_?gemv`` (ctypes), which take ``alpha`` and ``beta`` as scipy's do.
* **Large steps**, on :class:`NumpyBlas` with numpy's threads: the products dominate,
  and numpy's OpenBLAS also does the weight-gradient product ``a.T @ delta`` up to a
  third faster. The products that want ``alpha`` or ``beta`` (the forward ``a @ Theta +
  b`` and the weight gradient applied in place) call its cblas when the result is large
  enough (:data:`DIRECT_MIN`), the rest ``np.dot``.

Where numpy brings another BLAS than the OpenBLAS of its wheels, its cblas is not
called: small steps are scipy's alone, and large ones use ``np.dot`` and a pass of numpy
arithmetic for ``alpha`` and ``beta``.

Two libraries with a pool of threads each fight over the cores when their products
alternate in a loop (measured 14x slower with two threads each). Large steps use numpy's
alone; small steps run with both capped to one thread, as ``fit`` and the benchmark run
them, and the products they leave to scipy are below the sizes at which OpenBLAS wakes a
second thread in any case. (The cost's single dot product is numpy's ``np.vdot``; on a
small step it has too few entries for OpenBLAS to wake a thread.)

BLAS is column-major (Fortran order); deltaflow's arrays are row-major (C order). The
transpose of a C-ordered matrix is a Fortran-ordered view of the same memory, so scipy's
routines get ``A.T`` views and compute the product's transpose, and numpy's cblas is told
the arrays are row-major: nothing is copied. scipy's wrappers are called with positional
arguments (keyword parsing costs more than the product at batch size 1) and write in
place into their ``out`` argument, which must be C-contiguous and of the routine's dtype
(:func:`writable_in_place` checks parameters).
"""

from __future__ import annotations

import ctypes
import functools
import os
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from scipy.linalg import blas as _scipy_blas

__all__ = [
    "DIRECT_MIN",
    "SMALL_PRODUCT",
    "NUMPY_MIN",
    "NumpyBlas",
    "ScipyBlas",
    "SmallStepBlas",
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
#: batch 32 (6.4 M) were as fast or faster on numpy's. (With :class:`SmallStepBlas` on
#: one thread against numpy's on two, 2026-11-28, the same configurations came out either
#: way in repeated runs, 0.86-1.35x, as the other core was free or not; left as it was.)
SMALL_PRODUCT = 2**21


#: on large steps, numpy's cblas is called directly (for its ``alpha`` and ``beta``) only
#: when the result has at least this many entries: what it saves is a pass over the
#: result, about a nanosecond an entry, and a call through ctypes costs a microsecond or
#: two more than ``np.dot`` (checking the arrays and, on the first call with them,
#: converting the arguments; measured 2026-11-28).
DIRECT_MIN = 2**15


def is_small(largest_product: int) -> bool:
    """Whether a step whose largest product has this many multiply-adds is small."""
    return largest_product < SMALL_PRODUCT


def blas_for(dtype: Any, largest_product: int, rows: int = 2) -> Blas:
    """The BLAS for a step of ``rows`` examples whose largest product has this many
    multiply-adds.

    * A small step of one row: scipy's (each product a ``gemv`` whose wrapper costs
      less to call than a call through ctypes).
    * A small step of more rows: :class:`SmallStepBlas`, each product on the library
      that runs it faster; scipy's alone if numpy's cblas is not found.
    * A large step: numpy's, with its threads.
    """
    if not is_small(largest_product):
        return NumpyBlas(dtype)
    if rows > 1:
        blas = SmallStepBlas(dtype)
        if blas.numpy.direct_gemm:
            return blas
    return ScipyBlas.of(dtype)


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

    def _ops_matmul(
        self, A: np.ndarray, B: np.ndarray, out: np.ndarray
    ) -> tuple[Callable[[], Any], ...]:
        if A.shape[0] == 1:
            return (functools.partial(self.gemv, 1.0, B.T, A[0], 0.0, out[0], 0, 1, 0, 1, 0, 1),)
        return (functools.partial(self.gemm, 1.0, B.T, A.T, 0.0, out.T, 0, 0, 1),)

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
    the forward product, the SGD update folded into the weight gradient and the bias),
    numpy's own OpenBLAS is called directly: its ``cblas_?gemm`` and ``cblas_?gemv`` are
    found with ctypes in the library numpy loaded (:func:`_numpy_cblas`). That is the
    same library and thread pool as ``np.dot``, so nothing fights. Where they cannot be
    found (a numpy built against another BLAS) the product goes into a scratch array of
    ``out``'s shape (made on first use) and is added from there: one or two passes
    more, the same result.

    Parameters
    ----------
    dtype : numpy dtype
        float32 or float64.
    direct_min : int, default DIRECT_MIN
        Results with fewer entries than this skip the direct call in the methods and in
        :meth:`ops` alike (so both make the same calls): the call through ctypes costs
        some microseconds that a pass over a small result does not. Small steps, whose
        calls are bound once (:meth:`ops`, about 1 us a call), take 0.
    """

    name = "numpy"

    def __init__(self, dtype: Any, direct_min: int = DIRECT_MIN) -> None:
        self.dtype = np.dtype(dtype)
        self.direct_min = direct_min
        self._scratch: dict[tuple[int, ...], np.ndarray] = {}
        self._cblas = _numpy_cblas(self.dtype)
        self._calls: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    @property
    def direct_gemm(self) -> bool:
        """Whether numpy's ``cblas_?gemm`` and ``cblas_?gemv`` were found, so that
        ``alpha`` and ``beta`` cost nothing extra on results of ``direct_min`` entries
        or more."""
        return self._cblas is not None

    def _direct(self, out: np.ndarray, *arrays: np.ndarray) -> bool:
        """Whether to call cblas for ``out = ... arrays ...``.

        Only when it can take the arrays as they are (C-ordered, of its dtype) and
        ``out`` is large enough for the pass of numpy arithmetic it saves to outweigh
        the call through ctypes (see :data:`DIRECT_MIN`).
        """
        if self._cblas is None or out.size < self.direct_min or not out.flags.writeable:
            return False
        dt = self.dtype
        for a in (out, *arrays):
            if a.dtype != dt or not a.size or not a.flags.c_contiguous:
                return False
        return True

    def ops(self, name: str, *args: Any) -> list[Callable[[], Any]]:
        """The calls that ``getattr(self, name)(*args)`` makes, bound to their arrays.

        As :meth:`ScipyBlas.ops`: the same routines on the same arguments. A call into
        cblas is bound with its arguments already converted to C types (about 1 us a
        call against 3 to 4 us when they are converted on every call).
        """
        return list(getattr(self, "_ops_" + name)(*args))

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

        With cblas: ``b`` copied into the rows, then the product added with
        ``beta = 1``, as :meth:`ScipyBlas.affine` does.
        """
        if self._direct(out, A, B):
            np.copyto(out, b)
            if A.shape[0] == 1:  # out[0] = B.T @ A[0] + out[0]
                self._gemv(1.0, B, A, 1.0, out)
            else:
                self._gemm(False, 1.0, A, B, 1.0, out)
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

        Without cblas, scaling ``B`` (a batch of deltas) instead of the product saves a
        pass over ``out`` (a weight matrix) when the batch has fewer rows than ``A`` has
        columns.
        """
        if alpha == 1.0 and beta == 0.0:
            np.dot(A.T, B, out=out)
        elif self._direct(out, A, B):  # out = alpha A^T B + beta out
            self._gemm(True, alpha, A, B, beta, out)
        else:
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
        """``out = alpha * (column sums of A) + beta out``, as the product ``A.T @ ones``.

        A matrix-vector product (gemv) is 3 to 5 times faster than ``np.add.reduce``
        over axis 0 at these shapes (measured 2026-11-27: 2.4 against 21 us for 512 x 30).
        """
        if alpha == 1.0 and beta == 0.0:
            np.dot(ones, A, out=out)
        elif self._direct(out, A, ones):
            self._gemv(alpha, A, ones, beta, out)
        else:
            sums = self._buffer(out.shape)
            np.dot(ones, A, out=sums)
            _accumulate(out, sums, alpha, beta)

    def _gemm(
        self,
        transpose_a: bool,
        alpha: float,
        A: np.ndarray,
        B: np.ndarray,
        beta: float,
        out: np.ndarray,
    ) -> None:
        """``out = alpha op(A) @ B + beta out`` through cblas (see :func:`_gemm_args`)."""
        key = ("gemm", transpose_a, alpha, beta, id(A), id(B), id(out))
        self._call(key, A, B, out, _gemm_args, (transpose_a, alpha, A, B, beta, out))

    def _gemv(self, alpha: float, M: np.ndarray, x: np.ndarray, beta: float, y: np.ndarray) -> None:
        """``y = alpha M.T @ x + beta y`` through cblas (see :func:`_gemv_args`)."""
        key = ("gemv", alpha, beta, id(M), id(x), id(y))
        self._call(key, M, x, y, _gemv_args, (alpha, M, x, beta, y))

    def _call(
        self,
        key: tuple[Any, ...],
        x: np.ndarray,
        y: np.ndarray,
        z: np.ndarray,
        make_args: Callable[..., tuple[Any, ...]],
        spec: tuple[Any, ...],
    ) -> None:
        """Call the cblas routine named by ``key[0]`` with ``make_args(*spec)``.

        Reading the arrays' addresses and converting the arguments to C types costs
        some 4 us, as much as a small product, and the engine passes the same workspace
        and parameter arrays on every step. So the converted arguments are kept under
        ``key`` (the routine, the scalars and the ids of the three arrays ``x``, ``y``,
        ``z``) and used again while those ids still name the same arrays (a weak
        reference each: nothing here keeps an array alive) with the same shapes and
        strides.
        """
        layout = (x.shape, x.strides, y.shape, y.strides, z.shape, z.strides)
        hit = self._calls.get(key)
        if (
            hit is None
            or hit[0]() is not x
            or hit[1]() is not y
            or hit[2]() is not z
            or hit[3] != layout
        ):
            if len(self._calls) >= _CALLS_MAX:
                self._calls.clear()
            fn = getattr(self._cblas, key[0])
            converted = tuple(t(v) for t, v in zip(fn.argtypes, make_args(*spec)))
            refs = (weakref.ref(x), weakref.ref(y), weakref.ref(z))
            hit = self._calls[key] = (*refs, layout, fn, converted)
        hit[4](*hit[5])

    # The calls each method makes, bound to their arrays (for ops): the same decisions.
    def _ops_matmul(
        self, A: np.ndarray, B: np.ndarray, out: np.ndarray
    ) -> tuple[Callable[[], Any], ...]:
        return (functools.partial(np.dot, A, B, out=out),)

    def _ops_affine(
        self, A: np.ndarray, B: np.ndarray, b: np.ndarray, out: np.ndarray, scratch: Any = None
    ) -> tuple[Callable[[], Any], ...]:
        if self._direct(out, A, B):
            fill = functools.partial(np.copyto, out, b)
            if A.shape[0] == 1:
                return fill, _bind(self._cblas.gemv, _gemv_args(1.0, B, A, 1.0, out), A, B, out)  # type: ignore[union-attr]
            return fill, _bind(self._cblas.gemm, _gemm_args(False, 1.0, A, B, 1.0, out), A, B, out)  # type: ignore[union-attr]
        product = functools.partial(np.dot, A, B, out=out)
        if scratch is None:
            return product, functools.partial(np.add, out, b, out=out)
        # a copy and a same-shape add: no broadcasting ufunc, which numpy buffers
        fill = functools.partial(np.copyto, scratch, b)
        return product, fill, functools.partial(np.add, out, scratch, out=out)

    def _ops_matmul_bt(
        self, A: np.ndarray, B: np.ndarray, out: np.ndarray
    ) -> tuple[Callable[[], Any], ...]:
        return (functools.partial(np.dot, A, B.T, out=out),)

    def _ops_matmul_at(
        self,
        A: np.ndarray,
        B: np.ndarray,
        out: np.ndarray,
        alpha: float = 1.0,
        beta: float = 0.0,
        scratch: Any = None,
    ) -> tuple[Callable[[], Any], ...]:
        if alpha == 1.0 and beta == 0.0:
            return (functools.partial(np.dot, A.T, B, out=out),)
        if self._direct(out, A, B):
            args = _gemm_args(True, alpha, A, B, beta, out)
            return (_bind(self._cblas.gemm, args, A, B, out),)  # type: ignore[union-attr]
        return (functools.partial(self.matmul_at, A, B, out, alpha, beta, scratch),)

    def _ops_column_sums(
        self,
        A: np.ndarray,
        ones: np.ndarray,
        out: np.ndarray,
        alpha: float = 1.0,
        beta: float = 0.0,
    ) -> tuple[Callable[[], Any], ...]:
        if alpha == 1.0 and beta == 0.0:
            return (functools.partial(np.dot, ones, A, out=out),)
        if self._direct(out, A, ones):
            args = _gemv_args(alpha, A, ones, beta, out)
            return (_bind(self._cblas.gemv, args, A, ones, out),)  # type: ignore[union-attr]
        sums = self._buffer(out.shape)
        return (
            functools.partial(np.dot, ones, A, out=sums),
            functools.partial(_accumulate, out, sums, alpha, beta),
        )


def _bind(fn: Any, args: tuple[Any, ...], *arrays: np.ndarray) -> Callable[[], Any]:
    """``fn(*args)`` as a call to make later, its arguments converted to C types once.

    The call keeps ``arrays``, whose addresses ``args`` holds, alive.
    """
    call = functools.partial(fn, *(t(v) for t, v in zip(fn.argtypes, args)))
    call.keep = arrays  # type: ignore[attr-defined]
    return call


def _address(a: np.ndarray) -> int:
    # __array_interface__ is quicker than .ctypes and leaves no reference cycles behind
    # for the garbage collector
    return int(a.__array_interface__["data"][0])


#: the most argument lists a NumpyBlas keeps (a step has a few products per layer; the
#: store is emptied when full)
_CALLS_MAX = 256


def _gemm_args(
    transpose_a: bool, alpha: float, A: np.ndarray, B: np.ndarray, beta: float, out: np.ndarray
) -> tuple[Any, ...]:
    """``cblas_?gemm``'s arguments for ``out = alpha op(A) @ B + beta out``.

    ``op(A)`` is ``A`` or ``A.T``. All three arrays are C-ordered (see
    :meth:`NumpyBlas._direct`), so each leading dimension is its array's row length.
    """
    (m, n), k = out.shape, B.shape[0]
    trans = _TRANS if transpose_a else _NO_TRANS
    return (_ROW_MAJOR, trans, _NO_TRANS, m, n, k, alpha, _address(A), A.shape[1],
            _address(B), n, beta, _address(out), n)  # fmt: skip


def _gemv_args(
    alpha: float, M: np.ndarray, x: np.ndarray, beta: float, y: np.ndarray
) -> tuple[Any, ...]:
    """``cblas_?gemv``'s arguments for ``y = alpha M.T @ x + beta y``, ``M`` C-ordered.

    ``x`` and ``y`` are contiguous, of ``M.shape[0]`` and ``M.shape[1]`` entries (a
    one-row matrix passes as its row).
    """
    rows, cols = M.shape
    return (_ROW_MAJOR, _TRANS, rows, cols, alpha, _address(M), cols, _address(x), 1,
            beta, _address(y), 1)  # fmt: skip


#: on a small step, products of at least this many multiply-adds (and at least two rows)
#: go to numpy's cblas; smaller ones to scipy's wrappers (see :class:`SmallStepBlas`)
NUMPY_MIN = 2**15


#: on a small step, column sums of up to this many entries stay on scipy's ``gemv``
#: (quicker to call, and below the 9,216 entries from which OpenBLAS shares a ``gemv``
#: between threads)
_SCIPY_GEMV_MAX = 8192


class SmallStepBlas:
    """Small steps: each product on the BLAS that runs it faster, both on one thread.

    Measured with both libraries on one thread (2026-11-28, AMD EPYC, float32, bound
    calls): numpy's OpenBLAS (0.3.31) computes the forward product ``a @ Theta`` and the
    backward one ``delta @ Theta.T`` of a few rows 1.5-3x faster than scipy's (0.3.30)
    once they have some 30,000 multiply-adds or more (784 x 30 at 2 to 10 rows: 1.6-2.6x;
    784 x 256 at 10 rows: 1.9x), and the weight gradient about as fast (0.8-1.3x);
    scipy's wrappers cost about 1 us less to call, which wins below that (a 30 x 10
    layer: scipy takes 0.5-0.7 of numpy's time). So a product goes to numpy's BLAS
    (:class:`NumpyBlas` with ``direct_min=0``: its cblas wherever ``alpha`` or ``beta``
    is wanted, ``np.dot`` for the plain products) when it has two rows or more and at
    least :data:`NUMPY_MIN` multiply-adds, and to scipy's otherwise.

    Two libraries in one loop fight over the cores when both run threads. ``fit`` runs
    small steps with both capped to one thread (:func:`cap_threads`), and the products
    scipy is left with are below the sizes at which OpenBLAS starts a second thread
    (262,144 multiply-adds for ``gemm``, 9,216 entries for ``gemv``) in any case.
    """

    name = "numpy+scipy"

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.scipy = ScipyBlas.of(self.dtype)
        self.numpy = NumpyBlas(self.dtype, direct_min=0)

    def _pick(self, rows: int, multiply_adds: int) -> ScipyBlas | NumpyBlas:
        return self.numpy if rows > 1 and multiply_adds >= NUMPY_MIN else self.scipy

    def _for(self, name: str, A: np.ndarray, B: np.ndarray) -> ScipyBlas | NumpyBlas:
        """The library for ``getattr(self, name)(A, B, ...)``."""
        if name == "column_sums":  # a gemv over A's entries; OpenBLAS threads from 9,216
            return self.numpy if A.size > _SCIPY_GEMV_MAX else self.scipy
        # each product has A's entries times the other dimension of B
        other = B.shape[0] if name == "matmul_bt" else B.shape[1]
        return self._pick(A.shape[0], A.size * other)

    def ops(self, name: str, *args: Any) -> list[Callable[[], Any]]:
        """The calls of ``getattr(self, name)(*args)``, bound (see :meth:`ScipyBlas.ops`)."""
        return self._for(name, args[0], args[1]).ops(name, *args)

    def matmul(self, A: np.ndarray, B: np.ndarray, out: np.ndarray) -> None:
        self._for("matmul", A, B).matmul(A, B, out)

    def affine(
        self, A: np.ndarray, B: np.ndarray, b: np.ndarray, out: np.ndarray, scratch: Any = None
    ) -> None:
        self._for("affine", A, B).affine(A, B, b, out, scratch)

    def matmul_bt(self, A: np.ndarray, B: np.ndarray, out: np.ndarray) -> None:
        self._for("matmul_bt", A, B).matmul_bt(A, B, out)

    def matmul_at(
        self,
        A: np.ndarray,
        B: np.ndarray,
        out: np.ndarray,
        alpha: float = 1.0,
        beta: float = 0.0,
        scratch: Any = None,
    ) -> None:
        self._for("matmul_at", A, B).matmul_at(A, B, out, alpha, beta, scratch)

    def column_sums(
        self,
        A: np.ndarray,
        ones: np.ndarray,
        out: np.ndarray,
        alpha: float = 1.0,
        beta: float = 0.0,
    ) -> None:
        self._for("column_sums", A, ones).column_sums(A, ones, out, alpha, beta)


Blas = ScipyBlas | NumpyBlas | SmallStepBlas


# CBLAS's enumerations (cblas.h): CblasRowMajor, CblasNoTrans, CblasTrans
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

#: the exported names of numpy's cblas routines (``{0}`` is s or d, ``{1}`` gemm or gemv)
#: in the OpenBLAS that its wheels bundle (scipy-openblas, 64-bit integers), newest first
_SYMBOLS = ("scipy_cblas_{0}{1}64_", "cblas_{0}{1}64_")


class _Cblas(NamedTuple):
    gemm: Any
    gemv: Any


def _numpy_cblas(dtype: np.dtype) -> _Cblas | None:
    """numpy's own ``cblas_?gemm`` and ``cblas_?gemv`` as ctypes functions, or None.

    The library is the one threadpoolctl reports as numpy's BLAS (the file numpy has
    already loaded, so this opens nothing new). Only the 64-bit-integer (ILP64) builds
    are used, whose symbols carry the ``64_`` suffix: calling a 32-bit-integer build
    with 64-bit arguments would be wrong, so anything else gives None and the caller
    falls back to ``np.dot``. Set ``DELTAFLOW_NO_DIRECT_BLAS=1`` to force that fallback.
    """
    if os.environ.get("DELTAFLOW_NO_DIRECT_BLAS") or dtype.char not in "fd":
        return None
    key = dtype.char
    if key in _CBLAS:
        return _CBLAS[key]
    found = None
    prefix = "s" if key == "f" else "d"
    real = ctypes.c_float if key == "f" else ctypes.c_double
    i64, ptr, enum = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    argtypes = {  # cblas.h, with 64-bit integers
        "gemm": [enum, enum, enum, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64],
        "gemv": [enum, enum, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64],
    }
    for path in _numpy_blas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern in _SYMBOLS:
            fns: dict[str, Any] = {
                r: getattr(lib, pattern.format(prefix, r), None) for r in argtypes
            }
            if all(fn is not None for fn in fns.values()):
                for r, fn in fns.items():
                    fn.argtypes, fn.restype = argtypes[r], None
                found = _Cblas(**fns)
                break
        if found is not None:
            break
    _CBLAS[key] = found
    return found


_CBLAS: dict[str, _Cblas | None] = {}


@functools.lru_cache(maxsize=1)
def _numpy_blas_paths() -> tuple[str, ...]:
    """Files of the BLAS libraries numpy loaded, from threadpoolctl (empty if unknown).

    Found once: threadpoolctl walks every loaded library to answer, and numpy's BLAS is
    loaded with numpy, before any call here.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return ()
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    return tuple(
        str(c.filepath)
        for c in ThreadpoolController().lib_controllers
        if c.user_api == "blas"
        and c.internal_api == "openblas"
        and os.path.basename(os.path.dirname(str(c.filepath))) == "numpy.libs"
        and str(c.filepath).startswith(numpy_dir)
    )


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
    """threadpoolctl's controllers of the OpenBLAS libraries that scipy and numpy ship
    (empty if unknown)."""
    global _CONTROLLERS
    if _CONTROLLERS is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # scikit-learn brings it; without it threads stay as they are
            _CONTROLLERS = []
        else:
            numpy_blas = _numpy_blas_paths()
            _CONTROLLERS = [
                c
                for c in ThreadpoolController().lib_controllers
                if c.user_api == "blas"
                and ("scipy" in os.path.dirname(str(c.filepath)) or str(c.filepath) in numpy_blas)
            ]
    return _CONTROLLERS


def cap_threads(n: int) -> Callable[[], None]:
    """Let scipy's and numpy's BLAS use at most ``n`` threads; return what restores it.

    Waking a second thread costs microseconds, more when the other core is busy, so a
    product of a few microseconds is faster on one (OpenBLAS shares a matrix-vector
    product of 9,216 entries between threads). The libraries are found with
    threadpoolctl; where they cannot be, nothing changes.
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
