"""What ``fit`` adds to the training steps of an epoch, in CPU time on one thread.

``deltaflow bench`` reports the same thing as "loop overhead", from wall-clock time; on a
shared machine that moves by 10-20% between turns, more than the overhead itself. Here
both sides run on one BLAS thread and are timed with the process's CPU time
(``time.process_time``), which leaves out the time other jobs hold the core:

* ``fit``: ``Network.fit(X, y, epochs=E, batch_size=B)`` as users call it, its checks of
  the data, shuffling, the epoch's cost and accuracy, the divergence checks included;
* ``steps``: the same number of epochs of the engine's steps alone, as ``fit`` makes
  them (a seeded shuffle, the rows gathered into the workspace, ``backprop.SgdStep``).

The data has a whole number of batches, so both train on the same rows. The two take
turns; the table has the median CPU time of each and the overhead
``1 - steps / fit``, with the quartiles of the per-turn ratio. That difference of two
noisy times moved by 10-20 points between runs here (2026-11-28), so a third column
measures ``fit``'s own work directly: ``fit`` run with a stand-in for
``backprop.SgdStep`` that does no arithmetic, less the same gathers made in a bare loop,
in microseconds per batch (pure Python and small numpy calls, steady from run to run),
and that cost as a share of the real step's time::

    python3 benchmarks/epoch_overhead.py                   # both networks, B = 1, 32, 512
    python3 benchmarks/epoch_overhead.py --epochs 4 --rows 12000 --turns 11
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from deltaflow import Network
from deltaflow.bench import ARCHITECTURES, LEARNING_RATE, bench_data
from deltaflow.engine import backprop


def steps_loop(net: Network, X: np.ndarray, y: np.ndarray, batch: int, epochs: int) -> None:
    """``epochs`` passes of the engine's steps, as ``fit`` runs them, and nothing else."""
    Y, _ = net.encode_targets(y, X.shape[0])
    ws = backprop.Workspace(net, batch, gradients=False)
    Ybuf = np.empty((batch, Y.shape[1]), dtype=net.dtype)
    order = np.arange(X.shape[0])
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        step = backprop.SgdStep(net, ws, Ybuf, LEARNING_RATE)  # fit binds one per epoch
        rng.shuffle(order)
        for start in range(0, X.shape[0], batch):
            idx = order[start : start + batch]
            X.take(idx, axis=0, out=ws.a[0], mode="clip")
            Y.take(idx, axis=0, out=Ybuf, mode="clip")
            step.forward()
            step.cost()
            step.backward()


class NoArithmeticStep:
    """Stands in for ``backprop.SgdStep`` to time ``fit`` around its steps: the same
    calls, with no arithmetic in them (the cost reads 0, so nothing diverges)."""

    def __init__(self, net: Network, ws: backprop.Workspace, *args: object) -> None:
        self.a_L = ws.a[len(net.weights)]

    def forward(self) -> np.ndarray:
        return self.a_L

    def cost(self) -> float:
        return 0.0

    def backward(self) -> None:
        return None


def own_cost(net: Network, X: np.ndarray, y: np.ndarray, batch: int, epochs: int) -> float:
    """CPU seconds ``fit`` spends outside its steps and gathers, over ``epochs``."""
    real = backprop.SgdStep
    backprop.SgdStep = NoArithmeticStep  # type: ignore[misc,assignment]
    try:
        t0 = time.process_time()
        net.fit(X, y, epochs=epochs, batch_size=batch, learning_rate=LEARNING_RATE, seed=0)
        with_fit = time.process_time() - t0
    finally:
        backprop.SgdStep = real  # type: ignore[misc]
    Y, _ = net.encode_targets(y, X.shape[0])
    ws = backprop.Workspace(net, batch, gradients=False)
    Ybuf = np.empty((batch, Y.shape[1]), dtype=net.dtype)
    order = np.arange(X.shape[0])
    rng = np.random.default_rng(0)
    t0 = time.process_time()
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, X.shape[0], batch):
            idx = order[start : start + batch]
            X.take(idx, axis=0, out=ws.a[0], mode="clip")
            Y.take(idx, axis=0, out=Ybuf, mode="clip")
    return with_fit - (time.process_time() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", default="1,32,512", help="comma-separated batch sizes")
    p.add_argument("--rows", type=int, default=12000, help="rows of data (784 columns)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--turns", type=int, default=11)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = p.parse_args(argv)
    try:
        args.batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        p.error(f"--batch takes whole numbers such as 1,32,512, got {args.batch!r}")
    if min(args.batches) < 1 or min(args.rows, args.epochs, args.turns) < 1:
        p.error("--batch, --rows, --epochs and --turns must be positive")
    if max(args.batches) > args.rows // 10:
        p.error(
            f"--rows {args.rows} is too few for batches of {max(args.batches)}; "
            "give at least ten batches' worth"
        )
    with threadpool_limits(1):  # every BLAS on one thread: CPU time is then the step's time
        table(args)
    return 0


def table(args: argparse.Namespace) -> None:
    """Print the table of ``main``."""
    X_all, y_all = bench_data(args.dtype, rows=args.rows)
    print(f"CPU seconds, one thread, {args.epochs} epochs, {args.dtype}, {args.turns} turns")
    print(
        "| network | batch | rows | fit | steps | overhead | quartiles of fit/steps "
        "| fit's own us/batch | own / steps |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for arch in ARCHITECTURES.values():
        for batch in args.batches:
            rows = args.rows if arch.sizes[1] < 100 else args.rows // 4  # similar seconds
            rows = (rows // 10 if batch == 1 else rows) // batch * batch
            X, y = X_all[:rows], y_all[:rows]
            fit_s, steps_s, own_s = [], [], []
            for _ in range(args.turns):
                net = Network(
                    list(arch.sizes), arch.activation, arch.cost, dtype=args.dtype, seed=0
                )
                t0 = time.process_time()
                net.fit(
                    X, y, epochs=args.epochs, batch_size=batch, learning_rate=LEARNING_RATE, seed=0
                )
                fit_s.append(time.process_time() - t0)
                net = Network(
                    list(arch.sizes), arch.activation, arch.cost, dtype=args.dtype, seed=0
                )
                t0 = time.process_time()
                steps_loop(net, X, y, batch, args.epochs)
                steps_s.append(time.process_time() - t0)
                own_s.append(own_cost(net, X, y, batch, args.epochs))
            f, s = float(np.median(fit_s)), float(np.median(steps_s))
            own = float(np.median(own_s))
            per_batch = 1e6 * own / (args.epochs * rows // batch)
            q1, q3 = np.percentile(np.array(fit_s) / np.array(steps_s), [25, 75])
            print(
                f"| {arch.label} | {batch} | {rows} | {f:.3f} | {s:.3f} | "
                f"{100 * (1 - s / f):.1f}% | {q1:.3f}-{q3:.3f} | {per_batch:.2f} | "
                f"{100 * own / s:.1f}% |"
            )


if __name__ == "__main__":
    sys.exit(main())
