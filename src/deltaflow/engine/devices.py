"""Where a network's arrays live: the host (numpy) or a CUDA GPU (CuPy).

A :class:`Device` is what the engine and the training loop need of a place to compute:
its array module ``xp``, its matrix products (a :class:`~deltaflow.engine.generic.Products`),
copies to and from the host, and a way to replay a whole step cheaply (``capture``: a
CUDA graph on a GPU, the plain function on the host).

``"cpu"`` is the default and is not a :class:`Device` at all: a network on the CPU keeps
the tuned numpy path of :mod:`deltaflow.engine.backprop`. :class:`HostDevice` runs the
generic path (:mod:`deltaflow.engine.generic`) on numpy arrays; it exists so that
everything the GPU runs (steps, batch sources, streaming) is exercised on any machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from deltaflow.engine.generic import NumpyProducts
from deltaflow.errors import ConfigError

__all__ = ["DEVICES", "Device", "HostDevice", "check_device", "get_device"]

#: the names ``device=`` accepts
DEVICES = ("cpu", "cuda")


class Device:
    """The generic path's view of a place to compute. Subclasses fill in the details."""

    name: str = ""
    xp: Any = np
    products: Any = None

    def asarray(self, host: np.ndarray) -> Any:
        """A copy of ``host`` on this device."""
        raise NotImplementedError

    def to_host(self, arr: Any) -> np.ndarray:
        """A numpy copy of ``arr`` (waits for the device)."""
        raise NotImplementedError

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which this device's work is issued in order on one stream."""
        return contextlib.nullcontext()

    def capture(self, fn: Callable[[], None]) -> tuple[Callable[[], None], bool]:
        """Run ``fn`` once, then return ``(replay, graphed)``: a call that repeats what
        ``fn`` did on the same arrays, and whether it is a captured graph (else it is
        ``fn`` itself)."""
        fn()
        return fn, False

    def free_bytes(self) -> int:
        """Memory free for data on this device."""
        raise NotImplementedError

    def pinned_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A host array the device can copy from asynchronously (page-locked on a GPU)."""
        return np.empty(shape, dtype=dtype)

    def copy_async(self, dst: Any, src: np.ndarray) -> Any:
        """Start copying host ``src`` into device ``dst``; returns a token for :meth:`wait`."""
        dst[...] = src
        return None

    def wait(self, token: Any) -> None:
        """Make the device's next work wait for the copy ``token`` (the host does not wait)."""

    def host_wait(self, token: Any) -> None:
        """Block the host until the copy ``token`` has read its source."""

    def synchronize(self) -> None:
        """Wait for all work issued so far."""


class HostDevice(Device):
    """The generic engine on numpy arrays: the GPU's code path, run on the CPU."""

    name = "host"

    def __init__(self) -> None:
        self.xp = np
        self.products = NumpyProducts(np)

    def asarray(self, host: np.ndarray) -> np.ndarray:
        return np.array(host, copy=True)

    def to_host(self, arr: Any) -> np.ndarray:
        return np.array(arr, copy=True)

    def free_bytes(self) -> int:
        return 1 << 62


def check_device(device: Any) -> str:
    """``device`` as one of :data:`DEVICES`, else :class:`ConfigError`."""
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ConfigError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return device.lower()


def get_device(device: str | Device) -> Device | None:
    """The :class:`Device` for ``device`` (None for ``"cpu"``, the numpy hot path); a
    :class:`Device` itself is taken as it is (``HostDevice()`` runs the GPU's code on
    numpy arrays).

    Raises
    ------
    MissingDependencyError
        For ``"cuda"`` without CuPy.
    DeviceError
        For ``"cuda"`` on a machine where CuPy finds no GPU.
    """
    if isinstance(device, Device):
        return device
    name = check_device(device)
    if name == "cpu":
        return None
    from deltaflow.engine import cuda

    return cuda.CudaDevice.get()
