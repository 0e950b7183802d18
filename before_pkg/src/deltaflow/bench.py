"""Training speed side by side: deltaflow, PyTorch eager, scikit-learn, and the limit.

Every contender trains the same architecture with the same batch size, dtype and plain
SGD update on the same data, and is timed in samples per second:

``deltaflow``
    :meth:`Network.fit` as users call it (``epochs``, ``batch_size``, ``learning_rate``),
    so the figure includes the training loop's own work: checking the data, shuffling,
    gathering batches, the per-epoch cost and accuracy.
``steps``
    the same engine steps as ``fit`` runs them (gather, forward, cost, backward with the
    update) without anything else; ``1 - deltaflow / steps`` is the loop's overhead.
``torch``
    PyTorch eager, the usual loop (``zero_grad``, forward, loss, ``backward``, ``step``)
    with ``torch.set_num_threads`` set to the BLAS threads deltaflow has. It neither
    computes nor reports the epoch's cost or accuracy, which favours it slightly.
``sklearn``
    scikit-learn's ``MLPClassifier`` (``solver="sgd"``, no momentum, no L2), one
    ``partial_fit`` epoch at a time. Its output layer is always softmax with the log
    loss, so on a squared-error architecture it runs a slightly different cost.
``limit``
    only the matrix products a step needs, at the step's shapes and dtype: per layer
    ``a[l-1] @ Theta[l]``, ``a[l-1].T @ delta[l]`` and, below the top,
    ``delta[l] @ Theta[l].T``, on whichever of the two BLAS libraries deltaflow can use,
    on one thread or on all, is fastest for them (see :class:`Limit`), each bound to its
    arrays once and called from a plain loop. Nothing else: no bias, activation, cost,
    gathering or method dispatch. A training step cannot be faster than this.

The contenders of one configuration take turns (the order rotates every round, with a
short pause between turns so that the previous one's BLAS or OpenMP threads fall
asleep), every turn trains for about ``seconds``, and the figure reported is the median
over ``repeats`` turns. This module returns data; ``deltaflow bench`` prints it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from deltaflow.engine import backprop
from deltaflow.engine.blas import NumpyBlas, ScipyBlas, SmallStepBlas, cap_threads
from deltaflow.errors import ConfigError
from deltaflow.network import Network, check_dtype

__all__ = [
    "ARCHITECTURES",
    "BATCH_SIZES",
    "CONTENDERS",
    "DTYPES",
    "Architecture",
    "BenchResult",
    "Row",
    "machine_info",
    "run_grid",
]


@dataclass(frozen=True)
class Architecture:
    """A network of the grid: layer sizes, hidden activation, cost."""

    name: str
    sizes: tuple[int, ...]
    activation: str
    cost: str

    @property
    def label(self) -> str:
        return f"{self.name} {self.activation} {self.cost}"


ARCHITECTURES = {
    "784-30-10": Architecture("784-30-10", (784, 30, 10), "sigmoid", "squared_error"),
    "784-256-256-10": Architecture("784-256-256-10", (784, 256, 256, 10), "relu", "cross_entropy"),
}
BATCH_SIZES = (1, 10, 32, 128, 512, 2048)
DTYPES = ("float32", "float64")
CONTENDERS = ("deltaflow", "steps", "torch", "sklearn", "limit")

#: rows of random data of MNIST's shape that every contender trains on
POOL_ROWS = 8192
LEARNING_RATE = 0.01


def parse_architecture(text: str) -> Architecture:
    """A grid name such as ``784-30-10``, or ``SIZES:ACTIVATION:COST``.

    For example ``784-64-10:tanh:cross_entropy``.
    """
    if text in ARCHITECTURES:
        return ARCHITECTURES[text]
    parts = text.split(":")
    try:
        sizes = tuple(int(s) for s in parts[0].split("-"))
    except ValueError:
        sizes = ()
    if len(parts) != 3 or len(sizes) < 2 or min(sizes) < 1:
        known = ", ".join(ARCHITECTURES)
        raise ConfigError(
            f"unknown architecture {text!r}; use {known} or SIZES:ACTIVATION:COST "
            "such as 784-64-10:tanh:cross_entropy"
        )
    if sizes[0] != 784 or sizes[-1] != 10:
        raise ConfigError(
            f"architecture {text!r} must start with 784 inputs and end with 10 classes, "
            "the shape of the benchmark's MNIST-like data"
        )
    arch = Architecture(parts[0], sizes, parts[1], parts[2])
    Network(list(sizes), arch.activation, arch.cost)  # raises ConfigError if it is not valid
    return arch


# ------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    """The machine and libraries the figures come from."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for name, dist in (("scipy", "scipy"), ("torch", "torch"), ("sklearn", "scikit-learn")):
        try:
            info[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    info["blas"] = blas_libraries()
    info["env"] = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO")) or k == "DELTAFLOW_SHARED_DATA"
    }
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_OWNERS = ("scipy", "numpy", "torch")


def blas_libraries() -> list[dict[str, Any]]:
    """The BLAS and OpenMP libraries loaded, from threadpoolctl (empty without it).

    deltaflow's products go through scipy's OpenBLAS (``libscipy_openblas``, the one
    whose file lies under ``scipy.libs``) and numpy's own (the ``numpy.libs`` one).
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    from scipy.linalg import blas as _  # noqa: F401  (load scipy's BLAS so it is listed)

    out = []
    for lib in threadpool_info():
        path = str(lib.get("filepath", ""))
        owner = next(
            (o for o in ("scipy", "numpy", "torch") if f"{o}." in path or f"/{o}/" in path), ""
        )
        out.append(
            {
                "library": lib.get("prefix"),
                "api": lib.get("user_api"),
                "version": lib.get("version"),
                "kernel": lib.get("architecture"),
                "threads": lib.get("num_threads"),
                "owner": owner,
                "file": os.path.basename(path),
            }
        )
    return out


def deltaflow_threads() -> int:
    """The threads of scipy's BLAS (the bench sets numpy's alike), 1 without threadpoolctl."""
    for lib in blas_libraries():
        if lib["owner"] == "scipy" and lib["api"] == "blas":
            return int(lib["threads"] or 1)
    return 1


# ------------------------------------------------------------------------ contenders
@dataclass
class Config:
    arch: Architecture
    batch: int
    dtype: str
    threads: int


class Contender:
    """Something that trains ``n`` samples per call of :meth:`run` and says how long."""

    name = "contender"

    def __init__(self, cfg: Config, X: np.ndarray, y: np.ndarray) -> None:
        self.cfg = cfg

    def run(self, n: int) -> tuple[int, float]:
        """Train on about ``n`` samples; return the samples trained on and the seconds."""
        raise NotImplementedError


class DeltaflowFit(Contender):
    """``Network.fit`` as users call it."""

    name = "deltaflow"

    def __init__(self, cfg: Config, X: np.ndarray, y: np.ndarray) -> None:
        super().__init__(cfg, X, y)
        a = cfg.arch
        self.net = Network(list(a.sizes), a.activation, a.cost, dtype=cfg.dtype, seed=0)
        self.X, self.y = X, y

    def run(self, n: int) -> tuple[int, float]:
        X, y, epochs = _rows(self.X, self.y, n)
        t0 = time.perf_counter()
        self.net.fit(X, y, epochs=epochs, batch_size=self.cfg.batch, learning_rate=LEARNING_RATE)
        return epochs * X.shape[0], time.perf_counter() - t0


class DeltaflowSteps(Contender):
    """The engine's steps exactly as ``fit`` runs them, with none of the loop around."""

    name = "steps"

    def __init__(self, cfg: Config, X: np.ndarray, y: np.ndarray) -> None:
        super().__init__(cfg, X, y)
        a = cfg.arch
        self.net = net = Network(list(a.sizes), a.activation, a.cost, dtype=cfg.dtype, seed=0)
        self.X = X
        self.Y, _ = net.encode_targets(y, X.shape[0])
        self.ws = backprop.Workspace(net, cfg.batch, gradients=False)
        self.Ybuf = np.empty((cfg.batch, self.Y.shape[1]), dtype=net.dtype)
        self.step = backprop.SgdStep(net, self.ws, self.Ybuf, LEARNING_RATE)  # as fit makes it
        self.order = np.arange(X.shape[0])
        self.rng = np.random.default_rng(0)
        self.threads = backprop.blas_threads(net, cfg.batch)

    def run(self, n: int) -> tuple[int, float]:
        ws, step, bs, X, Y = self.ws, self.step, self.cfg.batch, self.X, self.Y
        restore = cap_threads(self.threads) if self.threads else None  # as fit does
        t0 = time.perf_counter()
        done = 0
        while done < n:
            self.rng.shuffle(self.order)
            for start in range(0, min(n - done, X.shape[0]) - bs + 1, bs):
                idx = self.order[start : start + bs]
                X.take(idx, axis=0, out=ws.a[0], mode="clip")
                Y.take(idx, axis=0, out=self.Ybuf, mode="clip")
                step.forward()
                step.cost()
                step.backward()
                done += bs
        elapsed = time.perf_counter() - t0
        if restore is not None:
            restore()
        return done, elapsed


class Torch(Contender):
    """PyTorch eager: ``nn.Sequential``, ``torch.optim.SGD``, the usual loop."""

    name = "torch"

    def __init__(self, cfg: Config, X: np.ndarray, y: np.ndarray) -> None:
        super().__init__(cfg, X, y)
        import torch

        self.torch = torch
        torch.set_num_threads(cfg.threads)
        a = cfg.arch
        dt = getattr(torch, cfg.dtype)
        start = Network(list(a.sizes), a.activation, a.cost, dtype=cfg.dtype, seed=0)
        self.model = torch_model(start)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE)
        self.X = torch.from_numpy(X)
        self.labels = torch.from_numpy(y.astype(np.int64))
        self.Y = torch.nn.functional.one_hot(self.labels, a.sizes[-1]).to(dt)
        self.cross_entropy = a.cost == "cross_entropy"

    def run(self, n: int) -> tuple[int, float]:
        torch, bs, model, opt = self.torch, self.cfg.batch, self.model, self.opt
        t0 = time.perf_counter()
        done = 0
        while done < n:
            perm = torch.randperm(self.X.shape[0])
            for start in range(0, min(n - done, self.X.shape[0]) - bs + 1, bs):
                idx = perm[start : start + bs]
                xb = self.X[idx]
                out = model(xb)
                if self.cross_entropy:  # softmax and the log loss fused, as users write it
                    loss = torch.nn.functional.cross_entropy(out, self.labels[idx])
                else:  # the notes' cost: sum over units, mean over the batch
                    loss = ((out - self.Y[idx]) ** 2).sum(dim=1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += bs
        return done, time.perf_counter() - t0


def torch_model(net: Network) -> Any:
    """A ``torch.nn.Sequential`` with ``net``'s layers and a copy of its parameters.

    With the cross-entropy cost the softmax is left to the loss
    (``torch.nn.functional.cross_entropy`` takes the pre-activations ``z[L]``).
    """
    import torch

    acts = {
        "sigmoid": torch.nn.Sigmoid,
        "tanh": torch.nn.Tanh,
        "relu": torch.nn.ReLU,
        "identity": torch.nn.Identity,
        "leaky_relu": torch.nn.LeakyReLU,
    }
    layers: list[Any] = []
    for l, (theta, b) in enumerate(zip(net.weights, net.biases), start=1):
        lin = torch.nn.Linear(theta.shape[0], theta.shape[1], dtype=getattr(torch, net.dtype.name))
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(theta.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        name = net.activations[l - 1].name
        if name == "softmax":
            if net.loss.name != "cross_entropy":
                layers.append(torch.nn.Softmax(dim=1))
        else:
            layers.append(acts[name]())
    return torch.nn.Sequential(*layers)


class Sklearn(Contender):
    """scikit-learn's ``MLPClassifier`` with plain SGD, one ``partial_fit`` epoch per turn."""

    name = "sklearn"

    def __init__(self, cfg: Config, X: np.ndarray, y: np.ndarray) -> None:
        super().__init__(cfg, X, y)
        from sklearn.neural_network import MLPClassifier

        a = cfg.arch
        self.clf = MLPClassifier(
            hidden_layer_sizes=a.sizes[1:-1],
            activation="logistic" if a.activation == "sigmoid" else a.activation,
            solver="sgd",
            batch_size=cfg.batch,
            learning_rate_init=LEARNING_RATE,
            momentum=0.0,
            nesterovs_momentum=False,
            alpha=0.0,
            random_state=0,
        )
        self.X, self.y = X, y
        self.classes = np.arange(a.sizes[-1])

    def run(self, n: int) -> tuple[int, float]:
        X, y, epochs = _rows(self.X, self.y, n)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(epochs):
                self.clf.partial_fit(X, y, classes=self.classes)
        return epochs * X.shape[0], time.perf_counter() - t0


class Limit(Contender):
    """Only the BLAS products of a step, at its shapes and dtype, on the faster BLAS.

    Each turn runs a quarter of its steps on each of four ways to compute them and
    reports the fastest, so that a step cannot beat the limit whichever BLAS and threads
    the engine picked:

    * scipy's BLAS on one thread, the weight-gradient product written into ``Theta``
      with ``alpha`` and ``beta``, as the fused SGD update does;
    * numpy's with its threads, the products into a gradient buffer (``np.dot``);
    * numpy's on one thread, the same way (the fastest for the float32 products of
      batches of 10 to 128 in some measurements, 2026-11-27);
    * each product on whichever of the two runs it faster, on one thread, as small
      steps do (:class:`~deltaflow._blas.SmallStepBlas`), with ``alpha`` and ``beta``.

    Each way's products are bound to their arrays once (``ops``) and run from a loop,
    as :class:`~deltaflow.backprop.SgdStep` runs a step's calls. (Until 2026-11-28 they
    were called through the back ends' methods, whose dispatch cost more than the
    products at batch 1: 21 against about 9 us a step for 784-30-10.)
    """

    name = "limit"

    def __init__(self, cfg: Config, X: np.ndarray, y: np.ndarray) -> None:
        super().__init__(cfg, X, y)
        a, m = cfg.arch, cfg.batch
        net = Network(list(a.sizes), a.activation, a.cost, dtype=cfg.dtype, seed=0)
        rng = np.random.default_rng(1)
        dt = net.dtype
        self.theta = [w.copy() for w in net.weights]
        self.grad = [np.zeros_like(w) for w in net.weights]
        self.a = [X[:m].copy()] + [np.zeros((m, s), dtype=dt) for s in a.sizes[1:]]
        small = [(rng.standard_normal((m, s)) * 1e-3).astype(dt) for s in a.sizes[1:]]
        self.delta: list[Any] = [None, *small]

    def run(self, n: int) -> tuple[int, float]:
        steps = max(1, n // self.cfg.batch // 4)
        dt = self.cfg.dtype
        rates = [self._products(ScipyBlas.of(dt), steps, threads=1)]
        rates.append(self._products(NumpyBlas(dt), steps, threads=None))
        limiter = _thread_limiter(1)  # every BLAS on one thread, numpy's included
        try:
            rates.append(self._products(NumpyBlas(dt), steps, threads=None))
            mixed = SmallStepBlas(dt)
            if mixed.numpy.direct_gemm:
                rates.append(self._products(mixed, steps, threads=None))
        finally:
            limiter.restore_original_limits()
        return min(rates, key=lambda r: r[1] / r[0])

    def _products(self, blas: Any, steps: int, threads: int | None) -> tuple[int, float]:
        a, delta, theta, L = self.a, self.delta, self.theta, len(self.theta)
        # scipy's gemm (and numpy's cblas on small steps) writes the product into Theta at
        # no extra cost, as the fused SGD update does; NumpyBlas's products go into a
        # gradient buffer, alpha = 1 and beta = 0, the plain np.dot (its alpha and beta can
        # cost a pass of arithmetic)
        fused = isinstance(blas, (ScipyBlas, SmallStepBlas))
        grad = theta if fused else self.grad
        alpha, beta = (-1e-6, 1.0) if fused else (1.0, 0.0)  # alpha != 0: nothing skipped
        # bound once, as the engine's SgdStep binds its calls: the products and the loop
        # that runs them, and no method dispatch (which at batch 1 costs more than the
        # products themselves)
        calls = []
        for l in range(1, L + 1):
            calls += blas.ops("matmul", a[l - 1], theta[l - 1], a[l])
        for l in range(L, 0, -1):
            if l > 1:
                calls += blas.ops("matmul_bt", delta[l], theta[l - 1], delta[l - 1])
            calls += blas.ops("matmul_at", a[l - 1], delta[l], grad[l - 1], alpha, beta)
        restore = cap_threads(threads) if threads else None
        t0 = time.perf_counter()
        for _ in range(steps):
            for call in calls:
                call()
        elapsed = time.perf_counter() - t0
        if restore is not None:
            restore()
        return steps * self.cfg.batch, elapsed


CONTENDER_TYPES: dict[str, type[Contender]] = {
    c.name: c for c in (DeltaflowFit, DeltaflowSteps, Torch, Sklearn, Limit)
}


def _rows(X: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The first ``n`` rows once, or the whole pool for enough epochs to cover ``n``."""
    if n <= X.shape[0]:
        return X[:n], y[:n], 1
    return X, y, math.ceil(n / X.shape[0])


def available(name: str) -> bool:
    """Whether a contender can run here (torch and sklearn are optional)."""
    if name in ("torch", "sklearn"):
        return importlib.util.find_spec(name) is not None
    return name in CONTENDER_TYPES


# ------------------------------------------------------------------------- the grid
@dataclass
class Row:
    """One configuration's medians (samples per second), samples and ratios."""

    arch: str
    activation: str
    cost: str
    dtype: str
    batch: int
    threads: int
    #: the BLAS deltaflow's workspace uses at this batch size, and its threads
    engine_blas: str = ""
    engine_threads: int = 0
    samples_per_s: dict[str, float] = field(default_factory=dict)
    turns: dict[str, list[float]] = field(default_factory=dict)

    def ratio(self, a: str, b: str) -> float | None:
        x, y = self.samples_per_s.get(a), self.samples_per_s.get(b)
        return x / y if x and y else None

    @property
    def vs_torch(self) -> float | None:
        return self.ratio("deltaflow", "torch")

    @property
    def vs_sklearn(self) -> float | None:
        return self.ratio("deltaflow", "sklearn")

    @property
    def of_limit(self) -> float | None:
        return self.ratio("deltaflow", "limit")

    @property
    def overhead(self) -> float | None:
        r = self.ratio("deltaflow", "steps")
        return None if r is None else 1.0 - r

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            vs_torch=self.vs_torch,
            vs_sklearn=self.vs_sklearn,
            of_limit=self.of_limit,
            loop_overhead=self.overhead,
        )
        return d


@dataclass
class BenchResult:
    machine: dict[str, Any]
    settings: dict[str, Any]
    rows: list[Row]

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "settings": self.settings,
            "rows": [r.as_dict() for r in self.rows],
        }

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        from deltaflow.io import atomic_write_bytes

        p = Path(path)
        atomic_write_bytes(p, json.dumps(self.as_dict(), indent=1).encode() + b"\n")
        return p


def bench_data(dtype: str, rows: int = POOL_ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs in [0, 1) of MNIST's shape (``rows`` x 784) and labels 0..9."""
    rng = np.random.default_rng(seed)
    X = rng.random((rows, 784), dtype=np.float64).astype(dtype)
    return X, rng.integers(0, 10, size=rows)


def run_grid(
    archs: Sequence[Architecture] = tuple(ARCHITECTURES.values()),
    batches: Sequence[int] = BATCH_SIZES,
    dtypes: Sequence[str] = DTYPES,
    contenders: Sequence[str] = CONTENDERS,
    *,
    repeats: int = 5,
    seconds: float = 0.3,
    pause: float = 0.05,
    threads: int | None = None,
    progress: Callable[[Row], Any] | None = None,
) -> BenchResult:
    """Time every contender on every configuration, interleaved; see the module docstring.

    Parameters
    ----------
    archs, batches, dtypes : sequences
        The grid.
    contenders : sequence of str
        Names from :data:`CONTENDERS`; those not installed here are skipped.
    repeats : int
        Turns per contender and configuration; the median is reported.
    seconds : float
        About how long each turn trains.
    pause : float
        Seconds of sleep before each turn, so that the previous contender's threads
        stop spinning.
    threads : int, optional
        Threads for the BLAS deltaflow uses and for PyTorch; default: what the BLAS
        has now.
    progress : callable, optional
        Called with each finished :class:`Row`.
    """
    for d in dtypes:
        check_dtype(d)
    if repeats < 1 or seconds <= 0:
        raise ConfigError("repeats must be at least 1 and seconds positive")
    bad = [b for b in batches if b < 1 or b > POOL_ROWS]
    if bad:
        raise ConfigError(f"batch sizes must be 1..{POOL_ROWS}, got {bad}")
    unknown = [c for c in contenders if c not in CONTENDER_TYPES]
    if unknown:
        raise ConfigError(f"unknown contenders {unknown}; choose from {', '.join(CONTENDERS)}")
    names = [c for c in contenders if available(c)]
    limiter = _thread_limiter(threads)
    n_threads = threads or deltaflow_threads()
    rows = []
    try:
        for dtype in dtypes:
            X, y = bench_data(dtype)
            for arch in archs:
                for batch in batches:
                    cfg = Config(arch, batch, dtype, n_threads)
                    row = _run_config(cfg, X, y, names, repeats, seconds, pause)
                    rows.append(row)
                    if progress is not None:
                        progress(row)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    settings = {
        "repeats": repeats,
        "seconds_per_turn": seconds,
        "learning_rate": LEARNING_RATE,
        "pool_rows": POOL_ROWS,
        "threads": n_threads,
        "contenders": names,
        "data": "random, MNIST's shape (784 inputs, 10 classes)",
    }
    return BenchResult(machine_info(), settings, rows)


def _thread_limiter(threads: int | None) -> Any:
    if threads is None:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ConfigError("setting the BLAS threads needs threadpoolctl (pip install it)") from None
    return threadpool_limits(limits=threads, user_api="blas")


def _run_config(
    cfg: Config,
    X: np.ndarray,
    y: np.ndarray,
    names: list[str],
    repeats: int,
    seconds: float,
    pause: float,
) -> Row:
    made = {name: CONTENDER_TYPES[name](cfg, X, y) for name in names}
    # Warm up and size each turn: a short run gives the rate, the turn covers `seconds`.
    sizes: dict[str, int] = {}
    for name, c in made.items():
        n = cfg.batch * 8
        done, elapsed = c.run(n)
        while elapsed < 0.02 and n < 64 * POOL_ROWS:
            n *= 4
            done, elapsed = c.run(n)
        sizes[name] = cfg.batch * max(1, int(seconds * done / elapsed / cfg.batch))
    turns: dict[str, list[float]] = {name: [] for name in made}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            time.sleep(pause)
            done, elapsed = made[name].run(sizes[name])
            turns[name].append(done / elapsed)
    a = cfg.arch
    net = Network(list(a.sizes), a.activation, a.cost, dtype=cfg.dtype)
    return Row(
        arch=a.name,
        activation=a.activation,
        cost=a.cost,
        dtype=cfg.dtype,
        batch=cfg.batch,
        threads=cfg.threads,
        engine_blas=backprop.Workspace(net, cfg.batch, gradients=False).blas.name,
        engine_threads=backprop.blas_threads(net, cfg.batch) or cfg.threads,
        samples_per_s={name: statistics.median(v) for name, v in turns.items()},
        turns=turns,
    )


# ------------------------------------------------------------------------- the table
def format_table(result: BenchResult) -> str:
    """The result as plain-text tables, one per architecture and dtype."""
    lines = [_machine_line(result.machine)]
    s = result.settings
    lines.append(
        f"median samples/s over {s['repeats']} interleaved turns of ~{s['seconds_per_turn']} s, "
        f"{s['threads']} BLAS thread(s), plain SGD"
    )
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in result.rows:
        groups.setdefault((row.arch, row.dtype), []).append(row)
    for (arch, dtype), rows in groups.items():
        lines.append("")
        lines.append(f"{arch} {rows[0].activation} {rows[0].cost}, {dtype}")
        lines.append(markdown_table(rows))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    """A Markdown table of rows: samples/s per contender, ratios, fraction of the limit."""
    present = [c for c in CONTENDERS if any(c in r.samples_per_s for r in rows)]
    shown = [c for c in present if c != "steps"]
    head = ["batch"] + shown + ["x torch", "x sklearn", "of limit", "loop overhead", "BLAS"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---:"] * len(head)) + "|"]
    for r in rows:
        cells = [str(r.batch)]
        cells += [_rate(r.samples_per_s.get(c)) for c in shown]
        cells += [
            _x(r.vs_torch),
            _x(r.vs_sklearn),
            _f(r.of_limit),
            "" if r.overhead is None else f"{100 * r.overhead:.0f}%",
            f"{r.engine_blas} x{r.engine_threads}",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _machine_line(m: dict[str, Any]) -> str:
    libs = []
    for owner, use in (("scipy", "small steps"), ("numpy", "small and large steps")):
        b = next((b for b in m.get("blas", []) if b["api"] == "blas" and b["owner"] == owner), None)
        if b is not None:
            libs.append(f"{owner}'s {b['library']} {b['version']} ({b['kernel']}, {use})")
    blas = "; ".join(libs) or "BLAS unknown (install threadpoolctl)"
    return f"{m['cpu']}, {m['logical_cores']} logical cores; {blas}"


def _rate(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x / 1e3:,.1f}k" if x < 1e5 else f"{x / 1e3:,.0f}k"


def _x(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def _f(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"
