"""Run by ``mpiexec`` from tests/test_parallel.py: one data-parallel ``fit`` per rank.

Usage: ``python tests/mpi_worker.py SPEC.json OUTDIR``. The spec names the network, the
data (made here from a seed, so every rank builds the same) and ``fit``'s settings; each
rank writes ``OUTDIR/rank{r}.npz`` with its parameters and history, or
``OUTDIR/rank{r}.err`` with the message of the error ``fit`` raised.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def problem(spec: dict) -> tuple:
    """Network and data of the spec, the same on every rank (and in the test process)."""
    from deltaflow import Network

    rng = np.random.default_rng(spec.get("data_seed", 0))
    m, sizes = spec["m"], spec["sizes"]
    X = rng.standard_normal((m, sizes[0]))
    classes = sizes[-1]
    y = (X[:, :classes].argmax(axis=1) + (X[:, -1] > 1)) % classes
    net = Network(
        sizes,
        activation=spec.get("activation", ["tanh"] * (len(sizes) - 2) + ["softmax"]),
        cost=spec.get("cost", "cross_entropy"),
        dtype=spec.get("dtype", "float64"),
        seed=spec.get("seed", 0),
    )
    kwargs = dict(spec["fit"])
    if spec.get("weights"):
        kwargs["sample_weight"] = rng.uniform(0.0, 2.0, size=m)
    return net, X, y, kwargs


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    from mpi4py import MPI

    from deltaflow import fit

    comm = MPI.COMM_WORLD
    net, X, y, kwargs = problem(spec)
    if spec.get("data_shift_rank") == comm.rank:
        X = X + 1.0
    try:
        history = fit(net, X, y, comm=comm, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the test reads the message
        (out / f"rank{comm.rank}.err").write_text(f"{type(exc).__name__}: {exc}")
        return
    flat = np.concatenate([p.ravel() for p in net.weights + net.biases])
    np.savez(
        out / f"rank{comm.rank}.npz",
        params=flat,
        history=json.dumps(history.as_dict()),
    )


if __name__ == "__main__":
    main()
