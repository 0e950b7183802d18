"""The optimizer's update: one call on the flat buffers against one call per array.

``fit`` hands an optimizer ``[net.params]`` and ``[ws.grad]``, one flat array each; before
the flat buffer it handed the ``2L`` arrays ``Theta[1..L], b[1..L]``. Both run here side by
side, in turns, on the benchmark grid's networks, and the table gives the median time of
one update and ``x per-array``, the speed-up of the flat update::

    python3 benchmarks/flat_update.py                 # momentum, nesterov, adam
    python3 benchmarks/flat_update.py --turns 21 --steps 400
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from deltaflow import Network
from deltaflow.bench import ARCHITECTURES
from deltaflow.engine import params as flat
from deltaflow.training.optimizers import get_optimizer


def time_updates(name: str, params: list[np.ndarray], grad: np.ndarray, steps: int) -> float:
    """Seconds per update of ``steps`` updates (the gradient is refilled before each)."""
    opt = get_optimizer(name)
    grads = [np.empty_like(p) for p in params]
    flat_grads = _as_layers(grads, grad) if len(params) > 1 else [grad.copy()]
    total = 0.0
    for _ in range(steps):
        for g, src in zip(grads, flat_grads):
            np.copyto(g, src)  # the optimizer may use the gradient as scratch
        t0 = time.perf_counter()
        opt.step(params, grads, 1e-3)
        total += time.perf_counter() - t0
    return total / steps


def _as_layers(grads: list[np.ndarray], grad: np.ndarray) -> list[np.ndarray]:
    """The flat gradient cut like ``grads`` (weights then biases)."""
    L = len(grads) // 2
    sizes = [grads[0].shape[0]] + [g.shape[1] for g in grads[:L]]
    weights, biases = flat.split(grad, sizes)
    return weights + biases


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--optimizers", default="momentum,nesterov,adam")
    p.add_argument("--turns", type=int, default=11)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args(argv)
    print("| arch | dtype | optimizer | per-array (us) | flat (us) | x per-array |")
    print("|---|---|---|---:|---:|---:|")
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        for arch in ARCHITECTURES.values():
            for dtype in ("float32", "float64"):
                for name in args.optimizers.split(","):
                    net = Network(list(arch.sizes), arch.activation, dtype=dtype, seed=0)
                    grad = rng.standard_normal(net.n_params).astype(dtype) * 1e-2
                    per_layer = [w.copy() for w in net.weights] + [b.copy() for b in net.biases]
                    one = [net.params.copy()]
                    a, b = [], []
                    for _ in range(args.turns):
                        a.append(time_updates(name, per_layer, grad, args.steps))
                        b.append(time_updates(name, one, grad, args.steps))
                    ta, tb = statistics.median(a), statistics.median(b)
                    print(
                        f"| {arch.name} | {dtype} | {name} | {ta * 1e6:.1f} | {tb * 1e6:.1f} "
                        f"| {ta / tb:.2f}x |"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
