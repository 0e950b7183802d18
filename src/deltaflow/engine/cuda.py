"""The CUDA device: CuPy arrays, cuBLAS products, and a training step as one CUDA graph.

Nothing here imports CuPy until a network is asked onto ``"cuda"``; without CuPy, or
without a GPU, that request fails with one line saying which (see :func:`require_cupy`).

The products go straight to cuBLAS (``cupy.cublas.gemm`` and ``gemv``) with its ``alpha``
and ``beta``, so plain SGD folds its update into the product that forms the gradient as
the CPU's BLAS does. A step of the generic engine allocates nothing and never waits for
the device, so :meth:`CudaDevice.capture` records it once on a stream as a CUDA graph
and every later batch replays the graph in one launch instead of some twenty kernel
launches per layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from deltaflow.engine.devices import Device
from deltaflow.errors import DeviceError, MissingDependencyError

__all__ = ["CublasProducts", "CudaDevice", "require_cupy"]

NO_CUPY = "CuPy is not installed; pip install 'deltaflow[cuda12]'"
NO_DEVICE = "no CUDA device: cupy.is_available() is False"


def require_cupy() -> Any:
    """The ``cupy`` module, when it is installed and finds a GPU.

    Raises
    ------
    MissingDependencyError
        When CuPy cannot be imported.
    DeviceError
        When CuPy finds no CUDA device.
    """
    try:
        import cupy
    except ImportError:
        raise MissingDependencyError(NO_CUPY) from None
    try:
        available = bool(cupy.is_available())
    except Exception:  # a driver or runtime that cannot even be asked counts as none
        available = False
    if not available:
        raise DeviceError(NO_DEVICE)
    return cupy


class CublasProducts:
    """:class:`~deltaflow.engine.generic.Products` through cuBLAS, ``alpha``/``beta`` included.

    The arrays are C-ordered; ``cupy.cublas`` maps them onto cuBLAS's column-major
    routines by transposing the problem, so no operand is copied.
    """

    needs_tmp = False

    def __init__(self, cupy: Any) -> None:
        from cupy import cublas

        self.cp, self.cublas = cupy, cublas

    def affine(self, x: Any, theta: Any, b: Any, out: Any) -> None:
        self.cp.copyto(out, b)  # b in every row, then out = x @ theta + out
        self.cublas.gemm("N", "N", x, theta, out=out, alpha=1.0, beta=1.0)

    def matmul_bt(self, d: Any, theta: Any, out: Any) -> None:
        self.cublas.gemm("N", "T", d, theta, out=out)

    def matmul_at(self, a: Any, d: Any, out: Any, alpha: float, beta: float, tmp: Any) -> None:
        self.cublas.gemm("T", "N", a, d, out=out, alpha=alpha, beta=beta)

    def column_sums(self, d: Any, ones: Any, out: Any, alpha: float, beta: float, tmp: Any) -> None:
        # cupy.cublas.gemv(transa, alpha, a, x, beta, y) updates y in place
        self.cublas.gemv("T", alpha, d, ones, beta, out)


class CudaDevice(Device):
    """The current CUDA device, one stream for all of deltaflow's work on it (the one
    that steps are captured on), and a second for copies from the host."""

    name = "cuda"
    _instance: CudaDevice | None = None

    def __init__(self, cupy: Any) -> None:
        self.xp = self.cp = cupy
        self.products = CublasProducts(cupy)
        # blocking: ordered with the default stream, so CuPy calls made outside
        # activate() (a copy of the parameters, say) still see the step's results
        self.stream = cupy.cuda.Stream(non_blocking=False)
        self.copy_stream = cupy.cuda.Stream(non_blocking=True)
        self._graph_pools: list[Any] = []

    @classmethod
    def get(cls) -> CudaDevice:
        """The one :class:`CudaDevice` of this process (made on first use)."""
        if cls._instance is None:
            cls._instance = cls(require_cupy())
        return cls._instance

    def asarray(self, host: np.ndarray) -> Any:
        with self.stream:
            out = self.cp.asarray(host)
        self.stream.synchronize()
        return out

    def to_host(self, arr: Any) -> np.ndarray:
        with self.stream:
            out = self.cp.asnumpy(arr, stream=self.stream)
        self.stream.synchronize()
        return np.asarray(out)

    def activate(self) -> contextlib.AbstractContextManager[Any]:
        return self.stream  # type: ignore[no-any-return]

    def capture(self, fn: Callable[[], None]) -> tuple[Callable[[], None], bool]:
        """Run ``fn`` once (which also warms up: kernels compiled, cuBLAS and the
        memory pool ready), then record it on the stream as a CUDA graph, which
        ``replay`` launches.

        Whatever ``fn`` allocates comes from a memory pool of the graph's own, kept as
        long as the device, so no later allocation can take memory the graph writes to.
        Where capture fails (an operation that cannot be captured), the step runs
        without a graph and ``graphed`` is False.
        """
        cp, stream = self.cp, self.stream
        pool = cp.cuda.MemoryPool()
        self._graph_pools.append(pool)
        with cp.cuda.using_allocator(pool.malloc), stream:
            fn()
            stream.synchronize()
            try:
                stream.begin_capture()
                try:
                    fn()
                finally:
                    graph = stream.end_capture()
            except Exception:  # not capturable here: replay the calls themselves
                stream.synchronize()
                return fn, False
        launch = graph.launch

        def replay() -> None:
            launch(stream)

        return replay, True

    def free_bytes(self) -> int:
        free, _total = self.cp.cuda.runtime.memGetInfo()
        return int(free) + int(self.cp.get_default_memory_pool().free_bytes())

    def pinned_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        memory = self.cp.cuda.alloc_pinned_memory(max(count, 1) * dtype.itemsize)
        return np.frombuffer(memory, dtype=dtype, count=count).reshape(shape)

    def copy_async(self, dst: Any, src: np.ndarray) -> Any:
        dst.set(src, stream=self.copy_stream)
        event = self.cp.cuda.Event()
        event.record(self.copy_stream)
        return event

    def wait(self, token: Any) -> None:
        if token is not None:
            self.stream.wait_event(token)

    def host_wait(self, token: Any) -> None:
        if token is not None:
            token.synchronize()

    def synchronize(self) -> None:
        self.stream.synchronize()
