"""Data-parallel training over MPI: the communicator seam, nothing else.

``fit(..., comm=MPI.COMM_WORLD)`` trains on several processes, each with a slice of
every batch; :class:`Communicator` is all that the training loop knows of MPI.
"""

from deltaflow.parallel.comm import (
    DEFAULT_TIMEOUT,
    Communicator,
    as_communicator,
    fingerprint,
    launched_rank,
    launched_size,
    rank_rows,
    world,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "Communicator",
    "as_communicator",
    "fingerprint",
    "launched_rank",
    "launched_size",
    "rank_rows",
    "world",
]
