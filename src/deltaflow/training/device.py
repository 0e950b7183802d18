"""Training on a device (a GPU): its batch sources, its steps, and ``fit``'s hand-over.

The parts follow :mod:`.batches` and :mod:`.steps`, on the generic engine
(:mod:`deltaflow.engine.generic`) and a :class:`~deltaflow.engine.devices.Device`:

* :class:`DeviceSource` copies a data set that fits in the device's memory there once
  and gathers each batch there (one index copy per epoch);
* :class:`StreamedSource` keeps a larger one on the host: each batch is gathered into
  page-locked host memory and copied asynchronously while the device works on the
  previous batch;
* :class:`GraphSgdStep` runs plain SGD with the whole step (forward, cost, backward
  and update) captured once per batch size as a CUDA graph and replayed;
  :class:`DeviceOptimizerStep` forms the flat gradient and makes one optimizer call.

On a :class:`~deltaflow.engine.devices.HostDevice` the same parts run on numpy arrays,
which is how they are tested without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from deltaflow.engine import generic
from deltaflow.engine.devices import Device
from deltaflow.errors import ConfigError
from deltaflow.network import Network
from deltaflow.training.batches import Batch
from deltaflow.training.optimizers import Optimizer

__all__ = [
    "DeviceOptimizerStep",
    "DeviceSource",
    "GraphSgdStep",
    "StreamedSource",
    "check_options",
    "make_source",
    "make_step",
]

#: a data set takes the device-resident source when it needs at most this share of the
#: device's free memory
RESIDENT_SHARE = 0.5


class _Source:
    """What both device sources share: the epoch's order, drawn on the host as
    :class:`~.batches.ArraySource` draws it (so the same seed serves the same batches),
    and the full and short last batch bound to the workspace."""

    def __init__(self, device: Device, X: Any, Y: Any, W: Any, shuffle: bool) -> None:
        self.device = device
        self.X, self.Y, self.W = X, Y, W
        self.m = X.shape[0]
        self.total_weight = self.m if W is None else float(W.sum())
        self.shuffle = shuffle
        self.order = np.arange(self.m)
        self._full: Batch | None = None
        self._last: Batch | None = None

    def bind(self, ws: Any) -> None:
        self._full, self._last = _batches_for(ws, self.m, self.Y.shape[1], self.W is not None)

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        if self._full is None:
            raise RuntimeError("bind the source to a workspace before asking for batches")
        if self.shuffle:
            rng.shuffle(self.order)
        return self._batches(self._full, self._last)

    def _batches(self, full: Batch, last: Batch | None) -> Iterator[Batch]:
        raise NotImplementedError


class DeviceSource(_Source):
    """Rows copied to the device once; each batch gathered there into the workspace.

    The epoch's order is drawn on the host (as :class:`~.batches.ArraySource` draws it,
    so the same seed serves the same batches) and copied to the device once per epoch.
    """

    def __init__(
        self, device: Device, X: np.ndarray, Y: np.ndarray, W: np.ndarray | None, shuffle: bool
    ) -> None:
        super().__init__(device, device.asarray(X), device.asarray(Y), W, shuffle)
        self.W = None if W is None else device.asarray(W)

    def _batches(self, full: Batch, last: Batch | None) -> Iterator[Batch]:
        xp, bs = self.device.xp, full.n
        order = self.device.asarray(self.order)
        for start in range(0, self.m, bs):
            batch = full if self.m - start >= bs else last
            assert batch is not None
            idx = order[start : start + batch.n]
            batch.start = start
            xp.take(self.X, idx, axis=0, out=batch.ws.a[0])
            xp.take(self.Y, idx, axis=0, out=batch.Y)
            if self.W is not None:
                xp.take(self.W, idx, out=batch.W)
            yield batch


class StreamedSource(_Source):
    """Rows kept on the host, streamed to the device batch by batch.

    Two page-locked host buffers and two device buffers take turns: while the device
    trains on batch ``k``, batch ``k+1`` is gathered on the host and its copy is under
    way on the device's copy stream; the step's stream waits for that copy only when it
    moves the batch into the workspace.
    """

    def bind(self, ws: Any) -> None:
        super().bind(ws)
        dev, bs = self.device, ws.m
        cols = self.X.shape[1] + self.Y.shape[1] + (self.W is not None)
        self._host = [dev.pinned_empty((bs, cols), self.X.dtype) for _ in range(2)]
        self._staged = [dev.xp.empty((bs, cols), dtype=self.X.dtype) for _ in range(2)]
        self._copies: list[Any] = [None, None]

    def _send(self, k: int, start: int, n: int) -> None:
        """Gather rows ``order[start : start + n]`` into host buffer ``k % 2`` and start
        its copy to the device."""
        slot = k % 2
        self.device.host_wait(self._copies[slot])  # its previous copy has read it
        host, idx = self._host[slot][:n], self.order[start : start + n]
        s0, s1 = self.X.shape[1], self.X.shape[1] + self.Y.shape[1]
        self.X.take(idx, axis=0, out=host[:, :s0], mode="clip")
        self.Y.take(idx, axis=0, out=host[:, s0:s1], mode="clip")
        if self.W is not None:
            self.W.take(idx, out=host[:, s1], mode="clip")
        self._copies[slot] = self.device.copy_async(self._staged[slot][:n], host)

    def _batches(self, full: Batch, last: Batch | None) -> Iterator[Batch]:
        bs, m, dev = full.n, self.m, self.device
        starts = list(range(0, m, bs))
        s0, s1 = self.X.shape[1], self.X.shape[1] + self.Y.shape[1]
        self._send(0, 0, min(bs, m))
        for k, start in enumerate(starts):
            batch = full if m - start >= bs else last
            assert batch is not None
            if k + 1 < len(starts):
                nxt = starts[k + 1]
                self._send(k + 1, nxt, min(bs, m - nxt))
            slot = k % 2
            dev.wait(self._copies[slot])
            staged = self._staged[slot][: batch.n]
            batch.start = start
            batch.ws.a[0][...] = staged[:, :s0]
            batch.Y[...] = staged[:, s0:s1]
            if batch.W is not None:
                batch.W[...] = staged[:, s1]
            yield batch


def _batches_for(ws: Any, m: int, outputs: int, weighted: bool) -> tuple[Batch, Batch | None]:
    """The full batch and the epoch's short last one (None when ``m`` divides evenly),
    with target and weight buffers on the workspace's array module."""
    xp, bs = ws.xp, ws.m
    Y = xp.empty((bs, outputs), dtype=ws.a[0].dtype)
    W = xp.empty(bs, dtype=ws.a[0].dtype) if weighted else None
    full = Batch(ws, Y, W)
    n = m % bs
    last = None if n == 0 else Batch(ws.rows(n), Y[:n], None if W is None else W[:n])
    return full, last


def make_source(
    device: Device, X: np.ndarray, Y: np.ndarray, W: np.ndarray | None, shuffle: bool
) -> DeviceSource | StreamedSource:
    """The device-resident source when the data takes at most :data:`RESIDENT_SHARE` of
    the device's free memory, else the streamed one."""
    nbytes = X.nbytes + Y.nbytes + (0 if W is None else W.nbytes)
    if nbytes <= RESIDENT_SHARE * device.free_bytes():
        return DeviceSource(device, X, Y, W, shuffle)
    return StreamedSource(device, X, Y, W, shuffle)


class GraphSgdStep:
    """Plain SGD, the whole step captured once per batch size (and learning rate) as a
    CUDA graph and replayed for every later batch of that size.

    The batch is gathered into the captured input buffers (``ws.a[0]`` and the target
    buffer) before each replay. Because the graph holds forward, cost, backward and the
    update together, :meth:`forward` makes the update too and reads the cost afterwards;
    :meth:`update` only counts the step. A non-finite cost still stops training, and the
    divergence guard puts back the parameters of the epoch's start as on the CPU.
    Weighted batches run the same code without a graph.

    Parameters
    ----------
    graph : bool, default True
        Capture the step (False runs the same calls every batch, for comparison).
    """

    needs_gradients = False

    def __init__(
        self,
        net: Network,
        optimizer: Optimizer,
        device: Device,
        weight_decay: float = 0.0,
        *,
        graph: bool = True,
    ) -> None:
        self.net, self.optimizer, self.device = net, optimizer, device
        self.weight_decay, self.graph = weight_decay, graph
        self.lr: float | None = None
        self._replays: dict[int, Callable[[], None]] = {}
        #: batch sizes whose step runs as a captured graph
        self.graphed: set[int] = set()

    def workspace(self, m: int) -> generic.Workspace:
        return generic.Workspace(self.net, m, self.device.xp, self.device.products, gradients=False)

    def start_epoch(self, learning_rate: float) -> None:
        if learning_rate != self.lr:  # the rate is captured in the graph
            self._replays, self.lr = {}, learning_rate
            self.graphed = set()

    def forward(self, batch: Batch) -> float:
        net, ws = self.net, _workspace(batch)
        if batch.W is not None:
            generic.forward(net, ws)
            c = generic.cost(net, ws, batch.Y, batch.W)
            generic.backward(
                net, ws, batch.Y, batch.W, weight_decay=self.weight_decay, sgd_rate=self.lr or 0.0
            )
            return float(c)
        replay = self._replays.get(batch.n)
        if replay is not None:
            replay()
        else:

            def step(ws: Any = ws, Y: Any = batch.Y) -> None:
                generic.sgd_step(net, ws, Y, float(self.lr or 0.0), self.weight_decay)

            if self.graph:
                replay, graphed = self.device.capture(step)  # runs this batch's step
                if graphed:
                    self.graphed.add(batch.n)
            else:
                step()
                replay = step
            self._replays[batch.n] = replay
        return float(ws.cost_out)

    def update(self, batch: Batch) -> None:
        self.optimizer.count_step()


class DeviceOptimizerStep:
    """The flat gradient into ``ws.grad`` on the device, then one optimizer update of
    ``net.params`` there (the optimizer's state is made on the device, like the
    parameters)."""

    needs_gradients = True

    def __init__(
        self, net: Network, optimizer: Optimizer, device: Device, weight_decay: float = 0.0
    ) -> None:
        self.net, self.optimizer, self.device = net, optimizer, device
        self.weight_decay = weight_decay
        self.lr = 0.0

    def workspace(self, m: int) -> generic.Workspace:
        return generic.Workspace(self.net, m, self.device.xp, self.device.products)

    def start_epoch(self, learning_rate: float) -> None:
        self.lr = learning_rate

    def forward(self, batch: Batch) -> float:
        ws = _workspace(batch)
        generic.forward(self.net, ws)
        return float(generic.cost(self.net, ws, batch.Y, batch.W))

    def update(self, batch: Batch) -> None:
        ws = _workspace(batch)
        generic.backward(self.net, ws, batch.Y, batch.W, weight_decay=self.weight_decay)
        self.optimizer.step([self.net.params], [ws.grad], self.lr)


def _workspace(batch: Batch) -> generic.Workspace:
    """The batch's workspace: a device source serves the generic engine's."""
    ws = batch.ws
    assert isinstance(ws, generic.Workspace), "a device step takes a device source's batches"
    return ws


def make_step(
    net: Network, optimizer: Optimizer, device: Device, weight_decay: float = 0.0
) -> GraphSgdStep | DeviceOptimizerStep:
    """The graph step for plain SGD, else the optimizer step."""
    if optimizer.fused_with_backward:
        return GraphSgdStep(net, optimizer, device, weight_decay)
    return DeviceOptimizerStep(net, optimizer, device, weight_decay)


def check_options(**used: bool) -> None:
    """Refuse the options that training on a device does not offer yet, in one line."""
    names = [name for name, on in used.items() if on]
    if names:
        raise ConfigError(
            f"{' and '.join(names)} not available on a GPU yet; train with device='cpu' to use them"
        )
