"""One training step traced through the derivation's stages, as data, and its renderers.

:func:`trace_step` runs the engine itself (:func:`deltaflow.backprop.forward` and
:func:`deltaflow.backprop.backward`) on one example and keeps every number the
derivation names, layer by layer: ``z^(l)``, ``a^(l)``, ``g'(z^(l))``, ``dC/da^(l)``,
``delta^(l)``, ``dC/dTheta^(l)`` and ``dC/db^(l)``, the central finite difference of the
cost for every parameter, and the parameters after one step
``Theta := Theta - alpha dC/dTheta``. :func:`render` turns that :class:`StepTrace` into
readable text, Markdown or LaTeX; the CLI only calls the two.

:func:`op_counts` counts, from the layer sizes alone, the multiply-adds the dynamic
programme does and those of the plain chain rule that enumerates every path from a
weight to the output; :func:`path_gradients` really enumerates the paths of a small
network, counting its multiplications as it goes, so the count can be checked and the
gradients compared.

:func:`delta_norm_table` renders the per-layer mean ``|delta^(l)|`` that
``fit(..., track_delta_norms=True)`` records.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import backprop
from .activations import Identity
from .errors import ConfigError, DataError
from .gradcheck import finite_differences, float64_copy
from .optimizers import SGD

if TYPE_CHECKING:
    from .network import Network
    from .train import History

__all__ = [
    "FORMATS",
    "LayerTrace",
    "OpCounts",
    "StepTrace",
    "delta_norm_table",
    "op_counts",
    "path_gradients",
    "render",
    "trace_step",
]

FORMATS = ("text", "markdown", "latex")

#: Networks whose path enumeration takes more multiplications than this are not
#: enumerated by :func:`trace_step` (the count is still computed from the sizes).
PATH_ENUMERATION_LIMIT = 200_000


# --------------------------------------------------------------------------- counting
@dataclass(frozen=True)
class OpCounts:
    """Multiply-adds per example for every weight gradient, by two methods.

    Both methods start from the same forward sweep (``W`` multiply-adds, ``W`` the
    number of weights) and the same base case ``delta^(L)``; the counts below are the
    work after that, for the weights (a bias's gradient is ``delta_j^(l)`` itself).

    Attributes
    ----------
    sizes : tuple of int
        ``S_0 .. S_L``.
    weights : int
        ``W = sum_l S_(l-1) S_l``.
    forward : int
        ``W``: one multiply-add per weight for ``z^(l) = a^(l-1) Theta^(l) + b^(l)``.
    recursion : int
        ``sum_(l=1)^(L-1) S_l S_(l+1)``: the products ``Theta^(l+1) delta^(l+1)``.
    derivative : int
        ``sum_(l=1)^(L-1) S_l``: the products with ``g'(z^(l))``.
    read_off : int
        ``W``: one product ``a_k^(l-1) delta_j^(l)`` per weight.
    paths : tuple of int
        For ``l = 1..L``, ``P_l = S_(l+1) ... S_L``: the paths from one unit of layer
        ``l`` to the output layer (1 for ``l = L``).
    path_enumeration : tuple of int
        For ``l = 1..L``, ``S_(l-1) S_l (2 (L - l) P_l + 1)``: every weight of layer
        ``l`` summing, on its own, over its ``P_l`` paths, each a product of
        ``2 (L - l) + 1`` factors (a ``Theta`` and a ``g'`` per layer crossed, then
        ``delta^(L)``), and one last product with ``a_k^(l-1)``.
    """

    sizes: tuple[int, ...]
    weights: int
    forward: int
    recursion: int
    derivative: int
    read_off: int
    paths: tuple[int, ...]
    path_enumeration: tuple[int, ...]

    @property
    def backward(self) -> int:
        """Multiply-adds of the backward dynamic programme after the base case."""
        return self.recursion + self.derivative + self.read_off

    @property
    def path_total(self) -> int:
        """Multiply-adds of the path enumeration, all layers."""
        return sum(self.path_enumeration)


def op_counts(sizes: Any) -> OpCounts:
    """Count the multiply-adds of the dynamic programme and of path enumeration.

    Parameters
    ----------
    sizes : sequence of int
        ``S_0 .. S_L``, at least two layers.

    Returns
    -------
    OpCounts
    """
    S = [int(s) for s in sizes]
    if len(S) < 2 or min(S) < 1:
        raise ConfigError(f"sizes must be at least two positive layer sizes, got {sizes!r}")
    L = len(S) - 1
    W = sum(S[l - 1] * S[l] for l in range(1, L + 1))
    paths = tuple(int(np.prod(S[l + 1 :], dtype=object)) for l in range(1, L + 1))
    per_layer = tuple(S[l - 1] * S[l] * (2 * (L - l) * paths[l - 1] + 1) for l in range(1, L + 1))
    return OpCounts(
        sizes=tuple(S),
        weights=W,
        forward=W,
        recursion=sum(S[l] * S[l + 1] for l in range(1, L)),
        derivative=sum(S[l] for l in range(1, L)),
        read_off=W,
        paths=paths,
        path_enumeration=per_layer,
    )


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
    after.weights, after.biases = new_params[:L], new_params[L:]
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


# ------------------------------------------------------------------------ rendering
# g'(z) written from a = g(z), as the engine computes it ({a} is a^(l)).
_GPRIME_TEXT = {
    "sigmoid": "{a} * (1 - {a})",
    "tanh": "1 - {a} * {a}",
    "relu": "[{a} > 0]",
    "leaky_relu": "1 where {a} > 0, else 0.01",
    "identity": "1",
}
_GPRIME_TEX = {
    "sigmoid": r"{a} \odot (1 - {a})",
    "tanh": r"1 - {a} \odot {a}",
    "relu": r"[{a} > 0]",
    "leaky_relu": r"1 \text{{ where }} {a} > 0 \text{{, else }} 0.01",
    "identity": "1",
}
_COST_TEXT = {
    "squared_error": ["C_0", "sum_j (a_j^({L}) - y_j)^2"],
    "cross_entropy": ["C_0", "-sum_j y_j log a_j^({L})"],
    "binary_cross_entropy": [
        "C_0",
        "-sum_j [y_j log a_j^({L}) + (1 - y_j) log(1 - a_j^({L}))]",
    ],
}
_COST_TEX = {
    "squared_error": ["C_0", r"\sum_j (a_j^{{({L})}} - y_j)^2"],
    "cross_entropy": ["C_0", r"-\sum_j y_j \log a_j^{{({L})}}"],
    "binary_cross_entropy": [
        "C_0",
        r"-\sum_j \left[y_j \log a_j^{{({L})}} + (1 - y_j) \log(1 - a_j^{{({L})}})\right]",
    ],
}
_GREEK_TEX = {"Theta": r"\Theta", "delta": r"\delta", "alpha": r"\alpha", "eps": r"\varepsilon"}
_G_TEX = {
    "sigmoid": r"\sigma",
    "tanh": r"\tanh",
    "relu": r"\mathrm{relu}",
    "identity": r"\mathrm{id}",
    "softmax": r"\mathrm{softmax}",
}


class _Writer:
    """Plain text. Prose strings embed mathematics through :meth:`m`; the methods that
    return mathematics (symbols, numbers, vectors) return it in the writer's notation.
    The Markdown and LaTeX writers override what differs."""

    mul = " * "  # elementwise product
    dot = " "  # matrix product
    times = " * "  # product of two numbers
    latex = False

    def __init__(self, digits: int, max_entries: int) -> None:
        self.digits = digits
        self.max_entries = max_entries
        self.out: list[str] = []

    # structure; arguments are prose
    def title(self, text: str) -> None:
        self.out += [text, "=" * len(text), ""]

    def section(self, text: str) -> None:
        self.out += [text, "-" * len(text), ""]

    def para(self, text: str) -> None:
        self.out += textwrap.wrap(text, 88, break_long_words=False, break_on_hyphens=False)
        self.out.append("")

    def eqs(self, rows: list[list[str]], rel: str = "=") -> None:
        """Display equations ``lhs rel rhs1 = rhs2 ...`` (mathematics), aligned on ``rel``."""
        width = max(len(r[0]) for r in rows)
        for r in rows:
            # only the last part (a vector or a matrix) may span several lines
            head = f"  {r[0]:>{width}} {rel} " + "".join(p + " = " for p in r[1:-1])
            lines = r[-1].split("\n")
            self.out.append(head + lines[0])
            self.out += [" " * len(head) + line for line in lines[1:]]
        self.out.append("")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        widths = [max(len(c) for c in col) for col in zip(header, *rows)]
        line = "  ".join(f"{h:>{w}}" for h, w in zip(header, widths))
        self.out += ["  " + line, "  " + "-" * len(line)]
        self.out += ["  " + "  ".join(f"{c:>{w}}" for c, w in zip(r, widths)) for r in rows]
        self.out.append("")

    def finish(self) -> str:
        while self.out and not self.out[-1]:
            self.out.pop()
        return "\n".join(self.out) + "\n"

    # prose pieces
    def m(self, math: str) -> str:
        """Mathematics inside prose."""
        return math

    def tn(self, x: float) -> str:
        """A number inside prose or a table."""
        return self.m(self.num(x))

    def word(self, text: str) -> str:
        """A name such as an activation or a cost, in prose or mathematics."""
        return text

    # mathematics
    def s(self, name: str, l: int | str | None = None, idx: str | None = None) -> str:
        """A symbol such as ``delta_k^(l)``."""
        sub = f"_{idx}" if idx is not None else ""
        sup = f"^({l})" if l is not None else ""
        return f"{name}{sub}{sup}"

    def d(self, num: str, den: str) -> str:
        """The partial derivative of ``num`` by ``den``."""
        return f"d{num}/d{den}"

    def gp(self, l: int | str, idx: str | None = None) -> str:
        """``g'(z^(l))``."""
        return f"g'({self.s('z', l, idx)})"

    def g(self, name: str, arg: str) -> str:
        return f"{name}({arg})"

    def gprime_from_a(self, name: str, l: int) -> str | None:
        form = _GPRIME_TEXT.get(name)
        return form.format(a=self.s("a", l)) if form else None

    def cost_formula(self, name: str, L: int) -> list[str]:
        return [p.format(L=L) for p in _COST_TEXT.get(name, ["C_0"])]

    def sum_over(self, index: str) -> str:
        return f"sum_{index} "

    def mean_cost(self) -> str:
        return "C = (1/m) sum_i C_i = C_0"

    def paren(self, terms: list[str]) -> str:
        return "(" + " + ".join(terms) + ")"

    def absval(self, math: str) -> str:
        return f"|{math}|"

    def num(self, x: float) -> str:
        text = f"{float(x):.{self.digits}g}"
        return "0" if text == "-0" else text

    def factor(self, x: float) -> str:
        """A number as a factor of a product: in parentheses when negative."""
        text = self.num(x)
        return f"({text})" if text.startswith("-") else text

    def small(self, x: float) -> str:
        """A difference or an error, to two significant digits."""
        return f"{float(x):.1e}"

    def vec(self, v: np.ndarray) -> str:
        return "[" + ", ".join(self._items(v, "...")) + "]"

    def mat(self, M: np.ndarray) -> str:
        if M.size > self.max_entries:
            return f"({M.shape[0]} x {M.shape[1]} matrix: more than {self.max_entries} entries)"
        cells = [[self.num(x) for x in row] for row in M]
        width = max(len(c) for row in cells for c in row)
        return "\n".join("[ " + "  ".join(f"{c:>{width}}" for c in row) + " ]" for row in cells)

    def _items(self, v: np.ndarray, ellipsis: str) -> list[str]:
        items = [self.num(x) for x in v]
        if len(items) > self.max_entries:
            half = min(self.max_entries // 2, 8)
            items = items[:half] + [ellipsis] + items[-half:]
        return items


class _MarkdownWriter(_Writer):
    def title(self, text: str) -> None:
        self.out += [f"# {text}", ""]

    def section(self, text: str) -> None:
        self.out += [f"## {text}", ""]

    def para(self, text: str) -> None:
        self.out += [text, ""]

    def eqs(self, rows: list[list[str]], rel: str = "=") -> None:
        self.out.append("```text")
        super().eqs(rows, rel)
        self.out[-1] = "```"
        self.out.append("")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.out.append("| " + " | ".join(header) + " |")
        self.out.append("|" + "|".join(" ---: " for _ in header) + "|")
        self.out += ["| " + " | ".join(r) + " |" for r in rows]
        self.out.append("")

    def m(self, math: str) -> str:
        return f"`{math}`"

    def tn(self, x: float) -> str:
        return self.num(x)


class _LatexWriter(_Writer):
    mul = r" \odot "
    dot = " "
    times = r" \cdot "
    latex = True

    def title(self, text: str) -> None:
        self.out += [
            r"\documentclass{article}",
            r"\usepackage{amsmath}",
            r"\usepackage[margin=2cm]{geometry}",
            r"\setcounter{MaxMatrixCols}{64}",
            r"\begin{document}",
            "",
            r"\section*{" + text + "}",
            "",
        ]

    def section(self, text: str) -> None:
        self.out += [r"\subsection*{" + text + "}", ""]

    def para(self, text: str) -> None:
        self.out += [text, ""]

    def eqs(self, rows: list[list[str]], rel: str = "=") -> None:
        lines = [f"{r[0]} &{rel} " + " = ".join(r[1:]) for r in rows]
        self.out += [r"\begin{align*}", " \\\\\n".join(lines), r"\end{align*}", ""]

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.out += [r"\begin{center}", r"\begin{tabular}{" + "r" * len(header) + "}"]
        self.out.append(" & ".join(header) + r" \\ \hline")
        self.out += [" & ".join(r) + r" \\" for r in rows]
        self.out += [r"\end{tabular}", r"\end{center}", ""]

    def finish(self) -> str:
        self.out.append(r"\end{document}")
        return super().finish()

    def m(self, math: str) -> str:
        return f"${math}$"

    def word(self, text: str) -> str:
        return r"\texttt{" + text.replace("_", r"\_") + "}"

    def s(self, name: str, l: int | str | None = None, idx: str | None = None) -> str:
        base = _GREEK_TEX.get(name, name)
        sub = f"_{{{idx}}}" if idx is not None else ""
        sup = f"^{{({l})}}" if l is not None else ""
        return f"{base}{sub}{sup}"

    def d(self, num: str, den: str) -> str:
        return rf"\frac{{\partial {num}}}{{\partial {den}}}"

    def g(self, name: str, arg: str) -> str:
        return rf"{_G_TEX.get(name, self.word(name))}({arg})"

    def gprime_from_a(self, name: str, l: int) -> str | None:
        form = _GPRIME_TEX.get(name)
        return form.format(a=self.s("a", l)) if form else None

    def cost_formula(self, name: str, L: int) -> list[str]:
        return [p.format(L=L) for p in _COST_TEX.get(name, ["C_0"])]

    def sum_over(self, index: str) -> str:
        return rf"\sum_{{{index}}} "

    def mean_cost(self) -> str:
        return r"C = \frac{1}{m} \sum_i C_i = C_0"

    def paren(self, terms: list[str]) -> str:
        return r"\left(" + " + ".join(terms) + r"\right)"

    def absval(self, math: str) -> str:
        return rf"\lvert {math} \rvert"

    def num(self, x: float) -> str:
        return _tex_exponent(super().num(x))

    def small(self, x: float) -> str:
        return _tex_exponent(super().small(x))

    def vec(self, v: np.ndarray) -> str:
        return r"\begin{bmatrix} " + " & ".join(self._items(v, r"\cdots")) + r" \end{bmatrix}"

    def mat(self, M: np.ndarray) -> str:
        if M.size > self.max_entries:
            return rf"\text{{({M.shape[0]} $\times$ {M.shape[1]} matrix, not shown)}}"
        rows = [" & ".join(self.num(x) for x in row) for row in M]
        return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"


def _tex_exponent(text: str) -> str:
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return rf"{mantissa} \times 10^{{{int(exponent)}}}"


_WRITERS = {"text": _Writer, "markdown": _MarkdownWriter, "latex": _LatexWriter}


def render(trace: StepTrace, fmt: str = "text", *, digits: int = 4, max_entries: int = 40) -> str:
    """The trace as a worked example: readable text, Markdown or a LaTeX document.

    Parameters
    ----------
    trace : StepTrace
        From :func:`trace_step`.
    fmt : {"text", "markdown", "latex"}
        LaTeX is a complete ``article`` document using ``amsmath``.
    digits : int
        Significant digits of every number shown (``f"{x:.{digits}g}"``).
    max_entries : int
        Vectors, matrices and per-layer gradient tables with more entries than this
        are abbreviated (the comparisons still cover every entry).

    Returns
    -------
    str
    """
    if fmt not in _WRITERS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 17:
        raise ConfigError(f"digits must be a whole number from 1 to 17, got {digits!r}")
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 2:
        raise ConfigError(f"max_entries must be a whole number of at least 2, got {max_entries!r}")
    w = _WRITERS[fmt](digits, max_entries)
    _introduction(t=trace, w=w)
    _forward(trace, w)
    _cost(trace, w)
    _base_case(trace, w)
    _recursion(trace, w)
    _read_off(trace, w)
    _update(trace, w)
    _counting(trace, w)
    return w.finish()


def _introduction(t: StepTrace, w: _Writer) -> None:
    m, s = w.m, w.s
    acts = [lay.activation for lay in t.layers]
    if len(set(acts)) == 1:
        act = f"{m('g')} = {w.word(acts[0])} on every layer"
    else:
        act = ", ".join(f"{m(s('g', l))} = {w.word(a)}" for l, a in enumerate(acts, 1))
    w.title("One training step of backpropagation, traced")
    w.para(
        f"Network: layers {m('S = (' + ', '.join(map(str, t.sizes)) + ')')}, {act}, cost "
        f"{w.word(t.cost_name)}, learning rate {m(s('alpha') + ' = ' + w.num(t.learning_rate))}. "
        f"One example, {m('m = 1')}, so {m(w.mean_cost())}. In a batch of {m('m')} rows the "
        f"engine folds the {m('1/m')} into {m(s('delta', t.L))} once; here {m('1/m = 1')}, so "
        f"every {m(s('delta'))} below is the notes' per-example value. Every number is read "
        "from the engine's own buffers."
    )
    w.eqs([[s("a", 0), s("x"), w.vec(t.x)], [s("y"), w.vec(t.y)]])


def _forward(t: StepTrace, w: _Writer) -> None:
    s = w.s
    w.section("1. Forward sweep")
    for lay in t.layers:
        l = lay.l
        w.para(f"Layer {l}, {t.sizes[l]} units, {w.m(s('g', l))} = {w.word(lay.activation)}:")
        w.eqs(
            [
                [s("Theta", l), w.mat(lay.theta)],
                [s("b", l), w.vec(lay.b)],
                [
                    s("z", l),
                    s("a", l - 1) + w.dot + s("Theta", l) + " + " + s("b", l),
                    w.vec(lay.z),
                ],
                [s("a", l), w.g(lay.activation, s("z", l)), w.vec(lay.a)],
            ]
        )


def _cost(t: StepTrace, w: _Writer) -> None:
    w.section("2. Cost")
    row = w.cost_formula(t.cost_name, t.L)
    if t.cost_name == "squared_error" and t.sizes[-1] <= w.max_entries:
        a_L = t.layers[-1].a
        row.append(" + ".join(f"({w.num(a)} - {w.num(y)})^2" for a, y in zip(a_L, t.y)))
    row.append(w.num(t.cost))
    w.eqs([row])


def _base_case(t: StepTrace, w: _Writer) -> None:
    m, s, L = w.m, w.s, t.L
    out = t.layers[-1]
    dC_da = w.d("C", s("a", L))
    w.section(f"3. Base case: the output layer, {m(f'L = {L}')}")
    if out.dC_da is None:
        w.para(
            f"With a {w.word(out.activation)} output and the {w.word(t.cost_name)} cost, the "
            f"{m('1/a')} in the cost's derivative cancels against the derivative of "
            f"{m(s('g', L))}, and the loss gives the base case directly:"
        )
        w.eqs([[s("delta", L), s("a", L) + " - y", w.vec(out.delta)]])
        return
    deriv = "2 (" + s("a", L) + " - y)" if t.cost_name == "squared_error" else dC_da
    if out.g_prime is None:
        jacobian = (
            f"{s('delta', L, 'j')} = {s('a', L, 'j')} ({w.d('C', s('a', L, 'j'))} - "
            f"{w.sum_over('k')}{s('a', L, 'k')} {w.d('C', s('a', L, 'k'))})"
        )
        w.para(
            "Softmax couples the units of the output layer, so its derivative is a Jacobian "
            f"and {m(jacobian)}:"
        )
        w.eqs([[dC_da, deriv, w.vec(out.dC_da)], [s("delta", L), w.vec(out.delta)]])
        return
    w.para(
        f"{m(s('delta', L) + ' = ' + dC_da + w.mul + w.gp(L))}: the cost's derivative times the "
        f"activation's, which the engine computes from {m(s('a', L))} alone."
    )
    rows = [[dC_da, deriv, w.vec(out.dC_da)]]
    g_form = w.gprime_from_a(out.activation, L)
    rows.append([w.gp(L)] + ([g_form] if g_form else []) + [w.vec(out.g_prime)])
    rows.append([s("delta", L), dC_da + w.mul + w.gp(L), w.vec(out.delta)])
    w.eqs(rows)
    if t.sizes[L] <= w.max_entries:
        w.para("Unit by unit:")
        w.eqs(
            [
                [
                    s("delta", L, str(j)),
                    w.factor(out.dC_da[j]) + w.times + w.factor(out.g_prime[j]),
                    w.num(out.delta[j]),
                ]
                for j in range(t.sizes[L])
            ]
        )


def _recursion(t: StepTrace, w: _Writer) -> None:
    m, s, L, S = w.m, w.s, t.L, t.sizes
    if L == 1:
        w.section("4. Recursion")
        w.para("The network has no hidden layer, so there is no recursion.")
        return
    w.section(
        f"4. Recursion, {m(f'l = {L - 1}')} down to 1" if L > 2 else f"4. Recursion, {m('l = 1')}"
    )
    per_unit = f"{s('delta', 'l', 'k')} = {w.gp('l', 'k')}{w.times}{w.sum_over('j')}"
    per_unit += f"{s('Theta', 'l+1', 'kj')} {s('delta', 'l+1', 'j')}"
    vector = (
        f"{s('delta', 'l')} = ({s('Theta', 'l+1')}{w.dot}{s('delta', 'l+1')}){w.mul}{w.gp('l')}"
    )
    w.para(
        f"{m(per_unit)}, or for the whole layer {m(vector)}. Each {m(s('delta', 'l+1'))} was "
        "computed once, in the step before, and every unit of layer "
        f"{m('l')} reuses all of it: that reuse is what makes this a dynamic programme."
    )
    for l in range(L - 1, 0, -1):
        lay, nxt = t.layers[l - 1], t.layers[l]
        back = s("Theta", l + 1) + w.dot + s("delta", l + 1)
        w.para(
            f"Layer {l} reuses {m(s('delta', l + 1) + ' = ' + w.vec(nxt.delta))} in each of its "
            f"{S[l]} units:"
        )
        assert lay.dC_da is not None
        if lay.g_prime is None:
            w.eqs(
                [
                    [back, w.vec(lay.dC_da)],
                    [s("delta", l), "softmax Jacobian times (" + back + ")", w.vec(lay.delta)],
                ]
            )
            continue
        g_form = w.gprime_from_a(lay.activation, l)
        w.eqs(
            [
                [back, w.vec(lay.dC_da)],
                [w.gp(l)] + ([g_form] if g_form else []) + [w.vec(lay.g_prime)],
                [s("delta", l), "(" + back + ")" + w.mul + w.gp(l), w.vec(lay.delta)],
            ]
        )
        if S[l] > w.max_entries:
            continue
        shown = min(S[l + 1], 6)
        rows = []
        for k in range(S[l]):
            terms = [
                w.factor(nxt.theta[k, j]) + w.times + w.factor(nxt.delta[j]) for j in range(shown)
            ]
            if S[l + 1] > shown:
                terms.append(r"\cdots" if w.latex else "...")
            rows.append(
                [
                    s("delta", l, str(k)),
                    w.factor(lay.g_prime[k]) + w.times + w.paren(terms),
                    w.num(lay.delta[k]),
                ]
            )
        unit = w.gp(l, "k") + w.times + w.sum_over("j")
        unit += f"{s('Theta', l + 1, 'kj')} {s('delta', l + 1, 'j')}"
        w.para(f"Unit by unit, {m(s('delta', l, 'k') + ' = ' + unit)}:")
        w.eqs(rows)


def _read_off(t: StepTrace, w: _Writer) -> None:
    m, s, S = w.m, w.s, t.sizes
    w.section("5. Read-off, and finite differences entry by entry")
    weight = f"{w.d('C', s('Theta', 'l', 'kj'))} = {s('a', 'l-1', 'k')} {s('delta', 'l', 'j')}"
    if w.latex:
        central = r"(C(p + \varepsilon) - C(p - \varepsilon)) / 2\varepsilon"
    else:
        central = "(C(p + eps) - C(p - eps)) / (2 eps)"
    w.para(
        f"{m(weight)} "
        f"and {m(w.d('C', s('b', 'l', 'j')) + ' = ' + s('delta', 'l', 'j'))}: the bias is a weight "
        f"from a constant unit {m('a = 1')}. Each entry is one product of two numbers already "
        "in the tables. The finite difference is "
        f"{m(central)} "
        f"with {m(s('eps') + ' = ' + w.num(t.eps))}, from moving that one parameter and running "
        "the forward sweep again."
    )
    for lay in t.layers:
        l = lay.l
        a_prev = t.a(l - 1)
        sep = "" if max(S[l - 1], S[l]) <= 10 else ","
        entries = [
            (
                s("Theta", l, f"{k}{sep}{j}"),
                a_prev[k],
                lay.delta[j],
                lay.dtheta[k, j],
                lay.fd_dtheta[k, j],
            )
            for k in range(S[l - 1])
            for j in range(S[l])
        ]
        entries += [
            (s("b", l, str(j)), 1.0, lay.delta[j], lay.db[j], lay.fd_db[j]) for j in range(S[l])
        ]
        shown = entries[: w.max_entries]
        w.para(f"Layer {l}:")
        w.table(
            [
                f"parameter {m('p')}",
                m(s("a", l - 1, "k")),
                m(s("delta", l, "j")),
                f"engine {m(w.d('C', 'p'))}",
                "finite difference",
                "difference",
            ],
            [
                [m(name), w.tn(a), w.tn(d), w.tn(g), w.tn(f), m(w.small(abs(g - f)))]
                for name, a, d, g, f in shown
            ],
        )
        if len(shown) < len(entries):
            worst = max(abs(e[3] - e[4]) for e in entries)
            w.para(
                f"{len(shown)} of {len(entries)} parameters shown; the largest difference over "
                f"all {len(entries)} is {m(w.small(worst))}."
            )
    n_params = sum(lay.theta.size + lay.b.size for lay in t.layers)
    w.para(
        f"Over all {n_params} parameters, the largest relative error between the engine and "
        f"the finite differences is {m(w.small(t.fd_max_error))}."
    )


def _update(t: StepTrace, w: _Writer) -> None:
    m, s = w.m, w.s
    rule = s("Theta") + " := " + s("Theta") + " - " + s("alpha") + " " + w.d("C", s("Theta"))
    w.section("6. Update")
    w.para(f"{m(rule)} for every layer, with {m(s('alpha') + ' = ' + w.num(t.learning_rate))}:")
    for lay in t.layers:
        l = lay.l
        w.eqs(
            [
                [
                    s("Theta", l),
                    s("Theta", l) + " - " + s("alpha") + " " + w.d("C", s("Theta", l)),
                    w.mat(lay.theta_new),
                ],
                [
                    s("b", l),
                    s("b", l) + " - " + s("alpha") + " " + w.d("C", s("b", l)),
                    w.vec(lay.b_new),
                ],
            ],
            rel=":=",
        )
    w.para(
        f"After the step the cost of this example is {m('C_0 = ' + w.num(t.cost_after))} "
        f"(it was {m(w.num(t.cost))})."
    )


def _counting(t: StepTrace, w: _Writer) -> None:
    m, s, S, L, c = w.m, w.s, t.sizes, t.L, t.counts
    w.section("7. Why a dynamic programme: counting multiply-adds")
    paths = r"P_l = S_{l+1} \cdots S_L" if w.latex else "P_l = S_(l+1) ... S_L"
    w.para(
        f"Counted per example, for this network's {m('W = ' + str(c.weights))} weights. Both ways "
        f"start from the forward sweep ({c.forward} multiply-adds) and the base case. The plain "
        f"chain rule works out each weight of layer {m('l')} on its own, summing over its "
        f"{m(paths)} paths "
        f"to the output, each a product of {m('2(L - l) + 1')} factors. The dynamic programme "
        f"computes each {m(s('delta', 'l'))} once and reads every gradient off it."
    )
    w.table(
        ["layer", "weights", "paths per weight", "multiply-adds, path enumeration"],
        [
            [str(l), str(S[l - 1] * S[l]), str(c.paths[l - 1]), str(c.path_enumeration[l - 1])]
            for l in range(1, L + 1)
        ],
    )
    theta_delta, g_prime = m(s("Theta") + " " + s("delta")), m("g'")
    w.table(
        ["method", "multiply-adds after the forward sweep"],
        [
            [
                "dynamic programme",
                f"{c.backward} = {c.recursion} ({theta_delta}) + {c.derivative} "
                f"({g_prime}) + {c.read_off} (read-off)",
            ],
            ["path enumeration", str(c.path_total)],
        ],
    )
    w.para(
        f"One training step of the dynamic programme costs {c.forward} + {c.backward} = "
        f"{c.forward + c.backward} multiply-adds: about {m('W')} forward and {m('2W')} "
        f"backward, which the derivation writes as {m('2W')} and {m('4W')} by counting each "
        f"multiply and each add. With path enumeration it costs {c.forward} + {c.path_total} = "
        f"{c.forward + c.path_total}."
    )
    if t.path_multiplications is not None:
        w.para(
            f"Enumerating the paths of this network for real took {t.path_multiplications} "
            "multiplications, counted as they happened, and gave the dynamic programme's "
            f"gradients to within {m(w.small(t.path_max_difference or 0.0))}."
        )
    if L >= 2:
        growth = []
        for h in range(1, 7):
            cc = op_counts([S[0]] + [S[1]] * h + [S[L]])
            growth.append([str(h), str(cc.backward), str(cc.path_total)])
        w.para(
            "The gap grows exponentially with depth. The same input and output layers with "
            f"{m('h')} hidden layers of {S[1]} units:"
        )
        w.table(["hidden layers", "dynamic programme", "path enumeration"], growth)


def delta_norm_table(history: History, *, digits: int = 4) -> str:
    """The per-layer mean ``|delta^(l)|`` of each epoch as a text table, with a title line.

    Parameters
    ----------
    history : History
        From ``fit(..., track_delta_norms=True)``.
    digits : int
        Significant digits.

    Raises
    ------
    ConfigError
        If the history holds no such numbers.
    """
    norms = getattr(history, "delta_norms", None)
    if not norms:
        raise ConfigError(
            "this history has no per-layer delta norms; train with track_delta_norms=True"
        )
    L = len(norms[0])
    header = ["epoch"] + [f"delta^({l})" for l in range(1, L + 1)]
    epochs = history.epoch[len(history.epoch) - len(norms) :]  # a resumed run may add them late
    rows = [[str(e)] + [f"{v:.{digits}g}" for v in row] for e, row in zip(epochs, norms)]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(f"{h:>{wd}}" for h, wd in zip(header, widths))]
    lines.append("-" * len(lines[0]))
    lines.insert(0, "mean |delta^(l)| per example and unit, by epoch and layer:")
    lines += ["  ".join(f"{c:>{wd}}" for c, wd in zip(r, widths)) for r in rows]
    return "\n".join(lines) + "\n"
