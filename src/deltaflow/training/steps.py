"""Training steps: forward, cost, backward and update on one batch in a workspace.

A :class:`Step` runs in two halves so that the loop can look at the cost (and refuse a
non-finite one) before any parameter changes:

* :meth:`Step.forward` -- the forward sweep and the batch's cost; ``a[L]`` stays in
  ``batch.ws.a[L]``;
* :meth:`Step.update` -- the backward dynamic programme and the parameter update.

Two steps are here. :class:`FusedSgdStep` is plain SGD folded into the backward pass
(the update is made as each gradient is formed, which is why it needs no gradient
buffer). :class:`OptimizerStep` forms the whole gradient in the workspace's flat buffer
``ws.grad`` and then updates ``net.params`` in one optimizer call. Between the two it
calls ``reduce_gradient(ws.grad)``, to change the gradient in place before the update.
The fused step has no such moment (each layer is updated before the next gradient
exists). Data-parallel training has its own step
(:class:`~deltaflow.training.data_parallel.DataParallelStep`): its one all-reduce sums
the gradient together with the batch's cost, which the loop must see before any update,
so it runs in that step's ``forward``. A GPU step implements the same two methods on
its own buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from deltaflow.engine import backprop
from deltaflow.engine.blas import writable_in_place
from deltaflow.network import Network
from deltaflow.training.batches import Batch
from deltaflow.training.optimizers import Optimizer

__all__ = ["FusedSgdStep", "OptimizerStep", "Step", "make_step"]


class Step(Protocol):
    """One training step on a batch already in its workspace.

    Attributes
    ----------
    needs_gradients : bool
        Whether the workspace must hold the gradient buffers (``ws.grad``).
    """

    needs_gradients: bool

    def start_epoch(self, learning_rate: float) -> None:
        """Take the epoch's learning rate ``alpha``."""
        ...

    def forward(self, batch: Batch) -> float:
        """The forward sweep and the batch's cost ``C`` (``a[L]`` in ``batch.ws.a[L]``)."""
        ...

    def update(self, batch: Batch) -> None:
        """The backward pass and the parameter update, after :meth:`forward`."""
        ...


class FusedSgdStep:
    """Plain SGD applied inside the backward pass: ``Theta := Theta - alpha dC/dTheta``.

    Unweighted batches run on :class:`~deltaflow.engine.backprop.SgdStep`, bound once
    per batch size and epoch (the learning rate is bound in); weighted batches go through
    :func:`~deltaflow.engine.backprop.backward` with ``sgd_rate``. The parameters must be
    updated in place, so ``net.params`` must stay the same array while the step is used.
    """

    needs_gradients = False

    def __init__(self, net: Network, optimizer: Optimizer, weight_decay: float = 0.0) -> None:
        self.net, self.optimizer, self.weight_decay = net, optimizer, weight_decay
        self.lr = 0.0
        self._bound: dict[int, backprop.SgdStep] = {}
        self._now: backprop.SgdStep | None = None

    def start_epoch(self, learning_rate: float) -> None:
        self.lr = learning_rate
        self._bound = {}

    def forward(self, batch: Batch) -> float:
        # the bound step for this batch, or None; update() runs the same one
        step = self._now = self._bound_for(batch)
        if step is not None:
            step.forward()
            return step.cost()
        backprop.forward(self.net, batch.ws)
        return backprop.cost(self.net, batch.ws, batch.Y, batch.W)

    def update(self, batch: Batch) -> None:
        step = self._now
        if step is not None:
            step.backward()
        else:
            backprop.backward(
                self.net,
                batch.ws,
                batch.Y,
                batch.W,
                weight_decay=self.weight_decay,
                sgd_rate=self.lr,
            )
        self.optimizer.count_step()

    def _bound_for(self, batch: Batch) -> backprop.SgdStep | None:
        """The bound step for the batch's size (bound on first use), or None when the batch
        cannot run on one: weighted, or a sparse ``a[0]`` (a new matrix for each batch,
        which a bound step could not follow)."""
        if batch.W is not None or type(batch.ws.a[0]) is not np.ndarray:
            return None
        step = self._bound.get(batch.n)
        if step is None:
            step = self._bound[batch.n] = backprop.SgdStep(
                self.net, batch.ws, batch.Y, self.lr, self.weight_decay
            )
        return step


class OptimizerStep:
    """The whole gradient into ``ws.grad``, then one optimizer update of ``net.params``.

    Parameters
    ----------
    net : Network
    optimizer : Optimizer
        Updates ``[net.params]`` from ``[ws.grad]`` (one flat array each), so its state
        (momentum's velocity, Adam's moments) is flat too.
    weight_decay : float, default 0
        ``lambda``: added to the weights' gradients by the backward pass (not the biases').
    reduce_gradient : callable, optional
        Called with the flat gradient ``ws.grad`` between the backward pass and the
        update, to change it in place (a data-parallel run averages it over its ranks).
    """

    needs_gradients = True

    def __init__(
        self,
        net: Network,
        optimizer: Optimizer,
        weight_decay: float = 0.0,
        reduce_gradient: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        self.net, self.optimizer, self.weight_decay = net, optimizer, weight_decay
        self.reduce_gradient = reduce_gradient
        self.lr = 0.0
        self._params = [net.params]

    def start_epoch(self, learning_rate: float) -> None:
        self.lr = learning_rate

    def forward(self, batch: Batch) -> float:
        backprop.forward(self.net, batch.ws)
        return backprop.cost(self.net, batch.ws, batch.Y, batch.W)

    def update(self, batch: Batch) -> None:
        ws = batch.ws
        backprop.backward(self.net, ws, batch.Y, batch.W, weight_decay=self.weight_decay)
        assert ws.grad is not None, "the workspace was made without gradients"
        if self.reduce_gradient is not None:
            self.reduce_gradient(ws.grad)
        self.optimizer.step(self._params, [ws.grad], self.lr)


def make_step(net: Network, optimizer: Optimizer, weight_decay: float = 0.0) -> Step:
    """The fastest step for ``optimizer``: plain SGD fused into the backward pass where
    the parameters can be written in place by the BLAS, else :class:`OptimizerStep`."""
    if optimizer.fused_with_backward and writable_in_place([net.params], net.dtype):
        return FusedSgdStep(net, optimizer, weight_decay)
    return OptimizerStep(net, optimizer, weight_decay)
