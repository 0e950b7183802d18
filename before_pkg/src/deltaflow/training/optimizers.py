"""Optimizers that update parameters in place, and learning-rate schedules.

Every optimizer has one ``step(params, grads, lr)`` skeleton: ``params`` and ``grads``
are matching lists of arrays (the weights ``Theta[l]`` then the biases ``b[l]``), and the
update is written into ``params`` without allocating. ``grads`` may be used as scratch
space: the engine recomputes it every step.

Plain SGD is the notes' rule ``Theta := Theta - alpha * dC/dTheta``. It has no state,
so the training loop applies it inside the backward pass as each gradient is formed
(:func:`deltaflow.backprop.backward` with ``sgd_rate``) and only counts the step here
(:meth:`Optimizer.count_step`); :meth:`SGD.step` is the same update for gradients
computed elsewhere. The other optimizers need the gradient itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from deltaflow.errors import ConfigError

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Adam",
    "Momentum",
    "Optimizer",
    "get_optimizer",
    "get_schedule",
]


class Optimizer:
    """Base class: state (if any) is allocated on the first step, matching ``params``."""

    name = "optimizer"
    #: True when the update needs nothing but the gradient and the learning rate, so
    #: the backward pass may apply it as the gradient is formed (plain SGD)
    fused_with_backward = False

    def __init__(self) -> None:
        self.t = 0  # steps taken

    def step(self, params: list[np.ndarray], grads: list[np.ndarray], lr: float) -> None:
        if self.t == 0 and not self._initialised(params):
            self._init_state(params)
        self.t += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            self._update(i, p, g, lr)

    def count_step(self) -> None:
        """Record a step whose update the backward pass applied (``fused_with_backward``)."""
        self.t += 1

    # subclasses override these
    def _initialised(self, params: list[np.ndarray]) -> bool:
        return True

    def _init_state(self, params: list[np.ndarray]) -> None:
        return None

    def _update(self, i: int, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    # checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Scalars and arrays that, restored, continue the optimizer bit for bit."""
        return {"t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])


class SGD(Optimizer):
    """``p := p - lr * g`` (the notes' update rule)."""

    name = "sgd"
    fused_with_backward = True

    def _update(self, i: int, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        g *= lr
        p -= g


class Momentum(Optimizer):
    """Heavy-ball momentum, PyTorch's form: ``v := mu v + g``, ``p := p - lr v``.

    With ``nesterov=True`` the step uses ``g + mu v`` (Sutskever et al., 2013).
    """

    name = "momentum"

    def __init__(self, momentum: float = 0.9, nesterov: bool = False) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity: list[np.ndarray] = []

    def _initialised(self, params: list[np.ndarray]) -> bool:
        return len(self.velocity) == len(params)

    def _init_state(self, params: list[np.ndarray]) -> None:
        self.velocity = [np.zeros_like(p) for p in params]

    def _update(self, i: int, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        # g serves as scratch once it has been added to v: no temporaries.
        v = self.velocity[i]
        v *= self.momentum
        v += g
        if self.nesterov:  # p -= lr (g + mu v), as two subtractions
            g *= lr
            p -= g
            np.multiply(v, lr * self.momentum, out=g)
            p -= g
        else:
            np.multiply(v, lr, out=g)
            p -= g

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "velocity": self.velocity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        self.velocity = [np.array(v) for v in state["velocity"]]


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias correction."""

    name = "adam"

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__()
        for nm, v in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"{nm} must be in [0, 1), got {v}")
        if eps <= 0:
            raise ConfigError(f"eps must be positive, got {eps}")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m: list[np.ndarray] = []
        self.v: list[np.ndarray] = []

    def _initialised(self, params: list[np.ndarray]) -> bool:
        return len(self.m) == len(params)

    def _init_state(self, params: list[np.ndarray]) -> None:
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def _update(self, i: int, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        # beta m + (1 - beta) g written as beta (m - g) + g: in place, no temporaries.
        m, v = self.m[i], self.v[i]
        m -= g
        m *= self.beta1
        m += g
        g *= g  # g is scratch from here on
        v -= g
        v *= self.beta2
        v += g
        step = lr * math.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        np.sqrt(v, out=g)
        g += self.eps * math.sqrt(1 - self.beta2**self.t)
        np.divide(m, g, out=g)
        g *= step
        p -= g

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "m": self.m, "v": self.v}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        self.m = [np.array(a) for a in state["m"]]
        self.v = [np.array(a) for a in state["v"]]


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


def get_optimizer(
    name: str | Optimizer,
    *,
    momentum: float = 0.9,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> Optimizer:
    """An optimizer by name: ``sgd``, ``momentum``, ``nesterov`` or ``adam``."""
    if isinstance(name, Optimizer):
        return name
    key = str(name).lower()
    if key == "sgd":
        return SGD()
    if key == "momentum":
        return Momentum(momentum)
    if key == "nesterov":
        return Momentum(momentum, nesterov=True)
    if key == "adam":
        return Adam(beta1, beta2, eps)
    raise ConfigError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


SCHEDULES = ("constant", "step", "exponential", "cosine")


def get_schedule(
    name: str | Callable[[int], float],
    learning_rate: float,
    epochs: int,
    *,
    step_size: int = 10,
    gamma: float = 0.5,
) -> Callable[[int], float]:
    """The learning rate for each epoch ``0..epochs-1``.

    ``constant``: ``alpha``. ``step``: ``alpha * gamma^(epoch // step_size)``.
    ``exponential``: ``alpha * gamma^epoch``. ``cosine``: from ``alpha`` down to 0
    along half a cosine over ``epochs``. A callable ``epoch -> rate`` is used as is.
    """
    if callable(name):
        return name
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise ConfigError(f"learning_rate must be a positive number, got {learning_rate}")
    key = str(name).lower()
    if key == "constant":
        return lambda epoch: learning_rate
    if key in ("step", "exponential"):
        if not 0 < gamma <= 1:
            raise ConfigError(f"gamma must be in (0, 1], got {gamma}")
        if key == "exponential":
            return lambda epoch: learning_rate * gamma**epoch
        if step_size < 1:
            raise ConfigError(f"step_size must be at least 1, got {step_size}")
        return lambda epoch: learning_rate * gamma ** (epoch // step_size)
    if key == "cosine":
        return lambda epoch: learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
    raise ConfigError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
