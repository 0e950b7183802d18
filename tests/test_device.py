"""The engine's device path: the generic engine on numpy against the CPU's hot path,
training through the device parts, model files across devices, and the one-line errors
without a GPU. The GPU tests at the end skip cleanly without CuPy or a GPU."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import deltaflow
from deltaflow import Network, io
from deltaflow.cli import main
from deltaflow.engine import backprop, generic
from deltaflow.engine.devices import HostDevice, get_device
from deltaflow.errors import ConfigError, DeviceError, MissingDependencyError
from deltaflow.estimators import MLPClassifier, MLPRegressor
from deltaflow.training import device as on_device
from deltaflow.training.batches import ArraySource
from deltaflow.training.loop import run
from deltaflow.training.optimizers import get_optimizer

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "identity", "softmax"]
COSTS = {"squared_error": None, "cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}


def _cuda_state() -> str:
    """ "gpu" when CuPy finds a GPU, else the one-line reason there is none."""
    try:
        get_device("cuda")
    except (MissingDependencyError, DeviceError) as exc:
        return str(exc)
    return "gpu"


CUDA = _cuda_state()


def _random_net(rng: np.random.Generator, hidden: str, cost: str) -> Network:
    depth = int(rng.integers(1, 4))
    sizes = [int(s) for s in rng.integers(1, 9, size=depth + 1)]
    sizes.append(int(rng.integers(2, 6)))
    out = COSTS[cost] or str(rng.choice(HIDDEN))
    acts = [hidden] * depth + [out]
    return Network(sizes, acts, cost, seed=int(rng.integers(1 << 30)))


def _targets(rng: np.random.Generator, cost: str, m: int, n: int) -> np.ndarray:
    if cost == "cross_entropy":
        return np.eye(n)[rng.integers(0, n, m)]
    if cost == "binary_cross_entropy":
        return (rng.random((m, n)) < 0.5).astype(np.float64)
    return rng.normal(size=(m, n))


@pytest.mark.parametrize("cost", sorted(COSTS))
@pytest.mark.parametrize("hidden", HIDDEN)
def test_generic_gradients_equal_the_cpu_path(hidden: str, cost: str) -> None:
    rng = np.random.default_rng([HIDDEN.index(hidden), len(cost)])
    for _ in range(5):
        net = _random_net(rng, hidden, cost)
        m = int(rng.integers(1, 12))
        X = rng.normal(size=(m, net.sizes[0]))
        Y = _targets(rng, cost, m, net.sizes[-1])
        W = rng.random(m) if rng.random() < 0.5 else None
        decay = float(rng.choice([0.0, 0.1]))
        ws = backprop.Workspace(net, m)
        backprop.forward(net, ws, X.copy())
        c_cpu = backprop.cost(net, ws, Y, W)
        backprop.backward(net, ws, Y, W, weight_decay=decay)
        gws = generic.Workspace(net, m, np, generic.NumpyProducts())
        gws.a[0][...] = X
        np.testing.assert_allclose(generic.forward(net, gws), ws.a[net.L], rtol=0, atol=1e-12)
        c_gen = float(generic.cost(net, gws, Y, W))
        generic.backward(net, gws, Y, W, weight_decay=decay)
        assert c_gen == pytest.approx(c_cpu, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(gws.grad, ws.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cost", sorted(COSTS))
def test_generic_sgd_steps_track_the_cpu_step(cost: str) -> None:
    rng = np.random.default_rng(7)
    for hidden in HIDDEN:
        cpu = _random_net(rng, hidden, cost)
        dev = cpu.copy()
        m = 8
        ws = backprop.Workspace(cpu, m, gradients=False)
        Y_cpu = np.zeros((m, cpu.sizes[-1]))
        step = backprop.SgdStep(cpu, ws, Y_cpu, 0.05, 0.01)
        gws = generic.Workspace(dev, m, np, generic.NumpyProducts(), gradients=False)
        for _ in range(100):
            X = rng.normal(size=(m, cpu.sizes[0]))
            Y = _targets(rng, cost, m, cpu.sizes[-1])
            ws.a[0][...], Y_cpu[...], gws.a[0][...] = X, Y, X
            step.forward()
            c = step.cost()
            step.backward()
            generic.sgd_step(dev, gws, Y, 0.05, 0.01)
            assert float(gws.cost_out) == pytest.approx(c, rel=1e-10, abs=1e-12)
        np.testing.assert_allclose(dev.params, cpu.params, rtol=0, atol=1e-10)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_fit_on_the_host_device_tracks_the_cpu(optimizer: str) -> None:
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(103, 6)), rng.integers(0, 3, 103)
    w = rng.random(103)
    cpu = Network([6, 8, 3], "tanh", "cross_entropy", seed=2)
    dev = cpu.copy().to(HostDevice())
    assert dev.device == "host"
    for net in (cpu, dev):
        net.fit(X, y, epochs=4, batch_size=10, learning_rate=0.1, optimizer=optimizer,
                weight_decay=0.01, validation_split=0.2, seed=3)  # fmt: skip
        net.fit(X, y, sample_weight=w, epochs=2, batch_size=16, optimizer=optimizer, seed=4)
    np.testing.assert_allclose(dev.params, cpu.params, rtol=0, atol=1e-12)
    assert isinstance(dev.params, np.ndarray)
    for fn in (deltaflow.evaluate,):
        c_cpu, acc_cpu = fn(cpu, X, y)
        c_dev, acc_dev = fn(dev, X, y)
        assert c_dev == pytest.approx(c_cpu, rel=1e-12) and acc_dev == acc_cpu
    np.testing.assert_allclose(dev.forward(X), cpu.forward(X), rtol=0, atol=1e-12)
    assert dev.cost(X, y) == pytest.approx(cpu.cost(X, y), rel=1e-12)
    for g_dev, g_cpu in zip(dev.gradients(X, y), cpu.gradients(X, y)):
        for a, b in zip(g_dev, g_cpu):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_early_stopping_on_the_host_device_restores_the_same_epoch() -> None:
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(120, 4)), rng.integers(0, 2, 120)
    cpu = Network([4, 16, 2], "relu", "cross_entropy", seed=1)
    dev = cpu.copy().to(HostDevice())
    kw = dict(epochs=30, batch_size=8, learning_rate=0.5, validation_split=0.3,
              early_stopping=True, patience=2, seed=0)  # fmt: skip
    h_cpu, h_dev = cpu.fit(X, y, **kw), dev.fit(X, y, **kw)
    assert h_dev.best_epoch == h_cpu.best_epoch and len(h_dev.epoch) == len(h_cpu.epoch)
    np.testing.assert_allclose(h_dev.val_cost, h_cpu.val_cost, rtol=1e-12)
    np.testing.assert_allclose(dev.params, cpu.params, rtol=0, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_streamed_and_resident_sources_serve_the_cpu_batches(weighted: bool) -> None:
    rng = np.random.default_rng(11)
    m = 37  # a short last batch
    X, Y = rng.normal(size=(m, 5)), np.eye(3)[rng.integers(0, 3, m)]
    W = rng.random(m) if weighted else None
    host = HostDevice()
    nets = []
    for make in ("cpu", "resident", "streamed", "no-graph"):
        net = Network([5, 7, 3], "sigmoid", "cross_entropy", seed=9)
        opt = get_optimizer("sgd")
        if make == "cpu":
            from deltaflow.training.steps import make_step

            source, step = ArraySource(X, Y, W), make_step(net, opt)
        else:
            net.to(host)
            cls = on_device.StreamedSource if make == "streamed" else on_device.DeviceSource
            source = cls(host, X, Y, W, True)
            step = on_device.GraphSgdStep(net, opt, host, graph=make != "no-graph")
        history = run(net, source, step, 3, 8, lambda e: 0.3, np.random.default_rng(4))
        nets.append((net, history.cost))
    for net, costs in nets[1:]:
        np.testing.assert_allclose(net.params, nets[0][0].params, rtol=0, atol=1e-12)
        np.testing.assert_allclose(costs, nets[0][1], rtol=1e-12)


def test_make_source_streams_what_does_not_fit() -> None:
    class SmallHost(HostDevice):
        def free_bytes(self) -> int:
            return 1000

    X, Y = np.zeros((100, 4)), np.zeros((100, 2))
    assert isinstance(on_device.make_source(HostDevice(), X, Y, None, True), on_device.DeviceSource)
    assert isinstance(
        on_device.make_source(SmallHost(), X, Y, None, True), on_device.StreamedSource
    )


def _same_file(a, b) -> bool:
    """Whether two model files hold the same tensors, byte for byte, and the same metadata
    (safetensors writes the metadata's keys in no fixed order)."""
    (ta, ma), (tb, mb) = io.read_safetensors(a), io.read_safetensors(b)
    return (
        ma == mb
        and sorted(ta) == sorted(tb)
        and all(ta[k].dtype == tb[k].dtype and ta[k].tobytes() == tb[k].tobytes() for k in ta)
    )


def test_a_model_trained_on_a_device_saves_the_same_bytes(tmp_path) -> None:
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    net = Network([3, 5, 2], "relu", "cross_entropy", seed=0, dtype="float32")
    net.to(HostDevice()).fit(X, y, epochs=2, batch_size=8, seed=1)
    io.save(net, tmp_path / "dev.safetensors")
    assert net.device == "host"  # saving leaves the network where it was
    back = net.copy().to("cpu")
    assert back.device == "cpu" and isinstance(back.params, np.ndarray)
    io.save(back, tmp_path / "cpu.safetensors")
    assert _same_file(tmp_path / "dev.safetensors", tmp_path / "cpu.safetensors")
    loaded = io.load(tmp_path / "dev.safetensors")
    assert loaded.params.tobytes() == back.params.tobytes()
    loaded.to(HostDevice())
    io.save(loaded, tmp_path / "again.safetensors")
    assert _same_file(tmp_path / "again.safetensors", tmp_path / "dev.safetensors")


def test_options_a_device_lacks_are_refused_in_one_line(tmp_path) -> None:
    net = Network([2, 3, 2], seed=0).to(HostDevice())
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ConfigError, match="^track_delta_norms not available on a GPU yet"):
        net.fit(X, y, track_delta_norms=True)
    with pytest.raises(ConfigError, match="^checkpoints not available on a GPU yet"):
        net.fit(X, y, checkpoint_dir=tmp_path / "ck")
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir())


def test_a_bad_device_name_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^device must be 'cpu' or 'cuda', got 'gpu'$"):
        Network([2, 2], device="gpu")
    with pytest.raises(ConfigError, match="device must be"):
        Network([2, 2]).to("tpu")
    est = MLPClassifier((3,), device="tpu", max_iter=1)
    with pytest.raises(ConfigError, match="device must be"):
        est.fit(np.zeros((4, 2)), [0, 1, 0, 1])
    assert est.get_params()["device"] == "tpu"


@pytest.mark.skipif(CUDA == "gpu", reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys) -> None:
    expected = (
        "CuPy is not installed; pip install 'deltaflow[cuda12]'"
        if "CuPy" in CUDA
        else "no CUDA device: cupy.is_available() is False"
    )
    assert CUDA == expected
    error = MissingDependencyError if "CuPy" in CUDA else DeviceError
    with pytest.raises(error) as info:
        Network([3, 2], device="cuda")
    assert str(info.value) == expected
    with pytest.raises(error):
        Network([3, 2]).to("cuda")
    est = MLPRegressor((2,), device="cuda", max_iter=1)
    with pytest.raises(error):
        est.fit(np.zeros((4, 3)), np.zeros(4))
    out = tmp_path / "model.safetensors"
    rc = main(["train", "--device", "cuda", "--epochs", "1", "--save", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().splitlines() == [f"deltaflow: error: {expected}"]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------- on a GPU, when there is one

gpu = pytest.mark.skipif(CUDA != "gpu", reason=f"no GPU here ({CUDA})")


@gpu
def test_gpu_gradients_equal_the_cpu() -> None:
    rng = np.random.default_rng(1)
    for hidden in HIDDEN:
        for cost in COSTS:
            cpu = _random_net(rng, hidden, cost)
            dev = cpu.copy().to("cuda")
            X = rng.normal(size=(9, cpu.sizes[0]))
            Y = _targets(rng, cost, 9, cpu.sizes[-1])
            for a, b in zip(dev.gradients(X, Y), cpu.gradients(X, Y)):
                for g_dev, g_cpu in zip(a, b):
                    np.testing.assert_allclose(g_dev, g_cpu, rtol=0, atol=1e-12)


@gpu
def test_gpu_fit_tracks_the_cpu_and_saves_the_same_bytes(tmp_path) -> None:
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(100, 6)), rng.integers(0, 3, 100)
    cpu = Network([6, 8, 3], "tanh", "cross_entropy", seed=2)
    dev = cpu.copy().to("cuda")
    for net in (cpu, dev):
        net.fit(X, y, epochs=3, batch_size=10, learning_rate=0.1, seed=3)
    np.testing.assert_allclose(dev.to("cpu").params, cpu.params, rtol=0, atol=1e-10)
    io.save(dev.to("cuda"), tmp_path / "gpu.safetensors")
    io.save(dev.to("cpu"), tmp_path / "cpu.safetensors")
    assert _same_file(tmp_path / "gpu.safetensors", tmp_path / "cpu.safetensors")


def _gpu_check_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = script  # its dataclass looks its module up there
    spec.loader.exec_module(script)
    return script


def test_gpu_check_runs_its_checks_and_benchmark_on_the_cpu(tmp_path, capsys) -> None:
    script = _gpu_check_script()
    out = tmp_path / "docs" / "gpu.md"
    assert script.main(["--cpu", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("PASS  ") == 5 and "FAIL" not in printed
    text = out.read_text()
    assert "--cpu --quick --out" in text and "## Checks" in text
    rows = [line for line in text.splitlines() if line.startswith("| 784-30-10 |")]
    assert [row.split(" | ")[1] for row in rows] == ["32", "256"]
    for row in rows:  # every cell measured: positive times and ratios
        cells = row.strip("| ").split(" | ")
        times = [float(c.split()[0]) for c in cells[2:4] + cells[5:]]
        assert all(t > 0 for t in times)


@pytest.mark.skipif(CUDA == "gpu", reason="this machine has a GPU")
def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path, capsys) -> None:
    script = _gpu_check_script()
    assert script.main(["--out", str(tmp_path / "gpu.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"gpu_check: {CUDA}; run it on a machine")
    assert list(tmp_path.iterdir()) == []
