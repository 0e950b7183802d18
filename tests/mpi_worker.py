"""Run by ``mpiexec`` from tests/test_parallel.py: one data-parallel ``fit`` per rank.

Usage: ``python tests/mpi_worker.py SPECS.json OUTDIR``. Each spec of the list names the
network, the data (made here from a seed, so every rank builds the same) and ``fit``'s
settings; for spec ``i`` each rank ``r`` writes ``OUTDIR/i-rank{r}.npz`` with its
parameters and history (and, for a spec that asks, the file rows it read), and
``OUTDIR/i-rank{r}.err`` with the message of the error ``fit`` raised, if any. One
launch runs many specs, as ``mpiexec`` takes seconds to start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
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


def mapped(spec: dict, X: np.ndarray, kwargs: dict) -> np.ndarray:
    """The spec's memory maps in place of the data made in memory: ``X`` from the file
    ``spec["mmap"]``, validation data from the pair of files ``spec["val_mmap"]``."""
    if spec.get("val_mmap"):
        Xv, yv = spec["val_mmap"]
        kwargs["validation_data"] = (np.load(Xv, mmap_mode="r"), np.load(yv, mmap_mode="r"))
    return np.load(spec["mmap"], mmap_mode="r") if spec.get("mmap") else X


@contextlib.contextmanager
def recorded_gathers():
    """Every call of ``MappedData.gather`` meanwhile: the file rows it read, in a list."""
    from deltaflow.training.mapped import MappedData

    calls: list[np.ndarray] = []
    gather = MappedData.gather

    def recording(self, rows, x_out, y_out):
        calls.append(np.array(rows))
        return gather(self, rows, x_out, y_out)

    MappedData.gather = recording
    try:
        yield calls
    finally:
        MappedData.gather = gather


def fault(spec: dict, rank: int, epoch: int) -> bool:
    """The spec's fault after ``epoch``: every rank raising, or one rank killed or hung;
    True (stop training) where the spec asks this rank alone to stop."""
    if spec.get("crash_after") == epoch:
        raise RuntimeError(f"interrupted after epoch {epoch}")
    if spec.get("kill_after") == [rank, epoch]:
        os.kill(os.getpid(), signal.SIGKILL)
    if spec.get("hang_after") == [rank, epoch]:
        time.sleep(600)
    return spec.get("stop_after") == [rank, epoch]


def main() -> None:
    specs = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    from mpi4py import MPI

    for i, spec in enumerate(specs):
        run(spec, MPI.COMM_WORLD, out / f"{i}-rank{MPI.COMM_WORLD.rank}")


def run(spec: dict, comm, out: Path) -> None:
    """One ``fit`` of the spec; its result in ``out.npz`` or its error in ``out.err``."""
    from deltaflow import fit

    net, X, y, kwargs = problem(spec)
    X = mapped(spec, X, kwargs)  # the same rows, read from memory-mapped .npy files
    if spec.get("data_shift_rank") == comm.rank:
        X = X + 1.0
    kwargs["callbacks"] = [lambda rec: fault(spec, comm.rank, rec.epoch)]
    fit_comm = comm
    if spec.get("per_layer"):  # each layer's gradient summed as the backward pass ends it
        from deltaflow.parallel import Communicator

        fit_comm = Communicator(comm, per_layer=True)
    if spec.get("intercomm"):
        half = comm.Split(comm.rank % 2, comm.rank)
        fit_comm = half.Create_intercomm(0, comm, 1 - comm.rank % 2, tag=7)
    history = None
    with recorded_gathers() as gathered:
        try:
            history = fit(net, X, y, comm=fit_comm, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the test reads the message
            out.with_suffix(".err").write_text(f"{type(exc).__name__}: {exc}")
    # the parameters also after an error: a DataError puts back the epoch's start
    flat = np.concatenate([p.ravel() for p in net.weights + net.biases])
    record = {} if history is None else {"history": json.dumps(history.as_dict())}
    if spec.get("record"):  # the file rows this rank read, call by call
        record["gathered"] = np.concatenate(gathered or [np.zeros(0, dtype=np.intp)])
    np.savez(out.with_suffix(".npz"), params=flat, **record)


if __name__ == "__main__":
    main()
