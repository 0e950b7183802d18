"""The communicator seam: the few collectives data-parallel training needs, over mpi4py.

Everything MPI-specific in deltaflow goes through :class:`Communicator`; the training
loop asks it for an in-place all-reduce (sum) of one flat buffer per step, a broadcast,
a barrier, an agreement on a yes/no question, a check that every rank holds the same
thing (data, settings, parameters), and a gather of small objects (the message of bad
data that one rank met). mpi4py is imported only when a communicator is made,
so deltaflow imports and runs without it.

A rank that dies makes the others stop instead of hanging. Open MPI's and MPICH's
launchers do this themselves: when one process dies they end the others with SIGTERM,
and deltaflow then prints one line naming the lost rank (the lowest surviving rank on
the lost rank's machine prints it, finding the dead process among the process ids the
ranks exchanged at the start). Where a launcher does not end the
job, or a rank hangs without dying, a watchdog thread in every rank gives each
collective ``timeout`` seconds, then prints one such line and calls ``Abort`` on the
communicator.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from deltaflow.errors import ConfigError

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

#: Seconds a collective may wait for the other ranks before the job is aborted; the
#: environment variable ``DELTAFLOW_MPI_TIMEOUT`` overrides it.
DEFAULT_TIMEOUT = 120.0

# what launchers put in each process's environment: Open MPI, PMIx (Open MPI 5, PRRTE),
# and the PMI of MPICH's Hydra and Slurm
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE")
_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")


def launched_size(environ: Mapping[str, str] | None = None) -> int | None:
    """The number of processes ``mpiexec`` started, or None when not run under it.

    Read from the launcher's environment variables, so that it costs nothing and needs
    no MPI library: the CLI uses it to decide whether to import mpi4py at all.
    """
    env = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        value = env.get(name, "")
        if value.isdigit():
            return int(value)
    if any(name in env for name in _RANK_VARIABLES):
        return 0  # launched, size unknown: mpi4py will tell
    return None


def launched_rank(environ: Mapping[str, str] | None = None) -> int | None:
    """This process's rank as ``mpiexec`` set it, or None when not run under it."""
    env = os.environ if environ is None else environ
    for name in _RANK_VARIABLES:
        value = env.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def world(timeout: float | None = None) -> Communicator | None:
    """``MPI.COMM_WORLD`` as a :class:`Communicator` when run under ``mpiexec`` with more
    than one process, else None.

    Raises
    ------
    ConfigError
        Under ``mpiexec`` without mpi4py installed.
    """
    size = launched_size()
    if size is None or size == 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise ConfigError(
            f"deltaflow runs under mpiexec ({size or 'several'} processes) but mpi4py is not "
            "installed; install it with pip install 'deltaflow[mpi]'"
        ) from None
    if MPI.COMM_WORLD.Get_size() == 1:
        return None
    return Communicator(MPI.COMM_WORLD, timeout=timeout)


def as_communicator(comm: Any, timeout: float | None = None) -> Communicator | None:
    """``comm`` (an mpi4py intracommunicator, a :class:`Communicator` or None) as a
    :class:`Communicator`, or None.

    Raises
    ------
    ConfigError
        For anything else, an intercommunicator included.
    """
    if comm is None or isinstance(comm, Communicator):
        return comm
    return Communicator(comm, timeout=timeout)


def rank_rows(n: int, rank: int, size: int) -> tuple[int, int]:
    """The rows ``[lo, hi)`` of a batch of ``n`` rows that rank ``rank`` of ``size`` takes.

    Contiguous blocks, the first ``n % size`` ranks one row longer, so that the ranks'
    blocks laid end to end are the batch in its order.
    """
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class Communicator:
    """An mpi4py intracommunicator with the collectives deltaflow's training uses.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        ``MPI.COMM_WORLD`` or any communicator made from it with ``Split`` or ``Dup``.
    timeout : float, optional
        Seconds a collective may wait before the job is aborted (default
        ``DELTAFLOW_MPI_TIMEOUT`` or :data:`DEFAULT_TIMEOUT`).
    per_layer : bool, default False
        Sum a step's gradient layer by layer, each layer's reduction started
        (``Iallreduce``) as soon as the backward dynamic programme has that layer's
        gradient, so that the sums overlap the earlier layers' products, as
        PyTorch's DDP does with its buckets. Off by default: on one machine the single
        blocking all-reduce measured faster (``benchmarks/distributed.py --per-layer``);
        a slow network between machines is where it may pay. The weights are the same
        either way. A run that tracks the delta norms (known only at the end of the
        backward pass) sums in one call.

    Attributes
    ----------
    rank, size : int
        This process's rank and the number of ranks.
    """

    def __init__(self, comm: Any, timeout: float | None = None, *, per_layer: bool = False) -> None:
        module = type(comm).__module__ or ""
        if not module.startswith("mpi4py"):
            raise ConfigError(
                f"comm must be an mpi4py intracommunicator such as MPI.COMM_WORLD, "
                f"got {type(comm).__name__}"
            )
        from mpi4py import MPI

        if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
            raise ConfigError(
                f"comm must be an intracommunicator (MPI.COMM_WORLD or one made from it "
                f"with Split or Dup), got {type(comm).__name__}; an intercommunicator's "
                "two groups cannot share one all-reduce"
            )
        self._MPI = MPI
        self.comm = comm
        self.rank: int = comm.Get_rank()
        self.size: int = comm.Get_size()
        self.timeout = _timeout(timeout)
        self.per_layer = bool(per_layer)
        self._waiting_since: float | None = None
        self._what = ""
        self._peers: list[tuple[str, int]] | None = None
        self._watchdog: threading.Thread | None = None
        self._ending = threading.Event()

    @property
    def is_root(self) -> bool:
        """True on rank 0, the one that prints and writes files."""
        return self.rank == 0

    # ------------------------------------------------------------------ collectives
    def allreduce_sum(self, buffer: np.ndarray) -> np.ndarray:
        """Replace ``buffer`` on every rank by the sum of all ranks' ``buffer``, in place.

        ``buffer`` must be C-contiguous; every rank passes the same shape and dtype.
        """
        with self._watch("all-reduce"):
            self.comm.Allreduce(self._MPI.IN_PLACE, buffer, op=self._MPI.SUM)
        return buffer

    def iallreduce_sum(self, buffer: np.ndarray) -> Any:
        """Start summing ``buffer`` over the ranks in place; returns the request, for
        :meth:`wait_all` (every rank starts the same reductions in the same order)."""
        return self.comm.Iallreduce(self._MPI.IN_PLACE, buffer, op=self._MPI.SUM)

    def progress(self, requests: list[Any]) -> None:
        """Let started reductions move on (MPI advances them only inside its calls)."""
        self._MPI.Request.Testall(requests)

    def wait_all(self, requests: list[Any]) -> None:
        """Return when the started reductions are done."""
        with self._watch("all-reduce"):
            self._MPI.Request.Waitall(requests)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """``obj`` of rank ``root``, on every rank (pickled)."""
        with self._watch("broadcast"):
            return self.comm.bcast(obj, root=root)

    def barrier(self) -> None:
        """Return when every rank has called it."""
        with self._watch("barrier"):
            self.comm.Barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any rank."""
        with self._watch("vote"):
            return bool(self.comm.allreduce(bool(flag), op=self._MPI.LOR))

    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (pickled), in the order of the ranks, on every rank."""
        with self._watch("gather"):
            return list(self.comm.allgather(obj))

    def check_same(self, what: str, fingerprint: str, fix: str) -> None:
        """Raise :class:`ConfigError` on every rank unless all ranks pass the same
        ``fingerprint`` (a short hash of ``what``).

        The message names the ranks that differ from rank 0 and ends with ``fix``.
        """
        with self._watch("fingerprint comparison"):
            prints = self.comm.allgather(fingerprint)
        odd = [r for r, p in enumerate(prints) if p != prints[0]]
        if odd:
            ranks = ", ".join(str(r) for r in odd)
            raise ConfigError(
                f"the ranks hold different {what}: rank{'s' if len(odd) > 1 else ''} "
                f"{ranks} differ{'' if len(odd) > 1 else 's'} from rank 0; {fix}"
            )

    def abort(self, message: str, code: int = 1) -> None:
        """Print ``message`` as one line on stderr and end every rank of the job."""
        sys.stderr.write(message.rstrip("\n") + "\n")
        sys.stderr.flush()
        self.comm.Abort(code)

    # ------------------------------------------------------------------- the watchdog
    def _watch(self, what: str) -> _Watch:
        if self._watchdog is None:
            self._start_watchdog()
        self._what = what
        return _Watch(self)

    def _start_watchdog(self) -> None:
        # every rank's host and process id, to tell a dead rank from a slow one
        self._peers = self.comm.allgather((socket.gethostname(), os.getpid()))
        self._watchdog = threading.Thread(target=self._watch_loop, daemon=True)
        self._watchdog.start()
        self._watch_sigterm()

    def _watch_sigterm(self) -> None:
        """Name the lost rank when the launcher ends this one with SIGTERM.

        The main thread may sit in a collective (C code, which Python's own signal
        handlers wait for), so the signal is read from a wake-up pipe by a thread; it
        prints the line, then ends the process with status ``128 + SIGTERM``, as a
        shell reports an end by that signal. Nothing is installed where SIGTERM already
        has a handler or a wake-up descriptor is in use (an event loop's), or off the
        main thread.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        read, write = os.pipe()
        os.set_blocking(write, False)
        try:
            previous = signal.set_wakeup_fd(write)
        except ValueError:
            previous = -2
        if previous != -1:  # someone else's descriptor: leave it in place
            if previous != -2:
                signal.set_wakeup_fd(previous)
            os.close(read)
            os.close(write)
            return
        signal.signal(signal.SIGTERM, _ignore)
        thread = threading.Thread(target=self._on_sigterm, args=(read,), daemon=True)
        thread.start()
        # a rank that ends on its own (an error every rank raised) may be stopped by the
        # launcher on its way out, as a peer that ended first is seen: no line then
        atexit.register(self._ending.set)

    def _on_sigterm(self, read: int) -> None:
        while True:
            try:
                got = os.read(read, 64)
            except OSError:
                return
            if not got:
                return
            if signal.SIGTERM in got:
                break
        message = "" if self._ending.is_set() else self._sigterm_message()
        if message:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        os._exit(128 + signal.SIGTERM)  # as a shell reports an end by SIGTERM

    def _local_ranks(self) -> tuple[list[int], list[int]]:
        """The ranks on this machine, and those of them whose process has ended."""
        host = socket.gethostname()
        peers = self._peers or []
        here = [r for r, (h, _) in enumerate(peers) if h == host]
        return here, [r for r in here if r != self.rank and not _alive(peers[r][1])]

    def _sigterm_message(self) -> str:
        """The line this rank prints when ended by SIGTERM ("" when another prints it)."""
        here, lost = self._local_ranks()
        if lost:
            if self.rank != min(r for r in here if r not in lost):
                return ""
            who = ", ".join(str(r) for r in lost)
            plural = "s" if len(lost) > 1 else ""
            return (
                f"deltaflow: rank{plural} {who} {'were' if plural else 'was'} lost (the "
                f"process ended); the launcher stopped the other ranks (rank {self.rank} "
                "reports)"
            )
        if self.rank != 0:
            return ""
        return (
            "deltaflow: the launcher stopped rank 0 (SIGTERM): a rank on another machine "
            "ended or the job was cancelled; the launcher's message names it"
        )

    def _watch_loop(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            since = self._waiting_since
            if since is not None and time.monotonic() - since > self.timeout:
                self.abort(self._lost_message(), code=1)
                return

    def _lost_message(self) -> str:
        _, lost = self._local_ranks()
        if lost:
            who = ", ".join(str(r) for r in lost)
            return (
                f"deltaflow: rank {who} was lost (its process ended); rank {self.rank} "
                f"stops the job after waiting {self.timeout:g} s in a {self._what}"
            )
        return (
            f"deltaflow: rank {self.rank} waited {self.timeout:g} s in a {self._what} for "
            "ranks that did not answer; the job is stopped (raise DELTAFLOW_MPI_TIMEOUT "
            "if a step or a checkpoint really takes that long)"
        )


class _Watch:
    """Marks a collective as in progress for the watchdog (a context manager)."""

    __slots__ = ("_comm",)

    def __init__(self, comm: Communicator) -> None:
        self._comm = comm

    def __enter__(self) -> None:
        self._comm._waiting_since = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self._comm._waiting_since = None


def _ignore(signum: int, frame: Any) -> None:
    """SIGTERM's Python-level handler: the wake-up pipe's thread acts on it."""


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs (a zombie, ended but not yet
    reaped by its parent, counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def _timeout(timeout: float | None) -> float:
    if timeout is None:
        raw = os.environ.get("DELTAFLOW_MPI_TIMEOUT", "")
        try:
            timeout = float(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            raise ConfigError(
                f"DELTAFLOW_MPI_TIMEOUT must be a number of seconds, got {raw!r}"
            ) from None
    if not timeout > 0:
        raise ConfigError(f"the MPI timeout must be a positive number of seconds, got {timeout}")
    return float(timeout)


def fingerprint(*parts: Any, sample_bytes: int | None = None) -> str:
    """A short hash of arrays and plain values, to compare between ranks.

    With ``sample_bytes``, an array larger than that is hashed through evenly spaced
    rows of about that many bytes in all (and its shape): enough to tell data that was
    loaded, scaled or ordered differently, without reading every row of a data set that
    each rank otherwise reads only in part.
    """
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype.str}{part.shape}".encode())
            if sample_bytes is not None and part.ndim and part.nbytes > sample_bytes:
                every = -(-part.nbytes // sample_bytes)
                part = part[::every]
            h.update(np.ascontiguousarray(part).data.cast("B"))
        else:
            h.update(repr(part).encode())
    return h.hexdigest()
