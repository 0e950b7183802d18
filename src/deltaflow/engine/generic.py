"""The engine on any array module: forward, cost and backward written once against ``xp``.

:mod:`deltaflow.engine.backprop` is the CPU's hot path, tuned for numpy and one BLAS.
This module is the same dynamic programme written against an array module ``xp``
(numpy, or CuPy on a GPU) and a :class:`Products` binding for the matrix products, so
that a GPU runs the derivation's code rather than a copy of it per layer. On numpy it
computes what :mod:`~deltaflow.engine.backprop` computes (the tests hold the two to
``1e-12`` in float64), which is how this path is tested on a machine without a GPU.

The index convention is :mod:`~deltaflow.engine.backprop`'s: layers ``0..L``,
``a[0] = X``, ``z[l] = a[l-1] @ Theta[l] + b[l]``, ``delta[l] = dC/dz[l]``.

Every call writes into the :class:`Workspace` with ``out=`` and in-place operators and
leaves the cost in a 0-d array of the workspace (``ws.cost_out``) rather than returning a
Python float, so a whole training step runs without a temporary and without waiting for
the device: the condition for capturing it once as a CUDA graph and replaying it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from deltaflow.engine import params
from deltaflow.engine.backprop import Model

__all__ = [
    "NumpyProducts",
    "Products",
    "Workspace",
    "backward",
    "cost",
    "forward",
    "sgd_step",
]


class Products(Protocol):
    """The matrix products of a step, on one array module.

    ``alpha`` and ``beta`` follow BLAS: ``out := alpha * product + beta * out``, which is
    how plain SGD folds its update into the product that forms the gradient.
    """

    def affine(self, x: Any, theta: Any, b: Any, out: Any) -> None:
        """``out = x @ theta + b``."""
        ...

    def matmul_bt(self, d: Any, theta: Any, out: Any) -> None:
        """``out = d @ theta.T``."""
        ...

    def matmul_at(self, a: Any, d: Any, out: Any, alpha: float, beta: float, tmp: Any) -> None:
        """``out = alpha * a.T @ d + beta * out`` (``tmp``: a buffer of ``out``'s shape)."""
        ...

    def column_sums(self, d: Any, ones: Any, out: Any, alpha: float, beta: float, tmp: Any) -> None:
        """``out = alpha * d.T @ ones + beta * out``."""
        ...


class NumpyProducts:
    """:class:`Products` through ``xp.matmul`` and in-place scaling: the reference binding
    for any array module (numpy here; a GPU binding uses cuBLAS's ``alpha``/``beta``)."""

    needs_tmp = True

    def __init__(self, xp: Any = np) -> None:
        self.xp = xp

    def affine(self, x: Any, theta: Any, b: Any, out: Any) -> None:
        self.xp.matmul(x, theta, out=out)
        out += b

    def matmul_bt(self, d: Any, theta: Any, out: Any) -> None:
        self.xp.matmul(d, theta.T, out=out)

    def matmul_at(self, a: Any, d: Any, out: Any, alpha: float, beta: float, tmp: Any) -> None:
        self.xp.matmul(a.T, d, out=tmp)
        _axpby(tmp, out, alpha, beta)

    def column_sums(self, d: Any, ones: Any, out: Any, alpha: float, beta: float, tmp: Any) -> None:
        self.xp.matmul(ones, d, out=tmp)
        _axpby(tmp, out, alpha, beta)


def _axpby(x: Any, out: Any, alpha: float, beta: float) -> None:
    """``out := alpha * x + beta * out``, in place (``x`` is overwritten)."""
    if alpha != 1.0:
        x *= alpha
    if beta == 0.0:
        out[...] = x
        return
    if beta != 1.0:
        out *= beta
    out += x


class Workspace:
    """Buffers for one batch size on one array module: like
    :class:`deltaflow.engine.backprop.Workspace`, plus what keeps a step free of
    temporaries (a column buffer, the cost as a 0-d array, product buffers when the
    binding needs them).

    Parameters
    ----------
    net : Model
        Its ``weights`` are arrays of ``xp``.
    m : int
        Rows per batch.
    xp : module
        numpy or cupy.
    products : Products
    gradients : bool, default True
        Allocate the flat gradient ``grad`` and its views ``dtheta``, ``db``.
    """

    def __init__(
        self, net: Model, m: int, xp: Any, products: Any, *, gradients: bool = True
    ) -> None:
        sizes, dtype = net.sizes, net.dtype
        self.m, self.xp, self.products = m, xp, products
        self.a = [xp.zeros((m, s), dtype=dtype) for s in sizes]
        self.delta: list[Any] = [None] + [xp.zeros((m, s), dtype=dtype) for s in sizes[1:]]
        self.scratch: list[Any] = [None] + [xp.zeros((m, s), dtype=dtype) for s in sizes[1:]]
        self.col = xp.zeros((m, 1), dtype=dtype)
        self.ones = xp.ones(m, dtype=dtype)
        self.cost_out = xp.zeros((), dtype=dtype)
        self.grad: Any = None
        self.dtheta: list[Any] = []
        self.db: list[Any] = []
        if gradients:
            self.grad = xp.zeros(params.count(sizes), dtype=dtype)
            self.dtheta, self.db = params.split(self.grad, sizes)
        # buffers for a binding that cannot scale inside the product (NumpyProducts)
        self.tmp_theta: list[Any] = [None] * len(sizes)
        self.tmp_b: list[Any] = [None] * len(sizes)
        if getattr(products, "needs_tmp", False):
            self.tmp_theta = [None] + [xp.zeros(w.shape, dtype=dtype) for w in net.weights]
            self.tmp_b = [None] + [xp.zeros(s, dtype=dtype) for s in sizes[1:]]
        self.activations, self.loss = list(net.activations), net.loss
        self._views: dict[int, Workspace] = {}

    def rows(self, m: int) -> Workspace:
        """A workspace for the first ``m`` rows, sharing this one's memory."""
        if m == self.m:
            return self
        if m > self.m:
            raise ValueError(f"workspace holds {self.m} rows, asked for {m}")
        view = self._views.get(m)
        if view is None:
            view = object.__new__(Workspace)
            view.__dict__.update(self.__dict__)
            view.m = m
            view.a = [a[:m] for a in self.a]
            view.delta = [None] + [d[:m] for d in self.delta[1:]]
            view.scratch = [None] + [s[:m] for s in self.scratch[1:]]
            view.col, view.ones = self.col[:m], self.ones[:m]
            view.cost_out = self.xp.zeros((), dtype=self.cost_out.dtype)
            view._views = {}
            self._views[m] = view
        return view


# ---------------------------------------------------------------- activations
# g(z) into out (out may be z) and delta := delta * g'(z) from a = g(z), for every
# built-in activation, in the operations numpy and CuPy share.


def _sigmoid(xp: Any, z: Any, out: Any, ws: Workspace, l: int) -> None:
    with np.errstate(over="ignore"):  # e^(-z) = inf gives 1 / (1 + inf) = 0, rightly
        xp.negative(z, out=out)
        xp.exp(out, out=out)
    out += 1.0
    xp.reciprocal(out, out=out)


def _sigmoid_back(xp: Any, a: Any, delta: Any, ws: Workspace, l: int) -> None:
    delta *= a  # delta * a * (1 - a) as delta*a - (delta*a)*a
    s = xp.multiply(delta, a, out=ws.scratch[l])
    delta -= s


def _tanh(xp: Any, z: Any, out: Any, ws: Workspace, l: int) -> None:
    xp.tanh(z, out=out)


def _tanh_back(xp: Any, a: Any, delta: Any, ws: Workspace, l: int) -> None:
    s = xp.multiply(delta, a, out=ws.scratch[l])
    s *= a
    delta -= s


def _relu(xp: Any, z: Any, out: Any, ws: Workspace, l: int) -> None:
    xp.maximum(z, 0, out=out)


def _relu_back(xp: Any, a: Any, delta: Any, ws: Workspace, l: int) -> None:
    delta *= xp.greater(a, 0, out=ws.scratch[l])  # g'(0) = 0, as on the CPU


def _identity(xp: Any, z: Any, out: Any, ws: Workspace, l: int) -> None:
    if out is not z:
        xp.copyto(out, z)


def _identity_back(xp: Any, a: Any, delta: Any, ws: Workspace, l: int) -> None:
    return None


def _softmax(xp: Any, z: Any, out: Any, ws: Workspace, l: int) -> None:
    col = ws.col
    xp.max(z, axis=1, keepdims=True, out=col)  # keeps every exp <= 1
    xp.subtract(z, col, out=out)
    xp.exp(out, out=out)
    xp.sum(out, axis=1, keepdims=True, out=col)
    out /= col


def _softmax_back(xp: Any, a: Any, delta: Any, ws: Workspace, l: int) -> None:
    # dC/dz_j = a_j (dC/da_j - sum_k a_k dC/da_k)
    s, col = ws.scratch[l], ws.col
    xp.multiply(a, delta, out=s)
    xp.sum(s, axis=1, keepdims=True, out=col)
    delta -= col
    delta *= a


Kernel = Callable[[Any, Any, Any, Workspace, int], None]

_FORWARD: dict[str, Kernel] = {
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "relu": _relu,
    "identity": _identity,
    "softmax": _softmax,
}
_BACKPROP: dict[str, Kernel] = {
    "sigmoid": _sigmoid_back,
    "tanh": _tanh_back,
    "relu": _relu_back,
    "identity": _identity_back,
    "softmax": _softmax_back,
}


def _g(ws: Workspace, l: int, z: Any, out: Any) -> None:
    """``out = g[l](z)``."""
    g = ws.activations[l - 1]
    kernel = _FORWARD.get(g.name)
    if g.name == "leaky_relu":
        s = ws.xp.multiply(z, g.slope, out=ws.scratch[l])  # type: ignore[attr-defined]
        ws.xp.maximum(z, s, out=out)  # max(z, slope*z) for 0 < slope < 1
    elif kernel is not None:
        kernel(ws.xp, z, out, ws, l)
    else:  # an activation of the user's: its own method, on the arrays given
        g.forward(z, out)


def _g_backprop(ws: Workspace, l: int, a: Any, delta: Any) -> None:
    """``delta := delta * g[l]'(z[l])`` from ``a = g[l](z[l])``."""
    g = ws.activations[l - 1]
    kernel = _BACKPROP.get(g.name)
    if g.name == "leaky_relu":
        xp, s, slope = ws.xp, ws.scratch[l], g.slope  # type: ignore[attr-defined]
        xp.greater(a, 0, out=s)  # 1 where z > 0, else 0; then slope + (1 - slope) * that
        s *= 1.0 - slope
        s += slope
        delta *= s
    elif kernel is not None:
        kernel(ws.xp, a, delta, ws, l)
    else:
        g.backprop(a, delta)


# ---------------------------------------------------------------------- costs


def cost(net: Model, ws: Workspace, Y: Any, weights: Any = None) -> Any:
    """The cost ``C`` of the batch in ``ws`` after :func:`forward`, as ``ws.cost_out``
    (a 0-d array of ``xp``; ``float(...)`` reads it, which waits for a device)."""
    xp, L, out = ws.xp, len(net.weights), ws.cost_out
    a, s = ws.a[L], ws.scratch[L]
    name = net.loss.name
    if name == "squared_error":
        xp.subtract(a, Y, out=s)
        s *= s
    elif name == "cross_entropy":
        xp.maximum(a, np.finfo(a.dtype).tiny, out=s)  # an output of 0 costs -log(tiny)
        xp.log(s, out=s)
        s *= Y
        s *= -1.0
    elif name == "binary_cross_entropy":
        eps = float(np.finfo(a.dtype).eps)
        d = ws.delta[L]  # free until backward writes delta[L]
        xp.clip(a, eps, 1.0 - eps, out=s)
        xp.negative(s, out=d)
        xp.log1p(d, out=d)  # log(1 - p)
        xp.log(s, out=s)
        s -= d  # y log p + (1 - y) log(1 - p) = y (log p - log(1 - p)) + log(1 - p)
        s *= Y
        s += d
        s *= -1.0
    else:  # a cost of the user's: its own method
        out[...] = net.loss.value(a, Y) if weights is None else net.loss.value(a, Y, weights)
        return out
    if weights is None:
        xp.sum(s, out=out)
        out /= ws.m
    else:
        xp.sum(s, axis=1, keepdims=True, out=ws.col)
        total = float(weights.sum())  # weighted batches run eagerly: reading it may wait
        out[...] = (weights @ ws.col[:, 0]) / total if total > 0 else 0.0
    return out


def _output_delta(net: Model, ws: Workspace, Y: Any, scale: float) -> None:
    """``delta[L] = scale * dC/dz[L]``: the dynamic programme's base case."""
    xp, L = ws.xp, len(net.weights)
    a, out = ws.a[L], ws.delta[L]
    loss, g = net.loss, net.activations[L - 1]
    if loss.name == "squared_error":
        xp.subtract(a, Y, out=out)
        out *= 2.0 * scale
        _g_backprop(ws, L, a, out)
    elif loss.name in ("cross_entropy", "binary_cross_entropy"):
        # the matched output (checked when the network was made) cancels g': a - y
        assert g.name == loss.default_output, "matched cost without its output activation"
        xp.subtract(a, Y, out=out)
        out *= scale
    else:
        loss.output_delta(a, Y, g, out, scale)


# -------------------------------------------------------------------- the sweeps


def forward(net: Model, ws: Workspace) -> Any:
    """Forward sweep from the batch in ``ws.a[0]``: fill ``a[1..L]``, return ``a[L]``."""
    a, mm = ws.a, ws.products
    for l, (theta, b) in enumerate(zip(net.weights, net.biases), start=1):
        mm.affine(a[l - 1], theta, b, a[l])  # z[l] = a[l-1] Theta[l] + b[l]
        _g(ws, l, a[l], a[l])  # a[l] = g(z[l]), in place
    return a[len(net.weights)]


def backward(
    net: Model,
    ws: Workspace,
    Y: Any,
    weights: Any = None,
    *,
    weight_decay: float = 0.0,
    sgd_rate: float | None = None,
) -> None:
    """Backward dynamic programme after :func:`forward`; as
    :func:`deltaflow.engine.backprop.backward` (same arguments, same results)::

        delta[L]   = dC/da[L] * g'(z[L])
        delta[l-1] = (delta[l] @ Theta[l].T) * g'(z[l-1])
        dTheta[l]  = a[l-1].T @ delta[l] / m,  db[l] = column sums of delta[l] / m

    With ``sgd_rate`` the update is folded into the products
    (``alpha = -sgd_rate``, ``beta = 1 - sgd_rate * weight_decay``) and no gradient is
    stored; ``delta[l-1]`` is formed before ``Theta[l]`` changes.
    """
    a, delta, mm = ws.a, ws.delta, ws.products
    L = len(net.weights)
    if weights is None:
        _output_delta(net, ws, Y, 1.0 / ws.m)
    else:
        _output_delta(net, ws, Y, 1.0)
        total = float(weights.sum())
        delta[L] *= (weights / total if total > 0 else weights)[:, None]
    for l in range(L, 0, -1):
        theta, b = net.weights[l - 1], net.biases[l - 1]
        if l > 1:  # delta[l-1] before Theta[l] changes
            mm.matmul_bt(delta[l], theta, delta[l - 1])
        if sgd_rate is None:
            dtheta = ws.dtheta[l - 1]
            if weight_decay:
                ws.xp.copyto(dtheta, theta)
            mm.matmul_at(a[l - 1], delta[l], dtheta, 1.0, weight_decay, ws.tmp_theta[l])
            mm.column_sums(delta[l], ws.ones, ws.db[l - 1], 1.0, 0.0, ws.tmp_b[l])
        else:
            decay = 1.0 - sgd_rate * weight_decay
            mm.matmul_at(a[l - 1], delta[l], theta, -sgd_rate, decay, ws.tmp_theta[l])
            mm.column_sums(delta[l], ws.ones, b, -sgd_rate, 1.0, ws.tmp_b[l])
        if l > 1:
            _g_backprop(ws, l - 1, a[l - 1], delta[l - 1])


def sgd_step(
    net: Model, ws: Workspace, Y: Any, learning_rate: float, weight_decay: float = 0.0
) -> None:
    """One whole plain-SGD step on the batch in ``ws.a[0]`` and ``Y``: forward, the cost
    into ``ws.cost_out``, backward with the update. Nothing in it allocates or waits for
    the device, so on a GPU it is captured once as a CUDA graph."""
    forward(net, ws)
    cost(net, ws, Y)
    backward(net, ws, Y, weight_decay=weight_decay, sgd_rate=learning_rate)
