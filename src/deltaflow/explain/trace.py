"""One training step traced through the derivation's stages, as data."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from deltaflow.engine import backprop
from deltaflow.engine.activations import Identity
from deltaflow.errors import ConfigError, DataError
from deltaflow.explain.counting import PATH_ENUMERATION_LIMIT, OpCounts, op_counts
from deltaflow.gradcheck import finite_differences, float64_copy
from deltaflow.training.optimizers import SGD

if TYPE_CHECKING:
    from deltaflow.network import Network


# ------------------------------------------------------------------------ the trace
@dataclass(frozen=True)
class LayerTrace:
    """The numbers of one layer ``l = 1..L`` during the traced step (one example).

    Attributes
    ----------
    l : int
        The layer.
    activation : str
        The name of ``g^(l)``.
    theta, b : ndarray of shape (S[l-1], S[l]) and (S[l],)
        ``Theta^(l)`` and ``b^(l)`` before the step.
    z, a : ndarray of shape (S[l],)
        ``z^(l) = a^(l-1) Theta^(l) + b^(l)`` and ``a^(l) = g(z^(l))``; ``a`` is the
        engine's buffer after the forward sweep, ``z`` is recomputed from it for display
        (the engine overwrites ``z`` with ``a`` in place).
    g_prime : ndarray of shape (S[l],) or None
        ``g'(z^(l))``, as the engine applies it; None for softmax, whose derivative
        couples the units of the layer.
    dC_da : ndarray of shape (S[l],) or None
        ``dC/da^(l)``: ``Theta^(l+1) delta^(l+1)`` for ``l < L``; at ``l = L`` the
        cost's derivative (``2 (a^(L) - y)`` for the squared error), or None for the
        matched pairs whose base case is ``a^(L) - y`` directly.
    delta : ndarray of shape (S[l],)
        ``delta^(l) = dC/dz^(l)``, the engine's table entry.
    dtheta, db : ndarray of shape (S[l-1], S[l]) and (S[l],)
        The engine's ``dC/dTheta^(l)`` and ``dC/db^(l)``.
    fd_dtheta, fd_db : ndarray, same shapes
        Central finite differences ``(C(p + eps) - C(p - eps)) / (2 eps)``.
    theta_new, b_new : ndarray, same shapes
        The parameters after ``p := p - alpha dC/dp``.
    """

    l: int
    activation: str
    theta: np.ndarray
    b: np.ndarray
    z: np.ndarray
    a: np.ndarray
    g_prime: np.ndarray | None
    dC_da: np.ndarray | None
    delta: np.ndarray
    dtheta: np.ndarray
    db: np.ndarray
    fd_dtheta: np.ndarray
    fd_db: np.ndarray
    theta_new: np.ndarray
    b_new: np.ndarray


@dataclass(frozen=True)
class StepTrace:
    """One training step on one example, every stage of the derivation as numbers.

    Attributes
    ----------
    sizes : tuple of int
        ``S_0 .. S_L``.
    cost_name : str
        The cost's registered name.
    x : ndarray of shape (S[0],)
        ``a^(0)``.
    y : ndarray of shape (S[L],)
        The target, encoded as the cost sees it (one-hot for a class).
    m : int
        Examples in the step (always 1: ``C = C_0`` and the ``1/m`` the engine folds
        into ``delta^(L)`` is 1).
    cost, cost_after : float
        ``C_0`` before and after the step.
    learning_rate : float
        ``alpha``.
    eps : float
        The finite-difference step.
    layers : tuple of LayerTrace
        ``layers[l-1]`` is layer ``l``.
    counts : OpCounts
        Multiply-adds of the dynamic programme and of path enumeration.
    path_multiplications : int or None
        Multiplications :func:`path_gradients` counted while enumerating the paths of
        this network; None when it was not run (too large, or a softmax hidden layer).
    path_max_difference : float or None
        Largest ``|path-enumeration gradient - dynamic-programme gradient|``.
    """

    sizes: tuple[int, ...]
    cost_name: str
    x: np.ndarray
    y: np.ndarray
    m: int
    cost: float
    cost_after: float
    learning_rate: float
    eps: float
    layers: tuple[LayerTrace, ...]
    counts: OpCounts
    path_multiplications: int | None = None
    path_max_difference: float | None = None

    @property
    def L(self) -> int:
        """The output layer's index."""
        return len(self.sizes) - 1

    def a(self, l: int) -> np.ndarray:
        """``a^(l)`` for ``l = 0..L`` (``a^(0) = x``)."""
        return self.x if l == 0 else self.layers[l - 1].a

    @property
    def fd_max_error(self) -> float:
        """Largest relative error between the engine and finite differences.

        Per parameter array, ``max |engine - fd|`` over the larger of the two arrays'
        largest magnitudes (as :func:`deltaflow.gradcheck` measures it); the largest
        over all arrays.
        """
        worst = 0.0
        for lay in self.layers:
            for g, f in ((lay.dtheta, lay.fd_dtheta), (lay.db, lay.fd_db)):
                scale = max(float(np.abs(g).max()), float(np.abs(f).max()))
                if scale > 0:
                    worst = max(worst, float(np.abs(g - f).max()) / scale)
        return worst

    def as_dict(self) -> dict[str, Any]:
        """Plain lists, numbers and strings (JSON-serialisable)."""
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def trace_step(
    net: Network, x: Any, y: Any, *, learning_rate: float = 0.5, eps: float = 1e-6
) -> StepTrace:
    """Trace one SGD step of ``net`` on one example through the derivation's stages.

    The network is not changed: the trace runs on a float64 copy. Its ``a``,
    ``delta`` and gradients are the engine's own buffers after
    :func:`~deltaflow.backprop.forward` and :func:`~deltaflow.backprop.backward`.

    Parameters
    ----------
    net : Network
    x : array-like of shape (S[0],) or (1, S[0])
        The example ``a^(0)``.
    y : array-like
        Its target in any form :meth:`Network.fit` accepts: a class index, a one-hot
        row or real values of shape (S[L],).
    learning_rate : float
        ``alpha`` of the update.
    eps : float
        Step of the central finite differences.

    Returns
    -------
    StepTrace

    Raises
    ------
    DataError
        If ``x`` is not one example with ``S[0]`` values, or ``y`` does not fit.
    ConfigError
        For a learning rate or ``eps`` that is not a positive finite number.
    """
    for value, name in ((learning_rate, "learning_rate"), (eps, "eps")):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value!r}")
    net = float64_copy(net)
    x = np.asarray(x)
    X = net.check_X(x[None, :] if x.ndim == 1 else x, "x")
    if X.shape[0] != 1:
        raise DataError(f"explain traces one example, got {X.shape[0]} rows; pass a single row")
    Y = _target_row(net, y)
    L = net.L

    ws = backprop.Workspace(net, 1)
    backprop.forward(net, ws, X)
    a = [ws.a[l][0].copy() for l in range(L + 1)]
    cost = float(net.loss.value(ws.a[L], Y))
    backprop.backward(net, ws, Y)
    delta = {l: ws.delta[l][0].copy() for l in range(1, L + 1)}  # type: ignore[index]
    dtheta = [g.copy() for g in ws.dtheta]
    db = [g.copy() for g in ws.db]

    fd_theta, fd_b = finite_differences(net, X, Y, eps)
    new_params = [p.copy() for p in net.weights + net.biases]
    SGD().step(new_params, [g.copy() for g in dtheta + db], float(learning_rate))
    after = net.copy()
    after.set_params(new_params[:L], new_params[L:])
    cost_after = float(
        after.loss.value(backprop.forward(after, backprop.Workspace(after, 1), X), Y)
    )

    layers = []
    for l in range(1, L + 1):
        g = net.activations[l - 1]
        theta, b = net.weights[l - 1], net.biases[l - 1]
        if l < L:
            dC_da: np.ndarray | None = _theta_times_delta(net.weights[l], delta[l + 1])
        else:
            dC_da = _cost_derivative(net, ws.a[L], Y)
        layers.append(
            LayerTrace(
                l=l,
                activation=g.name,
                theta=theta.copy(),
                b=b.copy(),
                z=a[l - 1] @ theta + b,
                a=a[l],
                g_prime=_derivative(g, a[l]),
                dC_da=dC_da,
                delta=delta[l],
                dtheta=dtheta[l - 1],
                db=db[l - 1],
                fd_dtheta=fd_theta[l - 1],
                fd_db=fd_b[l - 1],
                theta_new=new_params[l - 1],
                b_new=new_params[L + l - 1],
            )
        )
    trace = StepTrace(
        sizes=tuple(net.sizes),
        cost_name=net.loss.name,
        x=a[0],
        y=Y[0].copy(),
        m=1,
        cost=cost,
        cost_after=cost_after,
        learning_rate=float(learning_rate),
        eps=float(eps),
        layers=tuple(layers),
        counts=op_counts(net.sizes),
    )
    hidden_elementwise = all(lay.g_prime is not None for lay in trace.layers[:-1])
    if hidden_elementwise and trace.counts.path_total <= PATH_ENUMERATION_LIMIT:
        grads, mults = path_gradients(trace)
        diff = max(float(np.abs(g - lay.dtheta).max()) for g, lay in zip(grads, trace.layers))
        trace = replace(trace, path_multiplications=mults, path_max_difference=diff)
    return trace


def _theta_times_delta(theta_next: np.ndarray, delta_next: np.ndarray) -> np.ndarray:
    """``Theta^(l+1) delta^(l+1)``, entry ``k`` being ``sum_j Theta_kj^(l+1) delta_j^(l+1)``.

    Parameters
    ----------
    theta_next : ndarray of shape (S[l], S[l+1])
    delta_next : ndarray of shape (S[l+1],)

    Returns
    -------
    ndarray of shape (S[l],)
    """
    return theta_next @ delta_next


def _target_row(net: Network, y: Any) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 0:
        y = y.reshape(1)
    elif y.ndim == 1 and net.sizes[-1] > 1 and y.shape[0] == net.sizes[-1]:
        y = y[None, :]  # one target row of S_L values
    Y, _ = net.encode_targets(y, 1, "y")
    return Y


def _derivative(g: Any, a: np.ndarray) -> np.ndarray | None:
    """``g'(z)`` from ``a = g(z)``, by the engine's own ``backprop`` applied to ones."""
    if g.name == "softmax":
        return None
    out = np.ones((1, a.shape[0]))
    g.backprop(a[None, :], out)
    return out[0]


def _cost_derivative(net: Network, a_L: np.ndarray, Y: np.ndarray) -> np.ndarray | None:
    """``dC/da^(L)`` by the loss's base case with an identity output, if it has one."""
    out = np.empty_like(a_L)
    try:
        net.loss.output_delta(a_L, Y, Identity(), out=out, scale=1.0)
    except ConfigError:  # a matched pair: the loss only knows the fused a - y
        return None
    return out[0]


def path_gradients(trace: StepTrace) -> tuple[list[np.ndarray], int]:
    """Every ``dC/dTheta_kj^(l)`` by the plain chain rule: a sum over every path.

    For a weight of layer ``l``, ``dC/dTheta_kj^(l) = a_k^(l-1) sum_paths delta_(j_L)^(L)
    prod_(i=l+1)^L Theta_(j_(i-1) j_i)^(i) g'(z_(j_(i-1))^(i-1))`` over the paths
    ``j = j_l, j_(l+1), ..., j_L`` from unit ``j`` of layer ``l`` to the output. Each
    weight is worked out on its own, as the chain rule written per weight does; nothing
    is reused between weights. This exists to be compared with the dynamic programme.

    Parameters
    ----------
    trace : StepTrace
        Supplies ``Theta``, ``a``, ``g'`` and the base case ``delta^(L)``.

    Returns
    -------
    dtheta : list of ndarray
        Laid out like ``net.weights``.
    multiplications : int
        The scalar multiplications done, counted as they happen; equals
        ``op_counts(trace.sizes).path_total``.

    Raises
    ------
    ConfigError
        If a hidden layer is softmax (its derivative is not one factor per unit).
    """
    L, S = trace.L, trace.sizes
    lay = trace.layers
    if any(t.g_prime is None for t in lay[:-1]):
        raise ConfigError("path enumeration needs elementwise hidden activations, not softmax")
    g_prime = [t.g_prime for t in lay]
    delta_L = lay[L - 1].delta
    count = 0
    grads = []
    for l in range(1, L + 1):
        grad = np.empty((S[l - 1], S[l]))
        a_prev = trace.a(l - 1)
        for k, j in itertools.product(range(S[l - 1]), range(S[l])):
            total = 0.0
            for rest in itertools.product(*(range(s) for s in S[l + 1 :])):
                units = (j, *rest)  # units[i - l] is the path's unit in layer i
                term = float(delta_L[units[-1]])
                for i in range(l + 1, L + 1):
                    term *= lay[i - 1].theta[units[i - 1 - l], units[i - l]]
                    term *= g_prime[i - 2][units[i - 1 - l]]  # type: ignore[index]
                    count += 2
                total += term
            grad[k, j] = a_prev[k] * total
            count += 1
        grads.append(grad)
    return grads, count
