"""The forward sweep and the backward dynamic programme, on preallocated buffers.

Index convention (the derivation's, kept everywhere in deltaflow):

* layers ``l = 0..L``; layer ``l`` has ``S[l]`` units; ``a[0] = X``;
* ``Theta[l]`` (``net.weights[l-1]``) has shape ``(S[l-1], S[l])`` and ``b[l]``
  (``net.biases[l-1]``) shape ``(S[l],)``, for ``l = 1..L``;
* ``z[l] = a[l-1] @ Theta[l] + b[l]`` and ``a[l] = g[l](z[l])``, each of shape ``(m, S[l])``;
* ``delta[l] = dC/dz[l]``, the table the dynamic programme fills, of shape ``(m, S[l])``.

A batch of ``m`` examples is a matrix of ``m`` rows, so every step is one matrix product
over the whole batch: there is no per-example loop.

How it is kept fast (the benchmark in ``benchmarks/bench.py`` shows each claim):

* The :class:`Workspace` holds every array whose size scales with the batch, allocated
  once; :func:`forward` and :func:`backward` only write into it (``out=`` and in-place
  operators, and a scratch buffer for the activations' derivatives and the cost), so a
  training step allocates nothing.
* Every matrix product goes through one BLAS (:mod:`deltaflow.engine.blas`), with the routine
  that suits the shape, on transposed views rather than copies.
* ``a[0]`` may be a scipy.sparse CSR matrix: the first layer's product is then
  sparse @ dense, ``z[1] = a[0] @ Theta[1] + b[1]``, and its weight gradient
  ``a[0].T @ delta[1]``; nothing is densified.
* The ``1/m`` of the mean is folded into ``delta[L]``, and with plain SGD the update
  ``Theta := Theta - alpha dC/dTheta`` is folded into the product that forms the
  gradient (``gemm`` with ``alpha = -learning_rate`` and ``beta = 1``): the gradient is
  never stored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from scipy import sparse

from deltaflow.engine import params
from deltaflow.engine.activations import Activation, accepts_scratch
from deltaflow.engine.blas import blas_for, is_small
from deltaflow.engine.losses import Loss

__all__ = ["Model", "SgdStep", "Workspace", "backward", "blas_threads", "cost", "forward"]


class Model(Protocol):
    """What the engine reads of a network: the sizes ``S[0..L]``, ``Theta[l]`` and ``b[l]``
    (``weights[l-1]``, ``biases[l-1]``), ``g[l]`` (``activations[l-1]``), the cost and
    the dtype. :class:`deltaflow.Network` is one."""

    sizes: list[int]
    activations: list[Activation]
    loss: Loss
    dtype: np.dtype

    @property
    def weights(self) -> list[np.ndarray]: ...

    @property
    def biases(self) -> list[np.ndarray]: ...

    @property
    def L(self) -> int: ...


class Workspace:
    """Buffers for one batch size: ``a[0..L]``, ``delta[1..L]``, scratch and the gradients.

    A workspace serves the network it was made for: its shapes, dtype, activations and
    cost (whose methods it binds to its scratch buffers once, here).

    Parameters
    ----------
    net : Network
        The network whose shapes and dtype the buffers take.
    m : int
        The number of examples (rows) in a batch.
    gradients : bool, default True
        Allocate ``dtheta`` and ``db``. Training with plain SGD folds the update into
        the backward pass and needs neither.
    input_buffer : bool, default True
        Allocate ``a[0]``. Without it every batch must be passed to :func:`forward`
        (as sparse batches are, which would leave a dense ``a[0]`` unused).

    Attributes
    ----------
    a : list of ndarray
        ``a[l]`` of shape ``(m, S[l])`` for ``l = 0..L``. ``a[0]`` is the input batch;
        ``a[l]`` for ``l >= 1`` holds ``z[l]`` for a moment and then ``g(z[l])``.
        ``a[0]`` may also be a sparse CSR batch handed to :func:`forward`.
    delta : list of ndarray or None
        ``delta[l]`` of shape ``(m, S[l])`` for ``l = 1..L``; ``delta[0]`` is None
        (the input has no ``z``).
    grad : ndarray of shape (n_params,) or None
        The whole gradient in one vector, laid out like ``net.params`` (``dTheta[1]``,
        ``db[1]``, ``dTheta[2]``, ...; see :mod:`deltaflow.engine.params`); None when
        ``gradients=False``.
    dtheta, db : list of ndarray
        ``dC/dTheta[l]`` and ``dC/db[l]`` at index ``l-1``, like ``net.weights``: views
        into ``grad`` (empty lists when ``gradients=False``).
    scratch : list of ndarray or None
        ``scratch[l]`` of shape ``(m, S[l])`` for ``l = 1..L``, overwritten at will by
        the activations and the cost; all layers share one block of memory.
    ones : ndarray of shape (m,)
        All ones: ``db[l]`` is the product ``delta[l].T @ ones``.
    """

    def __init__(
        self, net: Model, m: int, *, gradients: bool = True, input_buffer: bool = True
    ) -> None:
        sizes, dtype = net.sizes, net.dtype
        self.m = m
        self.a: list[Any] = [np.zeros((m, s), dtype=dtype) for s in sizes[1:]]
        self.a.insert(0, np.zeros((m, sizes[0] if input_buffer else 0), dtype=dtype))
        self.delta: list[Any] = (
            [None]
            + [  # delta[0] is None: the input has no z
                np.zeros((m, s), dtype=dtype) for s in sizes[1:]
            ]
        )
        self._scratch_block = np.zeros(m * max(sizes[1:]), dtype=dtype)
        self.ones = np.ones(m, dtype=dtype)
        self.grad: np.ndarray | None = None
        self.dtheta: list[np.ndarray] = []
        self.db: list[np.ndarray] = []
        if gradients:
            self.grad = np.zeros(params.count(sizes), dtype=dtype)
            self.dtheta, self.db = params.split(self.grad, sizes)
        self.blas = blas_for(dtype, _largest_product(net, m), m)
        self._activations = list(net.activations)
        self._loss = net.loss
        self._views: dict[int, Workspace] = {}
        self._bind(sizes)

    def _bind(self, sizes: list[int]) -> None:
        """Scratch views for ``m`` rows, and the methods that take them, bound once."""
        m = self.m
        self.scratch: list[Any] = [None] + [
            self._scratch_block[: m * s].reshape(m, s) for s in sizes[1:]
        ]
        s = self.scratch
        L = len(sizes) - 1
        self.g_forward: list[Any] = [None] + [
            _with_scratch(g.forward, s[l]) for l, g in enumerate(self._activations, start=1)
        ]
        self.g_backprop: list[Any] = [None] + [
            _with_scratch(g.backprop, s[l]) for l, g in enumerate(self._activations, start=1)
        ]
        self.loss_value = _with_scratch(self._loss.value, s[L])
        self.output_delta = _with_scratch(self._loss.output_delta, s[L])

    def rows(self, m: int) -> Workspace:
        """A workspace for a smaller batch of ``m`` rows, sharing this one's memory.

        The first ``m`` rows of a C-ordered matrix are contiguous, so the views are as
        good as fresh buffers; the gradients are shared outright.
        """
        if m == self.m:
            return self
        if m > self.m:
            raise ValueError(f"workspace holds {self.m} rows, asked for {m}")
        view = self._views.get(m)
        if view is None:
            view = object.__new__(Workspace)
            view.m = m
            view.a = [a[:m] for a in self.a]
            view.delta = [None] + [d[:m] for d in self.delta[1:]]
            view.ones = self.ones[:m]
            view.grad, view.dtheta, view.db = self.grad, self.dtheta, self.db
            view.blas = self.blas
            view._scratch_block = self._scratch_block
            view._activations, view._loss = self._activations, self._loss
            view._views = {}
            view._bind([a.shape[1] for a in self.a])
            self._views[m] = view
        return view


def blas_threads(net: Model, m: int) -> int | None:
    """1 when a step on ``m`` rows is too small to share between BLAS threads, else None.

    BLAS libraries split a product between threads once it has a few hundred thousand
    multiply-adds (OpenBLAS: a matrix-vector product of 9,216 entries), and a thread
    handed a few microseconds of work costs more in waking and waiting than it saves,
    the more so when other processes keep the cores busy.
    """
    return 1 if is_small(_largest_product(net, m)) else None


def _largest_product(net: Model, m: int) -> int:
    """Multiply-adds of the largest matrix product of a step on ``m`` rows."""
    return m * max(w.size for w in net.weights)


def _with_scratch(method: Callable[..., Any], scratch: np.ndarray | None) -> Callable[..., Any]:
    """``method`` with ``scratch=`` bound when it takes one, else ``method`` itself."""
    if scratch is not None and accepts_scratch(method):
        return functools.partial(method, scratch=scratch)
    return method


def forward(net: Model, ws: Workspace, X: np.ndarray | None = None) -> np.ndarray:
    """Forward sweep: fill ``ws.a[1..L]`` from ``ws.a[0]`` and return ``a[L]``.

    Parameters
    ----------
    X : ndarray or scipy.sparse CSR matrix of shape (m, S[0]), optional
        The batch, already of the network's dtype (and C-ordered if dense). When given,
        ``ws.a[0]`` becomes ``X`` itself (no copy); when omitted the batch is the one
        already in ``ws.a[0]``.
    """
    a, blas, g, scratch = ws.a, ws.blas, ws.g_forward, ws.scratch
    if X is not None:
        a[0] = X
    for l, (theta, b) in enumerate(zip(net.weights, net.biases), start=1):
        if l == 1 and sparse.issparse(a[0]):
            np.copyto(a[1], a[0] @ theta)  # sparse @ dense: a dense (m, S[1]) product
            a[1] += b
        else:
            blas.affine(a[l - 1], theta, b, out=a[l], scratch=scratch[l])  # z = a Theta + b
        g[l](a[l], a[l])  # a[l] = g(z[l]), in place
    return a[len(net.weights)]


def cost(net: Model, ws: Workspace, Y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The cost ``C`` of the batch in ``ws`` after :func:`forward`, with no temporaries.

    Parameters
    ----------
    Y : ndarray of shape (m, S[L])
        Targets, of the network's dtype.
    weights : ndarray of shape (m,), optional
        Per-example weights, as in :func:`backward`.
    """
    a_L = ws.a[len(net.weights)]
    return ws.loss_value(a_L, Y) if weights is None else ws.loss_value(a_L, Y, weights)


def backward(
    net: Model,
    ws: Workspace,
    Y: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    weight_decay: float = 0.0,
    sgd_rate: float | None = None,
    scale: float | None = None,
    accumulate: bool = False,
    layer_done: Callable[[int], None] | None = None,
) -> None:
    """Backward dynamic programme: fill ``ws.dtheta`` and ``ws.db`` after :func:`forward`.

    Last layer to first::

        delta[L]   = dC/da[L] * g'(z[L])            (the loss's base case)
        delta[l-1] = (delta[l] @ Theta[l].T) * g'(z[l-1])
        dTheta[l]  = a[l-1].T @ delta[l] / m,  db[l] = column means of delta[l]

    Each ``delta[l]`` is computed once and reused by layer ``l-1``. The ``1/m`` is
    folded into ``delta[L]`` (and so carried by every later ``delta``), which saves a
    pass over each gradient.

    Parameters
    ----------
    Y : ndarray of shape (m, S[L])
        Targets, of the network's dtype.
    weights : ndarray of shape (m,), optional
        Per-example weights ``w_i >= 0`` for the weighted cost
        ``C = sum_i w_i C_i / sum_i w_i``: row ``i`` of ``delta[L]`` carries
        ``w_i / sum_i w_i`` where the unweighted cost has ``1/m``. Weights that are all
        zero give zero gradients. None (the default) is the plain mean, with no extra work.
    weight_decay : float, default 0
        ``lambda``: ``dTheta[l]`` becomes ``dC/dTheta[l] + lambda Theta[l]`` (the L2
        penalty's gradient; biases are not decayed).
    sgd_rate : float, optional
        Apply plain SGD with this learning rate ``alpha`` as each gradient is formed,
        ``Theta[l] := Theta[l] - alpha (dC/dTheta[l] + lambda Theta[l])`` and
        ``b[l] := b[l] - alpha dC/db[l]``, in one product each (the gradient is never
        stored and ``ws.dtheta``, ``ws.db`` are left alone). ``delta[l-1]`` is formed
        from ``Theta[l]`` before its update, so the result is the SGD step.
    scale : float, optional
        The factor on row ``i`` of ``delta[L]`` in place of ``1/m`` (times ``w_i`` with
        ``weights``, in place of ``w_i / sum_i w_i``): a batch that is one chunk of a
        larger set passes ``1/M`` (or ``1/sum`` of all ``M`` weights) for the set's mean.
    accumulate : bool, default False
        Add the batch's gradients to ``ws.dtheta`` and ``ws.db`` instead of overwriting
        them, so that the chunks of a set sum to the set's gradient (``weight_decay``
        is then not applied: add ``lambda Theta[l]`` once, after the last chunk).
    layer_done : callable, optional
        Called with ``l`` once ``ws.dtheta[l-1]`` and ``ws.db[l-1]`` hold their final
        values (``l = L`` first), while the earlier layers are still to come: a
        data-parallel step starts summing a layer's gradient there.
    """
    a, delta, blas = ws.a, ws.delta, ws.blas
    L, m = len(net.weights), ws.m
    if weights is None:
        ws.output_delta(
            a[L], Y, net.activations[L - 1], delta[L], 1.0 / m if scale is None else scale
        )
    else:
        ws.output_delta(a[L], Y, net.activations[L - 1], delta[L], 1.0)
        if scale is None:
            total = weights.sum()
            delta[L] *= (weights / total if total > 0 else weights)[:, None]
        else:
            delta[L] *= (weights * scale)[:, None]
    for l in range(L, 0, -1):
        theta, b = net.weights[l - 1], net.biases[l - 1]
        if l > 1:  # delta[l-1] before Theta[l] changes
            blas.matmul_bt(delta[l], theta, out=delta[l - 1])
        weight_gradient = _sparse_matmul_at if l == 1 and sparse.issparse(a[0]) else None
        if sgd_rate is None:
            beta = 1.0 if accumulate else weight_decay
            if weight_decay and not accumulate:
                np.copyto(ws.dtheta[l - 1], theta)
            if weight_gradient is not None:
                weight_gradient(a[0], delta[1], ws.dtheta[0], 1.0, beta)
            else:
                blas.matmul_at(a[l - 1], delta[l], out=ws.dtheta[l - 1], beta=beta)
            blas.column_sums(delta[l], ws.ones, out=ws.db[l - 1], beta=1.0 if accumulate else 0.0)
            if layer_done is not None:
                layer_done(l)
        else:
            decay = 1.0 - sgd_rate * weight_decay
            if weight_gradient is not None:
                weight_gradient(a[0], delta[1], theta, -sgd_rate, decay)
            else:
                blas.matmul_at(
                    a[l - 1],
                    delta[l],
                    out=theta,
                    alpha=-sgd_rate,
                    beta=decay,
                    scratch=ws.scratch[l],
                )
            blas.column_sums(delta[l], ws.ones, out=b, alpha=-sgd_rate, beta=1.0)
        if l > 1:
            ws.g_backprop[l - 1](a[l - 1], delta[l - 1])


def _sparse_matmul_at(
    X: Any, delta: np.ndarray, out: np.ndarray, alpha: float, beta: float
) -> None:
    """``out := alpha X.T @ delta + beta out`` for a sparse batch ``X`` (CSR, so ``X.T`` is
    CSC and the product walks each stored entry once)."""
    product = X.T @ delta
    if alpha != 1.0:
        product *= alpha
    if beta == 0.0:
        np.copyto(out, product)
    else:
        if beta != 1.0:
            out *= beta
        out += product


class SgdStep:
    """One plain-SGD training step on a workspace, its calls bound to their arrays once.

    It makes the calls that :func:`forward`, :func:`cost` and :func:`backward` with
    ``sgd_rate`` make, in the same order on the same arrays (so the same numbers, bit for
    bit), but lists them once when it is made instead of working them out again on
    every batch: at small batches the Python around the calls (method dispatch,
    transposed views, keyword arguments, shape tests) costs as much as the elementwise
    arithmetic (1.1-1.35x at batch 1 to 10). ``fit`` makes one per batch size and epoch
    (the learning rate is bound in).

    The workspace's ``a[0]`` and ``Y`` must be filled in place before each step; the
    parameters are updated in place, so ``net.weights`` and ``net.biases`` must stay the
    same arrays while the step is used.

    Parameters
    ----------
    net : Network
    ws : Workspace
        Made with ``gradients=False`` or not; the gradients are not used.
    Y : ndarray of shape (ws.m, S[L])
        The buffer the batch's targets are gathered into.
    learning_rate : float
        ``alpha``.
    weight_decay : float, default 0
        ``lambda``, as in :func:`backward`.
    """

    def __init__(
        self,
        net: Model,
        ws: Workspace,
        Y: np.ndarray,
        learning_rate: float,
        weight_decay: float = 0.0,
    ) -> None:
        a, delta, blas = ws.a, ws.delta, ws.blas
        L, m = len(net.weights), ws.m
        calls: list[Callable[[], Any]] = []
        for l, (theta, b) in enumerate(zip(net.weights, net.biases), start=1):
            calls += blas.ops("affine", a[l - 1], theta, b, a[l], ws.scratch[l])
            calls.append(functools.partial(ws.g_forward[l], a[l], a[l]))
        self._forward = calls
        self._cost = functools.partial(ws.loss_value, a[L], Y)
        out = net.activations[L - 1]
        calls = [functools.partial(ws.output_delta, a[L], Y, out, delta[L], 1.0 / m)]
        decay = 1.0 - learning_rate * weight_decay
        for l in range(L, 0, -1):
            theta, b = net.weights[l - 1], net.biases[l - 1]
            if l > 1:
                calls += blas.ops("matmul_bt", delta[l], theta, delta[l - 1])
            calls += blas.ops(
                "matmul_at", a[l - 1], delta[l], theta, -learning_rate, decay, ws.scratch[l]
            )
            calls += blas.ops("column_sums", delta[l], ws.ones, b, -learning_rate, 1.0)
            if l > 1:
                calls.append(functools.partial(ws.g_backprop[l - 1], a[l - 1], delta[l - 1]))
        self._backward = calls
        self.a_L = a[L]

    def forward(self) -> np.ndarray:
        """The forward sweep from the batch in ``ws.a[0]``; returns ``a[L]``."""
        for call in self._forward:
            call()
        return self.a_L

    def cost(self) -> float:
        """The batch's cost ``C`` after :meth:`forward`."""
        return float(self._cost())

    def backward(self) -> None:
        """The dynamic programme with the SGD update, after :meth:`forward`."""
        for call in self._backward:
            call()
