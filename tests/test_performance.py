"""Memory and the fast paths of the engine: no timing assertions, only what must hold.

* A training step after warm-up allocates nothing that grows with the batch or the
  network (tracemalloc's peak stays flat over many steps).
* ``fit``'s peak memory is parameters + optimizer state + one batch of activations plus a
  few bytes of bookkeeping per example, not a multiple of the dataset.
* The fast paths give the same numbers as the plain ones: the fused SGD update, the two
  BLAS back ends, the scratch buffers, the thread cap (restored however ``fit`` ends).
"""

from __future__ import annotations

import functools
import tracemalloc

import numpy as np
import pytest

from deltaflow import DivergenceError, Network
from deltaflow.engine import backprop
from deltaflow.engine.activations import Sigmoid
from deltaflow.engine.blas import NumpyBlas, ScipyBlas, SmallStepBlas, cap_threads, is_small
from deltaflow.training.optimizers import SGD

# (sizes, activation, cost): every activation and cost of the hot loop
NETS = [
    ([20, 16, 10], "sigmoid", "squared_error"),
    ([20, 16, 12, 10], "relu", "cross_entropy"),
    ([20, 16, 10], ["tanh", "sigmoid"], "squared_error"),
    ([20, 16, 10], ["leaky_relu", "identity"], "squared_error"),
]
# Two pairs still allocate (m, S[L]) temporaries per step, noted in the closing note:
# the binary cross-entropy's cost (log p and log(1 - p) side by side) and softmax's
# Jacobian product, used only with a cost other than cross-entropy.
OTHER_NETS = [
    ([20, 16, 10], "tanh", "binary_cross_entropy"),
    ([20, 16, 10], ["leaky_relu", "softmax"], "squared_error"),
]


#: elements in numpy's ufunc iteration buffer (np.getbufsize()): a fixed size, not the batch
BUFFER = 8192


def step(net: Network, ws: backprop.Workspace, X, Y, idx, Ybuf, pred, lr: float) -> float:
    """One step of ``fit``'s inner loop (plain SGD, folded into the backward pass)."""
    n = idx.shape[0]
    view = ws.rows(n)
    X.take(idx, axis=0, out=view.a[0], mode="clip")
    Yb = Ybuf[:n]
    Y.take(idx, axis=0, out=Yb, mode="clip")
    a_L = backprop.forward(net, view)
    c = backprop.cost(net, view, Yb)
    a_L.argmax(axis=1, out=pred[:n])
    backprop.backward(net, view, Yb, sgd_rate=lr)
    return c


def steady_state_growth(net: Network, batch: int, steps: int = 200) -> tuple[int, int]:
    """Bytes by which tracemalloc's current and peak memory grow over ``steps`` steps."""
    rng = np.random.default_rng(0)
    m = 4 * batch + 3  # the last batch of each pass is a smaller one
    X = rng.random((m, net.sizes[0])).astype(net.dtype)
    Y, _ = net.encode_targets(rng.integers(0, net.sizes[-1], m), m)
    if net.loss.name == "binary_cross_entropy":
        Y = (rng.random(Y.shape) > 0.5).astype(net.dtype)
    ws = backprop.Workspace(net, batch, gradients=False)
    Ybuf = np.empty((batch, Y.shape[1]), dtype=net.dtype)
    pred = np.empty(batch, dtype=np.intp)
    order = np.arange(m)
    starts = [s for _ in range(steps) for s in range(0, m, batch)][:steps]
    # Warm-up: row views, scratch bindings and kept BLAS arguments are made once, and
    # some one-time allocations come later than the first few steps (seen between steps
    # 10 and 20 when other test modules had been imported, not with this one alone);
    # a leak grows on every step after them.
    for start in [s for _ in range(50) for s in range(0, m, batch)][:50]:
        step(net, ws, X, Y, order[start : start + batch], Ybuf, pred, 1e-3)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for start in starts:
            step(net, ws, X, Y, order[start : start + batch], Ybuf, pred, 1e-3)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before, peak - before


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes, act, cost", NETS)
def test_training_steps_allocate_nothing_that_scales(sizes, act, cost, dtype):
    net = Network(sizes, act, cost, dtype=dtype, seed=0)
    grew, peak_one = steady_state_growth(net, 1, steps=200)
    # a leak of even 5 bytes a step would show over the 200 steps
    assert grew < 1024, f"memory grew by {grew} bytes over 200 steps"
    # two batch sizes on each BLAS path: scipy's (small steps) and numpy's (large)
    pairs = [(4096, 6144), (8192, 32768)]
    assert [is_small(b * max(w.size for w in net.weights)) for b, _ in pairs] == [True, False]
    peaks = {b: steady_state_growth(net, b, steps=20)[1] for pair in pairs for b in pair}
    # Nothing grows with the batch: a step holds Python's small objects (array views,
    # floats, the addresses handed to cblas) and at most numpy's fixed iteration buffer (8192
    # elements, for a cast or a broadcast), never a batch-sized array; one (8192, 16)
    # array would be 512 KB.
    itemsize = np.dtype(dtype).itemsize
    for small, large in pairs:
        assert abs(peaks[large] - peaks[small]) < 2048, peaks
    assert max(peaks.values()) < BUFFER * itemsize + 8192 < 8192 * 16 * itemsize, peaks
    assert peak_one < 8192


def test_a_wide_network_takes_the_large_path_and_allocates_nothing_either():
    """Large steps go through numpy's BLAS, whose alpha/beta emulation reuses buffers."""
    net = Network([300, 200, 10], "relu", "cross_entropy", dtype="float32", seed=0)
    assert not is_small(64 * 300 * 200)
    assert isinstance(backprop.Workspace(net, 64).blas, NumpyBlas)
    grew, peak = steady_state_growth(net, 64, steps=40)
    assert grew < 1024 and peak < BUFFER * 4 + 8192 < 64 * 200 * 4


def fit_peak(net_args, m: int, batch: int, **fit_kwargs) -> tuple[int, int]:
    """Peak bytes that ``fit`` allocates on ``m`` rows (the data made beforehand)."""
    net = Network(*net_args, dtype="float32", seed=0)
    rng = np.random.default_rng(1)
    X = rng.random((m, net.sizes[0]), dtype=np.float32)
    y = rng.integers(0, net.sizes[-1], m)
    params = sum(p.nbytes for p in net.weights + net.biases)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        net.fit(X, y, epochs=2, batch_size=batch, learning_rate=0.01, **fit_kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before, params


@pytest.mark.parametrize("optimizer, state_copies", [("sgd", 0), ("adam", 3)])
def test_fit_peak_memory_is_parameters_and_one_batch_not_the_dataset(optimizer, state_copies):
    args = ([784, 128, 10], "sigmoid", "squared_error")
    batch = 32
    small_m, large_m = 2_000, 8_000
    peak_small, params = fit_peak(args, small_m, batch, optimizer=optimizer)
    peak_large, _ = fit_peak(args, large_m, batch, optimizer=optimizer)
    example = 784 * 4  # bytes of one row of X
    per_example = (peak_large - peak_small) / (large_m - small_m)
    # Per example, fit keeps a few indices and a one-hot target (and check_X's
    # finiteness mask of one byte per input): a fraction of the example, never a copy.
    assert per_example < 0.3 * example, per_example
    # What does not grow with the data: the parameters' snapshot and optimizer state
    # (Adam: m, v and the gradients) and one batch of a, delta and scratch per layer.
    batch_activations = 3 * batch * sum(args[0]) * 4
    fixed = peak_small - per_example * small_m
    budget = (1 + state_copies) * params + 2 * batch_activations + 256 * 1024
    assert fixed < budget, (fixed, budget)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes, act, cost", NETS + OTHER_NETS)
def test_fused_sgd_update_equals_gradient_then_step(sizes, act, cost, dtype):
    """Theta := Theta - alpha (dC/dTheta + lambda Theta) in one product, as in two steps."""
    rng = np.random.default_rng(3)
    for m in (1, 5):
        fused = Network(sizes, act, cost, dtype=dtype, seed=4)
        plain = fused.copy()
        X = rng.random((m, sizes[0])).astype(dtype)
        Y, _ = fused.encode_targets(rng.integers(0, sizes[-1], m), m)
        ws = backprop.Workspace(fused, m, gradients=False)
        backprop.forward(fused, ws, X)
        backprop.backward(fused, ws, Y, weight_decay=0.01, sgd_rate=0.3)
        ws2 = backprop.Workspace(plain, m)
        backprop.forward(plain, ws2, X)
        backprop.backward(plain, ws2, Y, weight_decay=0.01)
        SGD().step(plain.weights + plain.biases, ws2.dtheta + ws2.db, 0.3)
        tol = 1e-5 if dtype == "float32" else 1e-13
        for p, q in zip(fused.weights + fused.biases, plain.weights + plain.biases):
            np.testing.assert_allclose(p, q, rtol=tol, atol=tol)


def numpy_blas_without_direct_gemm(dtype, monkeypatch):
    """A NumpyBlas that takes the np.dot fallback, as on a numpy built with another BLAS."""
    with monkeypatch.context() as patch:
        patch.setenv("DELTAFLOW_NO_DIRECT_BLAS", "1")
        blas = NumpyBlas(dtype)
    assert not blas.direct_gemm
    return blas


def run_product(blas, bound: bool, name: str, *args) -> None:
    """``getattr(blas, name)(*args)``, or the same product as the calls ``ops`` binds."""
    if bound:
        for call in blas.ops(name, *args):
            call()
    else:
        getattr(blas, name)(*args)


@pytest.mark.parametrize("bound", [False, True], ids=["methods", "bound"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m", [1, 3, 40])
def test_every_blas_back_end_computes_the_same_products(dtype, m, bound, monkeypatch):
    rng = np.random.default_rng(m)
    k, n = 17, 6
    A = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    D = rng.standard_normal((m, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    ones = np.ones(m, dtype=dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    fallback = numpy_blas_without_direct_gemm(dtype, monkeypatch)
    monkeypatch.setattr("deltaflow.engine.blas.DIRECT_MIN", 1)  # cblas even for these small arrays
    backends = [ScipyBlas.of(dtype), NumpyBlas(dtype), NumpyBlas(dtype, direct_min=0)]
    backends += [fallback, SmallStepBlas(dtype)]
    for blas in backends:
        run = functools.partial(run_product, blas, bound)
        z = np.full((m, n), np.nan, dtype=dtype)
        run("affine", A, B, bias, z, np.empty_like(z))
        np.testing.assert_allclose(z, A @ B + bias, **tol)
        out = np.full((m, n), np.nan, dtype=dtype)  # old contents must not leak (beta = 0)
        run("matmul", A, B, out)
        np.testing.assert_allclose(out, A @ B, **tol)
        back = np.full((m, k), np.nan, dtype=dtype)
        run("matmul_bt", D, B, back)
        np.testing.assert_allclose(back, D @ B.T, **tol)
        grad = np.full((k, n), np.nan, dtype=dtype)
        run("matmul_at", A, D, grad)
        np.testing.assert_allclose(grad, A.T @ D, **tol)
        theta = B.copy()
        run("matmul_at", A, D, theta, -0.5, 0.9, np.empty_like(D))
        np.testing.assert_allclose(theta, 0.9 * B - 0.5 * A.T @ D, **tol)
        sums = np.full(n, np.nan, dtype=dtype)
        run("column_sums", D, ones, sums)
        np.testing.assert_allclose(sums, D.sum(axis=0), **tol)
        b = np.ones(n, dtype=dtype)
        run("column_sums", D, ones, b, -2.0, 1.0)
        np.testing.assert_allclose(b, 1 - 2 * D.sum(axis=0), **tol)


def test_small_steps_send_each_product_to_the_library_that_runs_it_faster(monkeypatch):
    """numpy's cblas for products of two rows or more and NUMPY_MIN multiply-adds."""
    from deltaflow.engine.blas import NUMPY_MIN, _numpy_blas_paths

    if not _numpy_blas_paths():
        pytest.skip("this numpy does not bundle OpenBLAS (scipy's BLAS takes small steps)")
    net = Network([784, 30, 10], dtype="float32", seed=0)
    ws = backprop.Workspace(net, 10, gradients=False)
    blas = ws.blas
    assert isinstance(blas, SmallStepBlas) and blas.name == "numpy+scipy"
    theta1, theta2 = net.weights
    assert 10 * 784 * 30 >= NUMPY_MIN > 10 * 30 * 10
    assert blas._for("affine", ws.a[0], theta1) is blas.numpy
    assert blas._for("matmul_at", ws.a[0], ws.delta[1]) is blas.numpy
    assert blas._for("affine", ws.a[1], theta2) is blas.scipy
    assert blas._for("matmul_bt", ws.delta[2], theta2) is blas.scipy
    assert blas._for("column_sums", ws.delta[1], ws.ones) is blas.scipy
    # a batch of one is all gemv, on scipy's BLAS; so is the view of one row
    assert blas._for("affine", ws.rows(1).a[0], theta1) is blas.scipy
    assert isinstance(backprop.Workspace(net, 1).blas, ScipyBlas)
    # without numpy's cblas, small steps are scipy's alone
    monkeypatch.setenv("DELTAFLOW_NO_DIRECT_BLAS", "1")
    monkeypatch.setattr("deltaflow.engine.blas._CBLAS", {})
    assert isinstance(backprop.Workspace(net, 10).blas, ScipyBlas)


def test_numpy_blas_reuses_converted_arguments_only_for_the_same_arrays_as_they_were():
    """The arguments kept per arrays: reused, never for other arrays, never keeping one."""
    import gc
    import weakref

    blas = NumpyBlas("float64", direct_min=0)
    if not blas.direct_gemm:
        pytest.skip("this numpy does not bundle OpenBLAS (the np.dot fallback is used)")
    rng = np.random.default_rng(0)
    A, D = rng.standard_normal((6, 8)), rng.standard_normal((6, 5))
    theta = rng.standard_normal((8, 5))
    for _ in range(3):  # the same arrays: one entry, the right product each time
        want = 0.5 * theta - A.T @ D
        blas.matmul_at(A, D, out=theta, alpha=-1.0, beta=0.5)
        np.testing.assert_allclose(theta, want, rtol=1e-12)
    assert len(blas._calls) == 1
    # fresh arrays on every call (whose ids Python may hand out again): always right
    for _ in range(20):
        A2, D2 = rng.standard_normal((6, 8)), rng.standard_normal((6, 5))
        out = np.zeros((8, 5))
        blas.matmul_at(A2, D2, out=out, alpha=2.0, beta=0.0)
        np.testing.assert_allclose(out, 2 * A2.T @ D2, rtol=1e-12)
    # an array reshaped in place keeps its id but not its entry
    flat = rng.standard_normal((6, 8))
    blas.matmul_at(flat, D, out=theta, alpha=1.0, beta=0.0 + 1e-300)
    flat.shape = (8, 6)
    D3, out = rng.standard_normal((8, 5)), np.zeros((6, 5))
    blas.matmul_at(flat, D3, out=out, alpha=1.0, beta=1e-300)
    np.testing.assert_allclose(out, flat.T @ D3, rtol=1e-12)
    # and nothing kept alive
    gone = rng.standard_normal((6, 8))
    ref = weakref.ref(gone)
    blas.matmul_at(gone, D, out=theta, alpha=-1.0, beta=1.0)
    del gone
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_blas_calls_numpy_own_gemm_where_numpy_bundles_openblas(dtype):
    """numpy's wheels bundle an ILP64 OpenBLAS; its cblas gemm gives alpha and beta."""
    from deltaflow.engine.blas import DIRECT_MIN, _Cblas, _numpy_blas_paths

    if not _numpy_blas_paths():
        pytest.skip("this numpy does not bundle OpenBLAS (the np.dot fallback is used)")
    blas = NumpyBlas(dtype)
    assert blas.direct_gemm
    calls = []
    cblas = blas._cblas

    def gemm(*args):
        calls.append(tuple(a.value for a in args[3:6]))  # m, n, k, as C integers
        cblas.gemm(*args)

    gemm.argtypes = cblas.gemm.argtypes
    blas._cblas = _Cblas(gemm, cblas.gemv)
    rng = np.random.default_rng(0)
    k, n = 300, DIRECT_MIN // 300 + 1  # a weight matrix just over the threshold
    A = rng.standard_normal((9, k)).astype(dtype)
    D = rng.standard_normal((9, n)).astype(dtype)
    theta = rng.standard_normal((k, n)).astype(dtype)
    want = 0.5 * theta - 2.0 * A.T @ D
    blas.matmul_at(A, D, out=theta, alpha=-2.0, beta=0.5)
    assert calls == [(k, n, 9)]
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(theta, want, **tol)
    # arrays cblas cannot take as they are go through np.dot, with the same result
    z = np.empty((k, n), dtype=dtype)
    square = np.asfortranarray(A.T @ A)
    blas.affine(square, theta, np.ones(n, dtype=dtype), out=z)
    assert len(calls) == 1
    np.testing.assert_allclose(z, square @ theta + 1, **tol)
    # and small results through np.dot, where the call through ctypes would cost more
    small = np.zeros((9, 3), dtype=dtype)
    blas.matmul_at(D[:, :9].copy(), theta[:9, :3].copy(), out=small, alpha=2.0, beta=1.0)
    assert len(calls) == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
# scipy's gemv (one row); scipy's gemm (7 rows); numpy's cblas and scipy's gemm (40 rows
# of 60 inputs: a small step whose first layer goes to numpy); numpy's BLAS (large)
@pytest.mark.parametrize("m", [1, 7, 40, 300])
@pytest.mark.parametrize("sizes, act, cost", NETS)
def test_bound_sgd_step_is_the_plain_step_bit_for_bit(sizes, act, cost, dtype, m):
    width = {40: 3, 300: 30}.get(m, 1)
    sizes = [sizes[0] * width, *sizes[1:]]
    rng = np.random.default_rng(m)
    nets = [Network(sizes, act, cost, dtype=dtype, seed=3) for _ in range(2)]
    wss = [backprop.Workspace(net, m, gradients=False) for net in nets]
    names = {1: "scipy", 7: "numpy+scipy", 40: "numpy+scipy", 300: "numpy"}
    if not NumpyBlas(dtype).direct_gemm:  # a numpy without cblas: scipy takes small steps
        names.update({7: "scipy", 40: "scipy"})
    assert wss[0].blas.name == names[m]
    Y = np.empty((m, sizes[-1]), dtype=dtype)
    bound = backprop.SgdStep(nets[1], wss[1], Y, 0.3, weight_decay=0.01)
    for _ in range(3):
        X = rng.random((m, sizes[0])).astype(dtype)
        Y[...] = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], m)]
        for ws in wss:
            ws.a[0][...] = X
        backprop.forward(nets[0], wss[0])
        c = backprop.cost(nets[0], wss[0], Y)
        backprop.backward(nets[0], wss[0], Y, weight_decay=0.01, sgd_rate=0.3)
        a_L = bound.forward()
        assert bound.cost() == c
        bound.backward()
        np.testing.assert_array_equal(a_L, wss[0].a[-1])
        for p, q in zip(nets[0].weights + nets[0].biases, nets[1].weights + nets[1].biases):
            np.testing.assert_array_equal(p, q)


def test_an_activation_without_scratch_still_trains():
    """The plain two-argument protocol works: the engine passes scratch only if asked."""

    class PlainSigmoid:
        name = "sigmoid"

        def forward(self, z, out):
            return Sigmoid().forward(z, out)

        def backprop(self, a, delta):
            delta *= a * (1 - a)

    rng = np.random.default_rng(0)
    X, y = rng.random((60, 8)), rng.integers(0, 3, 60)
    plain = Network([8, 6, 3], [PlainSigmoid(), PlainSigmoid()], seed=2)
    builtin = Network([8, 6, 3], "sigmoid", seed=2)
    for net in (plain, builtin):
        net.fit(X, y, epochs=3, batch_size=7, learning_rate=0.5, seed=0)
    for p, q in zip(plain.weights, builtin.weights):
        np.testing.assert_allclose(p, q, rtol=1e-12)


def blas_threads_now() -> list[int]:
    """The threads of scipy's and numpy's BLAS, which small steps cap to one."""
    from deltaflow.engine.blas import _controllers

    return [c.get_num_threads() for c in _controllers()]


def test_thread_cap_is_undone_when_fit_ends_or_fails():
    pytest.importorskip("threadpoolctl")
    before = blas_threads_now()
    net = Network([8, 5, 2], seed=0)
    X = np.random.default_rng(0).random((40, 8))
    net.fit(X, np.arange(40) % 2, epochs=2, batch_size=4)
    assert blas_threads_now() == before
    with pytest.raises(DivergenceError):
        Network([8, 5, 2], "relu", "squared_error", seed=0).fit(
            X * 1e30, X[:, :2] * 1e30, epochs=2, batch_size=4, learning_rate=1e10
        )
    assert blas_threads_now() == before
    restore = cap_threads(1)
    assert all(t == 1 for t in blas_threads_now())
    restore()
    assert blas_threads_now() == before


def test_bench_command_runs_a_tiny_grid_and_writes_json(tmp_path, capsys):
    import json

    from deltaflow.cli import main

    out = tmp_path / "bench.json"
    argv = ["bench", "--arch", "784-4-10:sigmoid:squared_error", "--batch", "1,16"]
    argv += ["--dtype", "float64", "--repeats", "2", "--seconds", "0.01", "--quiet"]
    argv += ["--contenders", "deltaflow,steps,limit", "--json", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "784-4-10 sigmoid squared_error, float64" in table and "of limit" in table
    rows = json.loads(out.read_text())["rows"]
    assert [r["batch"] for r in rows] == [1, 16]
    for r in rows:
        assert set(r["samples_per_s"]) == {"deltaflow", "steps", "limit"}
        assert all(v > 0 for v in r["samples_per_s"].values())
        assert len(r["turns"]["deltaflow"]) == 2
        assert r["of_limit"] == pytest.approx(
            r["samples_per_s"]["deltaflow"] / r["samples_per_s"]["limit"]
        )
    assert main(argv) == 2  # the JSON file exists: refused without --force
    assert "already exists" in capsys.readouterr().err
    assert main(["bench", "--arch", "20-4-3:relu:cross_entropy"]) == 2
    assert "784 inputs" in capsys.readouterr().err


def test_epoch_overhead_script_times_fit_around_a_step_that_does_no_arithmetic(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "epoch_overhead.py"
    spec = importlib.util.spec_from_file_location("epoch_overhead", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    net = Network([784, 4, 10], "sigmoid", seed=0)
    before = [w.copy() for w in net.weights]
    X = np.random.default_rng(0).random((64, 784))
    own = script.own_cost(net, X, np.arange(64) % 10, 16, 2)
    assert own > 0
    assert backprop.SgdStep is not script.NoArithmeticStep  # put back afterwards
    for w, b in zip(net.weights, before):  # the stand-in step changed nothing
        np.testing.assert_array_equal(w, b)

    from threadpoolctl import threadpool_info

    threads_before = [i["num_threads"] for i in threadpool_info()]
    assert script.main(["--batch", "16", "--rows", "256", "--epochs", "1", "--turns", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 784")]
    assert len(lines) == 2  # one row per network
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == "16" and float(cells[7]) > 0 and cells[8].endswith("%")
    assert threads_before == [i["num_threads"] for i in threadpool_info()]  # restored
