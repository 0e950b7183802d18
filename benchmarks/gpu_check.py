"""deltaflow on a GPU in one run: the correctness checks, then fit against PyTorch eager.

Run from the repository root on a machine with a CUDA GPU, CuPy and (for its column)
PyTorch with CUDA::

    PYTHONPATH=src python3 benchmarks/gpu_check.py --out docs/performance/gpu.md

Checks (each prints PASS or FAIL with the largest difference found):

* cuBLAS products (``alpha``/``beta`` included) against ``xp.matmul``;
* gradients on the GPU equal the CPU's in float64 to 1e-12, on 50 random networks of
  every hidden activation and every cost;
* 100 plain-SGD steps replayed from one captured CUDA graph, fed a new batch each time,
  track the CPU's steps to 1e-10; so does ``fit`` on the GPU;
* a model saved from the GPU loads on the CPU with the same tensor bytes and metadata.

Benchmark (float32, relu hidden layers, softmax and cross-entropy, batch 32 to 65536) on
784-30-10, 784-256-256-10 and 784-4096-4096-10: microseconds per training step of
``fit``'s loop with the step captured as one CUDA graph, the same without the graph,
PyTorch eager (``zero_grad``, forward, backward, ``step``) with its data on the GPU, and
the step's cuBLAS products alone (the limit). It prints a markdown table and writes it,
with the checks and the machine, to ``--out``.

Without a GPU it says so in one line and exits 2. ``--cpu`` runs every part of the script
on the CPU instead (numpy through the same device path, PyTorch on the CPU), which is how
its logic is tested; ``--quick`` makes that run small.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from deltaflow import Network, io
from deltaflow.engine import backprop, generic
from deltaflow.engine.devices import Device, HostDevice, get_device
from deltaflow.errors import DeviceError, MissingDependencyError
from deltaflow.training import device as on_device
from deltaflow.training.loop import run
from deltaflow.training.optimizers import get_optimizer

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "identity", "softmax"]
COSTS = {"squared_error": None, "cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
NETWORKS = [[784, 30, 10], [784, 256, 256, 10], [784, 4096, 4096, 10]]
BATCHES = [2**k for k in range(5, 17)]  # 32 .. 65536
LEARNING_RATE = 0.01


@dataclass
class Report:
    """What the run found: check lines, table rows, notes."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    header: str = ""

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


# ---------------------------------------------------------------------------- checks


def _random_net(rng: np.random.Generator, hidden: str, cost: str) -> Network:
    depth = int(rng.integers(1, 4))
    sizes = [int(s) for s in rng.integers(1, 33, size=depth + 1)] + [int(rng.integers(2, 11))]
    out = COSTS[cost] or str(rng.choice(HIDDEN))
    return Network(sizes, [hidden] * depth + [out], cost, seed=int(rng.integers(1 << 30)))


def _targets(rng: np.random.Generator, cost: str, m: int, n: int) -> np.ndarray:
    if cost == "cross_entropy":
        return np.eye(n)[rng.integers(0, n, m)]
    if cost == "binary_cross_entropy":
        return (rng.random((m, n)) < 0.5).astype(np.float64)
    return rng.normal(size=(m, n))


def check_products(device: Device, report: Report) -> None:
    """The device's products against ``xp.matmul`` on random float64 operands."""
    xp, mm, rng = device.xp, device.products, np.random.default_rng(0)
    worst = 0.0
    for m, k, n in [(1, 1, 1), (7, 5, 3), (64, 33, 17), (300, 128, 257)]:
        x, theta = rng.normal(size=(m, k)), rng.normal(size=(k, n))
        b, d, out0 = rng.normal(size=n), rng.normal(size=(m, n)), rng.normal(size=(k, n))
        bias0, ones = rng.normal(size=n), np.ones(m)
        X, T, B, D = (device.asarray(v) for v in (x, theta, b, d))
        out, tmp = xp.zeros((m, n)), xp.zeros((k, n))
        mm.affine(X, T, B, out)
        worst = max(worst, float(np.abs(device.to_host(out) - (x @ theta + b)).max()))
        out = xp.zeros((m, k))
        mm.matmul_bt(D, T, out)
        worst = max(worst, float(np.abs(device.to_host(out) - d @ theta.T).max()))
        upd = device.asarray(out0)
        mm.matmul_at(X, D, upd, -0.25, 0.5, tmp)
        worst = max(worst, float(np.abs(device.to_host(upd) - (0.5 * out0 - 0.25 * x.T @ d)).max()))
        bias = device.asarray(bias0)
        mm.column_sums(D, device.asarray(ones), bias, -0.5, 1.0, xp.zeros(n))
        worst = max(worst, float(np.abs(device.to_host(bias) - (bias0 - 0.5 * d.sum(0))).max()))
    report.check("products (alpha, beta) against matmul, float64", worst <= 1e-12, f"{worst:.2e}")


def check_gradients(device: Device, report: Report, per_pair: int) -> None:
    """Gradients on the device against the CPU's, float64, every activation and cost."""
    rng = np.random.default_rng(1)
    worst, count = 0.0, 0
    for hidden in HIDDEN:
        for cost in COSTS:
            for _ in range(per_pair):
                cpu = _random_net(rng, hidden, cost)
                dev = cpu.copy().to(device)
                m = int(rng.integers(1, 65))
                X = rng.normal(size=(m, cpu.sizes[0]))
                Y = _targets(rng, cost, m, cpu.sizes[-1])
                for a, b in zip(dev.gradients(X, Y), cpu.gradients(X, Y)):
                    for g_dev, g_cpu in zip(a, b):
                        worst = max(worst, float(np.abs(g_dev - g_cpu).max(initial=0.0)))
                count += 1
    report.check(
        f"gradients equal the CPU's on {count} random networks "
        f"({per_pair} per activation and cost), float64, to 1e-12",
        worst <= 1e-12,
        f"largest difference {worst:.2e}",
    )


def check_sgd_tracks(device: Device, report: Report, steps: int) -> None:
    """``steps`` SGD steps from one captured step (a new batch copied in each time)
    against the CPU's :class:`~deltaflow.engine.backprop.SgdStep`."""
    rng = np.random.default_rng(2)
    worst, graphed = 0.0, 0
    for hidden in HIDDEN:
        for cost in COSTS:
            cpu = _random_net(rng, hidden, cost)
            dev = cpu.copy().to(device)
            m = 16
            ws = backprop.Workspace(cpu, m, gradients=False)
            Y_cpu = np.zeros((m, cpu.sizes[-1]))
            step = backprop.SgdStep(cpu, ws, Y_cpu, 0.05, 0.001)
            gws = generic.Workspace(dev, m, device.xp, device.products, gradients=False)
            Y_dev = device.xp.zeros((m, cpu.sizes[-1]))
            replay: Callable[[], None] | None = None
            with device.activate():
                for _ in range(steps):
                    X = rng.normal(size=(m, cpu.sizes[0]))
                    Y = _targets(rng, cost, m, cpu.sizes[-1])
                    ws.a[0][...], Y_cpu[...] = X, Y
                    step.forward()
                    c = step.cost()
                    step.backward()
                    gws.a[0][...], Y_dev[...] = device.asarray(X), device.asarray(Y)
                    if replay is None:
                        replay, is_graph = device.capture(
                            lambda net=dev, ws=gws, Y=Y_dev: generic.sgd_step(
                                net, ws, Y, 0.05, 0.001
                            )
                        )
                        graphed += is_graph
                    else:
                        replay()
                    worst = max(worst, abs(float(device.to_host(gws.cost_out)) - c))
            worst = max(worst, float(np.abs(device.to_host(dev.params) - cpu.params).max()))
    report.check(
        f"{steps} SGD steps replayed from a captured step track the CPU, float64, to 1e-10 "
        f"({graphed} of {len(HIDDEN) * len(COSTS)} captured as CUDA graphs)",
        worst <= 1e-10,
        f"largest difference {worst:.2e}",
    )


def check_fit_and_files(device: Device, report: Report) -> None:
    """``fit`` on the device against the CPU, and a model file saved from the device."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(1000, 20)), rng.integers(0, 4, 1000)
    cpu = Network([20, 32, 4], "relu", "cross_entropy", seed=5)
    dev = cpu.copy().to(device)
    for net in (cpu, dev):
        net.fit(X, y, epochs=3, batch_size=64, learning_rate=0.1, validation_split=0.1, seed=1)
    diff = float(np.abs(device.to_host(dev.params) - cpu.params).max())
    report.check(
        "fit on the device tracks fit on the CPU, float64, to 1e-10",
        diff <= 1e-10,
        f"largest difference {diff:.2e}",
    )
    with tempfile.TemporaryDirectory() as tmp:
        io.save(dev, Path(tmp) / "dev.safetensors")
        io.save(dev.copy().to("cpu"), Path(tmp) / "cpu.safetensors")
        (ta, ma), (tb, mb) = (
            io.read_safetensors(Path(tmp) / n) for n in ("dev.safetensors", "cpu.safetensors")
        )
        same = ma == mb and sorted(ta) == sorted(tb)
        same = same and all(ta[k].tobytes() == tb[k].tobytes() for k in ta)
        loaded = io.load(Path(tmp) / "dev.safetensors")
        same = same and loaded.params.tobytes() == device.to_host(dev.params).tobytes()
    report.check(
        "a model saved from the device loads on the CPU with the same bytes",
        same,
        "tensors and metadata equal" if same else "they differ",
    )


# ------------------------------------------------------------------------ benchmark


def _steps_for(batch: int, budget_rows: int) -> int:
    """Steps per timed epoch: at least 4, at most 300, about ``budget_rows`` rows."""
    return max(4, min(300, budget_rows // batch))


def time_deltaflow(
    device: Device, sizes: list[int], batch: int, X: np.ndarray, Y: np.ndarray, graph: bool
) -> tuple[float, bool]:
    """Microseconds per step of ``fit``'s loop (the median of epochs 2 and 3; the first
    captures the graph), and whether the step ran as a graph."""
    net = Network(sizes, "relu", "cross_entropy", dtype="float32", seed=0).to(device)
    source = on_device.DeviceSource(device, X, Y, None, shuffle=True)
    step = on_device.GraphSgdStep(net, get_optimizer("sgd"), device, graph=graph)
    with device.activate():
        history = run(
            net, source, step, 3, batch, lambda e: LEARNING_RATE, np.random.default_rng(0)
        )
    steps = X.shape[0] // batch
    return statistics.median(history.seconds[1:]) / steps * 1e6, batch in step.graphed


def time_products(device: Device, sizes: list[int], batch: int, repeats: int) -> float:
    """Microseconds of one step's matrix products alone (forward, the deltas, the fused
    updates and the bias sums), captured together where the device can."""
    xp, mm = device.xp, device.products
    dt = np.float32
    a = [xp.ones((batch, s), dtype=dt) for s in sizes]
    d = [xp.ones((batch, s), dtype=dt) for s in sizes]
    theta = [xp.zeros((s0, s1), dtype=dt) for s0, s1 in zip(sizes, sizes[1:])]
    b = [xp.zeros(s, dtype=dt) for s in sizes[1:]]
    tmp_t = [xp.zeros(t.shape, dtype=dt) for t in theta]
    tmp_b = [xp.zeros(v.shape, dtype=dt) for v in b]
    ones = xp.ones(batch, dtype=dt)
    L = len(theta)

    def products() -> None:
        for l in range(1, L + 1):
            mm.affine(a[l - 1], theta[l - 1], b[l - 1], a[l])
        for l in range(L, 0, -1):
            if l > 1:
                mm.matmul_bt(d[l], theta[l - 1], d[l - 1])
            mm.matmul_at(a[l - 1], d[l], theta[l - 1], -1e-9, 1.0, tmp_t[l - 1])
            mm.column_sums(d[l], ones, b[l - 1], -1e-9, 1.0, tmp_b[l - 1])

    with device.activate():
        replay, _ = device.capture(products)
        device.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            replay()
        device.synchronize()
    return (time.perf_counter() - t0) / repeats * 1e6


def time_torch(
    torch: Any, where: str, sizes: list[int], batch: int, X: np.ndarray, labels: np.ndarray
) -> float:
    """Microseconds per step of PyTorch eager: the usual zero_grad, forward, backward,
    step loop over shuffled batches gathered from data on the device."""
    layers: list[Any] = []
    for s0, s1 in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(s0, s1), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).to(where)
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt = torch.as_tensor(X, device=where)
    yt = torch.as_tensor(labels, device=where)
    steps = X.shape[0] // batch
    gen = torch.Generator(device=where).manual_seed(0)
    times = []
    for _epoch in range(3):
        order = torch.randperm(X.shape[0], device=where, generator=gen)
        if where == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(steps):
            idx = order[i * batch : (i + 1) * batch]
            xb, yb = Xt[idx], yt[idx]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        if where == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) / steps * 1e6


def benchmark(
    device: Device,
    torch: Any,
    where: str,
    networks: list[list[int]],
    batches: list[int],
    budget_rows: int,
    report: Report,
) -> None:
    rng = np.random.default_rng(0)
    rows = max(_steps_for(bs, budget_rows) * bs for bs in batches)
    X_all = rng.random((rows, 784), dtype=np.float32)
    labels_all = rng.integers(0, 10, rows)
    Y_all = np.eye(10, dtype=np.float32)[labels_all]
    header = (
        "| network | batch | graph (us/step) | no graph (us/step) | torch eager (us/step) "
        "| products only (us/step) | x torch (graph) | graph / no graph | limit share |"
    )
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for sizes in networks:
        name = "-".join(map(str, sizes))
        for bs in batches:
            m = _steps_for(bs, budget_rows) * bs
            X, Y, labels = X_all[:m], Y_all[:m], labels_all[:m]
            try:
                t_graph, graphed = time_deltaflow(device, sizes, bs, X, Y, graph=True)
                t_plain, _ = time_deltaflow(device, sizes, bs, X, Y, graph=False)
                t_prod = time_products(
                    device, sizes, bs, repeats=max(3, min(200, budget_rows // bs))
                )
                t_torch = (
                    time_torch(torch, where, sizes, bs, X, labels) if torch is not None else None
                )
            except Exception as exc:  # out of memory at the largest sizes, say: note it, go on
                report.notes.append(f"{name} batch {bs}: {type(exc).__name__}: {exc}")
                print(f"| {name} | {bs} | failed: {type(exc).__name__} |", flush=True)
                continue
            row = [
                name,
                str(bs),
                f"{t_graph:.1f}" + ("" if graphed else " (no graph)"),
                f"{t_plain:.1f}",
                "n/a" if t_torch is None else f"{t_torch:.1f}",
                f"{t_prod:.1f}",
                "n/a" if t_torch is None else f"{t_torch / t_graph:.2f}",
                f"{t_plain / t_graph:.2f}",
                f"{t_prod / t_graph:.2f}",
            ]
            report.rows.append(row)
            print("| " + " | ".join(row) + " |", flush=True)
    report.header = header


# ------------------------------------------------------------------------------ main


def _machine(device: Device, torch: Any, where: str) -> list[str]:
    lines = [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- python {platform.python_version()}, numpy {np.__version__}",
    ]
    if device.name == "cuda":
        cp = device.xp
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        lines.append(
            f"- GPU: {gpu}; CuPy {cp.__version__}, CUDA runtime "
            f"{cp.cuda.runtime.runtimeGetVersion()}"
        )
    else:
        lines.append("- no GPU: the CPU run of the script (numpy through the device path)")
    lines.append(
        f"- PyTorch {torch.__version__} on {where}" if torch is not None else "- no PyTorch"
    )
    return lines


def write_markdown(path: Path, report: Report, machine: list[str], argv: list[str]) -> None:
    checks = [
        f"- {'PASS' if ok else 'FAIL'}: {name} ({detail})" for name, ok, detail in report.checks
    ]
    table = [
        report.header,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *("| " + " | ".join(r) + " |" for r in report.rows),
    ]
    text = "\n".join(
        [
            "# deltaflow on a GPU",
            "",
            "Produced by `PYTHONPATH=src python3 benchmarks/gpu_check.py " + " ".join(argv) + "`.",
            "",
            *machine,
            "",
            "## Checks",
            "",
            *checks,
            "",
            "## Training step, float32 (relu hidden layers, softmax and cross-entropy)",
            "",
            "Microseconds per step of `fit`'s loop (batches gathered on the device, the cost "
            "read back every batch), with the step captured as one CUDA graph and without; "
            "PyTorch eager's zero_grad/forward/backward/step loop on the same device; and the "
            "step's cuBLAS products alone. `x torch` is torch's time over the graph's, "
            "`limit share` the products' time over the graph's.",
            "",
            *table,
            "",
            *(f"- {n}" for n in report.notes),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    io.atomic_write_bytes(path, (text.rstrip() + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="write the results as markdown here")
    p.add_argument(
        "--cpu", action="store_true", help="run on the CPU (numpy through the device path)"
    )
    p.add_argument(
        "--quick", action="store_true", help="a small run: fewer networks, batches, checks"
    )
    p.add_argument("--skip-benchmark", action="store_true", help="the checks only")
    p.add_argument(
        "--rows",
        type=int,
        default=2**18,
        help="rows per timed epoch from batch 1024 up (default 262144; smaller is quicker)",
    )
    args = p.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.cpu:
        device: Device = HostDevice()
    else:
        try:
            device = get_device("cuda")  # type: ignore[assignment]
        except (MissingDependencyError, DeviceError) as exc:
            print(
                f"gpu_check: {exc}; run it on a machine with a CUDA GPU, or pass --cpu "
                "to run its CPU version",
                file=sys.stderr,
            )
            return 2
    where = "cpu" if args.cpu else "cuda"
    if args.cpu:  # one thread each, so that numpy and PyTorch do not fight over cores
        threadpool_limits(1)
    try:
        import torch

        if args.cpu:
            torch.set_num_threads(1)

        if where == "cuda" and not torch.cuda.is_available():
            print("gpu_check: PyTorch finds no CUDA device; its column is left out", flush=True)
            torch = None
    except ImportError:
        torch = None
    report = Report()
    machine = _machine(device, torch, where)
    print("\n".join(machine), flush=True)
    t0 = time.perf_counter()
    checks: list[tuple[str, Callable[[], None]]] = [
        ("products", lambda: check_products(device, report)),
        ("gradients", lambda: check_gradients(device, report, 2 if args.quick else 50)),
        ("SGD steps", lambda: check_sgd_tracks(device, report, 10 if args.quick else 100)),
        ("fit and model files", lambda: check_fit_and_files(device, report)),
    ]
    for name, check in checks:
        try:
            check()
        except Exception as exc:  # a check that cannot run at all is a failure, not a crash
            report.check(name, False, f"could not run: {type(exc).__name__}: {exc}")
    print(f"checks took {time.perf_counter() - t0:.1f} s", flush=True)
    if not args.skip_benchmark:
        networks = NETWORKS[:1] if args.quick else NETWORKS
        batches = [32, 256] if args.quick else BATCHES
        benchmark(
            device, torch, where, networks, batches, 2**10 if args.quick else args.rows, report
        )
    if args.out is not None:
        write_markdown(args.out, report, machine, argv)
        print(f"wrote {args.out}")
    print(
        f"{'all checks passed' if report.passed else 'SOME CHECKS FAILED'}; "
        f"{time.perf_counter() - t0:.0f} s in all"
    )
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
