"""The libraries' primitive product, against numpy's ``@``, on every form it takes."""

import itertools

import numpy as np
import pytest

from deltaflow.engine.blas import NumpyBlas, ScipyBlas


def libraries(dtype, monkeypatch):
    """scipy's; numpy's with cblas for any size (where numpy bundles it); numpy's without."""
    with monkeypatch.context() as patch:
        patch.setenv("DELTAFLOW_NO_DIRECT_BLAS", "1")
        fallback = NumpyBlas(dtype)
    return [ScipyBlas.of(dtype), NumpyBlas(dtype, direct_min=0), fallback]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [1, 4])
def test_every_library_computes_alpha_op_x_op_b_plus_beta_out(dtype, rows, monkeypatch):
    rng = np.random.default_rng(rows)
    k, n = 7, 5
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    forms = itertools.product([False, True], [False, True], [(1.0, 0.0), (-0.5, 0.75)])
    for lib, (tx, tb, (alpha, beta)) in itertools.product(libraries(dtype, monkeypatch), forms):
        X = rng.standard_normal((k, rows) if tx else (rows, k)).astype(dtype)
        B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
        out = rng.standard_normal((rows, n)).astype(dtype)
        scratch = np.empty_like(B)
        want = alpha * (X.T if tx else X) @ (B.T if tb else B) + beta * out
        for call in lib.product((X, tx, B, tb, out, alpha, beta, scratch)):
            call[0](*call[1])
        np.testing.assert_allclose(out, want, **tol, err_msg=f"{lib.name} {tx=} {tb=} {alpha=}")
        # a vector X: out = alpha x @ op(B) + beta out, out a vector
        x = rng.standard_normal(k).astype(dtype)
        y = rng.standard_normal(n).astype(dtype)
        want = alpha * x @ (B.T if tb else B) + beta * y
        for call in lib.product((x, False, B, tb, y, alpha, beta, None)):
            call[0](*call[1])
        np.testing.assert_allclose(y, want, **tol, err_msg=f"{lib.name} vector {tb=}")
