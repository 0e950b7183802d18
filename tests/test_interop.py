"""ONNX, PyTorch and scikit-learn in and out: agreement, round trips, refusals, the CLI."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from deltaflow import ConfigError, ModelFileError, Network, io
from deltaflow.cli import main
from deltaflow.errors import MissingDependencyError
from deltaflow.interop import (
    from_onnx,
    from_sklearn,
    from_torch,
    to_onnx,
    to_sklearn,
    to_torch,
)

ACTS = ["sigmoid", "tanh", "relu", "leaky_relu", "identity"]
# every cost, with every output activation the squared error allows
CASES = [("cross_entropy", None), ("binary_cross_entropy", None)] + [
    ("squared_error", out) for out in [*ACTS, "softmax"]
]
TOL = {"float32": 1e-5, "float64": 1e-8}


def _net(hidden: str, cost: str, out: str | None, dtype: str, seed: int = 0) -> Network:
    """A random 7-9-6-4 network; its biases made non-zero so that they are exercised."""
    names = [hidden, ACTS[seed % 5], out] if out else hidden
    net = Network([7, 9, 6, 4], names, cost, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for b in net.biases:
        b[...] = rng.normal(size=b.shape)
    return net


def _X(net: Network, m: int = 33, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=2.0, size=(m, net.sizes[0])).astype(net.dtype)


def _same(a: Network, b: Network) -> bool:
    """Bit for bit the same network: sizes, activations, cost, dtype and parameters."""
    return (
        a.sizes == b.sizes
        and a.activation_names == b.activation_names
        and a.loss.name == b.loss.name
        and a.dtype == b.dtype
        and all(
            x.dtype == y.dtype and x.tobytes() == y.tobytes()
            for x, y in zip(a.weights + a.biases, b.weights + b.biases)
        )
    )


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))


# ------------------------------------------------------------------------- ONNX
@pytest.fixture
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def _run(ort, path: Path, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cost,out", CASES)
def test_onnxruntime_agrees_with_forward(ort, tmp_path, cost, out, dtype) -> None:
    import onnx

    for seed, hidden in enumerate(ACTS):
        net = _net(hidden, cost, out, dtype, seed)
        path = tmp_path / f"{seed}.onnx"
        to_onnx(net, path)
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        X = _X(net)
        got = _run(ort, path, X)
        assert got.dtype == net.dtype
        assert _rel_err(got, net.forward(X)) <= TOL[dtype]
        back = from_onnx(path)
        assert _same(back, net)


def test_onnx_graph_layout_and_metadata(ort, tmp_path) -> None:
    import onnx

    net = Network([5, 4, 3], "relu", "cross_entropy", seed=2, dtype="float32")
    path = tmp_path / "m.onnx"
    to_onnx(net, path, opset=13, class_names=["cat", "dog", "eel"])
    model = onnx.load(str(path))
    assert [n.op_type for n in model.graph.node] == [
        "MatMul", "Add", "Relu", "MatMul", "Add", "Softmax"
    ]  # fmt: skip
    assert model.opset_import[0].version == 13
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 5
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["deltaflow.sizes"]) == [5, 4, 3]
    assert json.loads(meta["deltaflow.activations"]) == ["relu", "softmax"]
    assert json.loads(meta["deltaflow.cost"]) == "cross_entropy"
    assert json.loads(meta["deltaflow.class_names"]) == ["cat", "dog", "eel"]
    assert json.loads(meta["deltaflow.input_divisor"]) == 1.0
    assert meta["deltaflow.scaling_in_graph"] == "false"
    # the batch dimension is free: one row and a thousand rows both run
    for m in (1, 1000):
        X = _X(net, m)
        assert _rel_err(_run(ort, path, X), net.forward(X)) <= 1e-5


def test_onnx_from_model_file_carries_the_input_scaling(ort, tmp_path) -> None:
    import onnx

    net = Network([6, 5, 3], "tanh", "cross_entropy", seed=4)
    model_file = tmp_path / "m.safetensors"
    io.save(net, model_file, extra={"input_divisor": 255.0})
    raw = np.random.default_rng(0).integers(0, 256, size=(20, 6)).astype(np.float64)
    plain, scaled = tmp_path / "plain.onnx", tmp_path / "scaled.onnx"
    to_onnx(model_file, plain)
    to_onnx(model_file, scaled, include_scaling=True)
    for path, in_graph in ((plain, "false"), (scaled, "true")):
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(meta["deltaflow.input_divisor"]) == 255.0
        assert meta["deltaflow.scaling_in_graph"] == in_graph
    want = net.forward(raw / 255.0)
    assert _rel_err(_run(ort, scaled, raw), want) <= 1e-8
    assert _rel_err(_run(ort, plain, raw / 255.0), want) <= 1e-8
    # the scaling node is not a layer: importing refuses it, by name
    with pytest.raises(ModelFileError, match=r"node 'scale' \(Div\)"):
        from_onnx(scaled)


def test_onnx_export_of_an_estimator_keeps_its_classes(ort, tmp_path) -> None:
    import onnx

    from deltaflow.estimators import MLPClassifier

    X = np.random.default_rng(0).normal(size=(60, 4))
    y = np.array(["a", "b", "c"])[np.arange(60) % 3]
    clf = MLPClassifier((5,), max_iter=5, random_state=0, tol=0, n_iter_no_change=100)
    with pytest.warns(Warning, match="Maximum iterations"):
        clf.fit(X, y)
    path = tmp_path / "clf.onnx"
    to_onnx(clf, path)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["deltaflow.class_names"]) == ["a", "b", "c"]
    out = _run(ort, path, X)
    assert np.array_equal(clf.classes_[out.argmax(axis=1)], clf.predict(X))


def _gemm_model(dtype=np.float64, *, extra_node=None, alpha=0.01):
    """A PyTorch-style graph: Gemm with (out, in) weights and transB=1, Constant biases."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(5)
    W1, b1 = rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=4).astype(dtype)
    W2, b2 = rng.normal(size=(2, 4)).astype(dtype), rng.normal(size=2).astype(dtype)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        helper.make_node("Constant", [], ["b1"], value=numpy_helper.from_array(b1), name="c1"),
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1, name="fc1"),
        helper.make_node("LeakyRelu", ["h"], ["g"], alpha=alpha, name="act1"),
        helper.make_node("Gemm", ["g", "W2", "b2"], ["y"], transB=1, name="fc2"),
    ]
    if extra_node is not None:
        nodes.insert(3, extra_node)
        nodes[4] = helper.make_node("Gemm", ["d", "W2", "b2"], ["y"], transB=1, name="fc2")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", elem, ["n", 3])],
        [helper.make_tensor_value_info("y", elem, ["n", 2])],
        initializer=[
            numpy_helper.from_array(W1, "W1"),
            numpy_helper.from_array(W2, "W2"),
            numpy_helper.from_array(b2, "b2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model, (W1, b1, W2, b2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_onnx_reads_a_gemm_chain(ort, tmp_path, dtype) -> None:
    import onnx

    model, (W1, b1, W2, b2) = _gemm_model(dtype)
    path = tmp_path / "gemm.onnx"
    onnx.save(model, str(path))
    net = from_onnx(path)
    assert net.sizes == [3, 4, 2]
    assert net.activation_names == ["leaky_relu", "identity"]
    assert net.loss.name == "squared_error" and net.dtype == dtype
    assert net.weights[0].tobytes() == np.ascontiguousarray(W1.T).tobytes()
    assert net.biases[0].tobytes() == b1.tobytes()
    assert net.weights[1].tobytes() == np.ascontiguousarray(W2.T).tobytes()
    assert net.biases[1].tobytes() == b2.tobytes()
    X = _X(net)
    assert _rel_err(net.forward(X), _run(ort, path, X)) <= TOL[np.dtype(dtype).name]


def test_from_onnx_refuses_what_is_not_a_dense_chain(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    cases = {
        "dropout": (
            helper.make_node("Dropout", ["g"], ["d"], name="drop"),
            r"node 'drop' \(Dropout\) is not a supported operation",
        ),
        "double": (
            helper.make_node("Relu", ["g"], ["d"], name="again"),
            r"node 'again' \(Relu\) does not follow a layer's weighted sums",
        ),
    }
    for name, (node, message) in cases.items():
        model, _ = _gemm_model(extra_node=node)
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        with pytest.raises(ModelFileError, match=message):
            from_onnx(path)
    model, _ = _gemm_model(alpha=0.2)
    onnx.save(model, str(tmp_path / "slope.onnx"))
    with pytest.raises(ModelFileError, match=r"'act1' \(LeakyRelu\) has alpha 0.2"):
        from_onnx(tmp_path / "slope.onnx")


def test_from_onnx_refuses_broken_files(tmp_path) -> None:
    pytest.importorskip("onnx")
    net = Network([4, 3, 2], seed=0)
    good = tmp_path / "good.onnx"
    to_onnx(net, good)
    data = good.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    (tmp_path / "empty.onnx").write_bytes(b"")
    for name in ("cut", "junk", "empty"):
        with pytest.raises(ModelFileError, match=rf"{name}.onnx is not a valid ONNX model"):
            from_onnx(tmp_path / f"{name}.onnx")
    with pytest.raises(ModelFileError, match="no such ONNX file"):
        from_onnx(tmp_path / "absent.onnx")
    with pytest.raises(ModelFileError, match="is a directory"):
        from_onnx(tmp_path)


def test_to_onnx_refuses_bad_options(tmp_path) -> None:
    pytest.importorskip("onnx")
    net = Network([4, 3, 2], seed=0)
    for opset in (12, 10_000, "17", True):
        with pytest.raises(ConfigError, match="opset must be a whole number from 13"):
            to_onnx(net, tmp_path / "m.onnx", opset=opset)
    with pytest.raises(ConfigError, match="expected a deltaflow Network"):
        to_onnx([1, 2], tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cost,out", CASES)
def test_torch_agrees_and_round_trips(cost, out, dtype) -> None:
    torch = pytest.importorskip("torch")
    for seed, hidden in enumerate(ACTS):
        net = _net(hidden, cost, out, dtype, seed)
        module = to_torch(net)
        assert isinstance(module, torch.nn.Sequential) and len(module) == 2 * net.L
        X = _X(net)
        with torch.no_grad():
            got = module(torch.from_numpy(X)).numpy()
        assert got.dtype == net.dtype
        assert _rel_err(got, net.forward(X)) <= (1e-12 if dtype == "float64" else 1e-5)
        # a Sequential holds no cost: it is given back, or guessed from the output
        assert _same(from_torch(module, cost=cost), net)
        guess = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy"}
        guessed = from_torch(module)
        assert guessed.loss.name == guess.get(net.activation_names[-1], "squared_error")
        assert all(np.array_equal(x, y) for x, y in zip(guessed.weights, net.weights))


def test_from_torch_reads_linear_layers_without_bias_and_refuses_others() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(3, 5, bias=False), nn.Tanh(), nn.Linear(5, 2)).double()
    net = from_torch(seq, cost="squared_error")
    assert net.activation_names == ["tanh", "identity"]
    assert not net.biases[0].any()
    X = np.random.default_rng(0).normal(size=(6, 3))
    with torch.no_grad():
        want = seq(torch.from_numpy(X)).numpy()
    assert _rel_err(net.forward(X), want) <= 1e-12
    bad = nn.Sequential(nn.Linear(3, 5), nn.Dropout(0.1), nn.Linear(5, 2))
    with pytest.raises(ConfigError, match=r"module 1 \(Dropout\) is not supported"):
        from_torch(bad)
    with pytest.raises(ConfigError, match=r"module 2 \(ReLU\) does not follow a Linear"):
        from_torch(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.ReLU()))
    with pytest.raises(ConfigError, match="takes a torch.nn.Sequential"):
        from_torch(nn.Linear(3, 5))
    with pytest.raises(ConfigError, match="mix dtypes"):
        from_torch(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2).double()))


def test_missing_optional_package_says_what_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    monkeypatch.setitem(sys.modules, "torch", None)
    net = Network([3, 2], seed=0)
    with pytest.raises(MissingDependencyError, match=r"pip install 'deltaflow\[onnx\]'"):
        to_onnx(net, tmp_path / "m.onnx")
    with pytest.raises(MissingDependencyError, match="pip install torch"):
        to_torch(net)
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------ scikit-learn
def _sk_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 5))
    return X, rng


@pytest.mark.parametrize("activation", ["logistic", "tanh", "relu", "identity"])
def test_from_sklearn_predicts_as_the_estimator(activation) -> None:
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    X, rng = _sk_data()
    kw = dict(hidden_layer_sizes=(6, 4), activation=activation, max_iter=3, random_state=0)
    targets = {
        "multiclass": (MLPClassifier, np.array([3, 5, 9])[np.arange(80) % 3]),
        "binary": (MLPClassifier, np.array(["no", "yes"])[np.arange(80) % 2]),
        "multilabel": (MLPClassifier, (rng.random((80, 3)) > 0.5).astype(int)),
        "regression": (MLPRegressor, rng.normal(size=(80, 2))),
    }
    for kind, (cls, y) in targets.items():
        with pytest.warns(Warning, match="Maximum iterations"):
            est = cls(**kw).fit(X, y)
        net = from_sklearn(est)
        a = net.forward(X)
        if kind == "regression":
            assert net.loss.name == "squared_error"
            np.testing.assert_allclose(a, est.predict(X), rtol=0, atol=1e-12)
            continue
        if kind == "multiclass":
            assert net.activation_names[-1] == "softmax"
            np.testing.assert_allclose(a, est.predict_proba(X), rtol=0, atol=1e-12)
            assert np.array_equal(est.classes_[net.predict(X)], est.predict(X))
        elif kind == "binary":
            np.testing.assert_allclose(a[:, 0], est.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
            assert np.array_equal(est.classes_[net.predict(X)], est.predict(X))
        else:
            assert np.array_equal((a > 0.5).astype(int), est.predict(X))
        for x, y in zip(net.weights + net.biases, est.coefs_ + est.intercepts_):
            assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "relu", "identity"])
def test_to_sklearn_predicts_as_the_network(hidden) -> None:
    X, _ = _sk_data(1)
    nets = {
        "softmax": Network([5, 7, 4], hidden, "cross_entropy", seed=1),
        "sigmoid": Network([5, 7, 3], hidden, "binary_cross_entropy", seed=2),
        "binary": Network([5, 7, 1], hidden, "binary_cross_entropy", seed=3),
        "identity": Network([5, 7, 2], [hidden, "identity"], seed=4),
    }
    for kind, net in nets.items():
        for b in net.biases:
            b[...] = np.linspace(-1, 1, b.size)
        est = to_sklearn(net)
        a = net.forward(X)
        if kind == "identity":
            np.testing.assert_allclose(est.predict(X), a, rtol=0, atol=1e-12)
        elif kind == "softmax":
            np.testing.assert_allclose(est.predict_proba(X), a, rtol=0, atol=1e-12)
            assert np.array_equal(est.predict(X), net.predict(X))
        elif kind == "binary":
            np.testing.assert_allclose(est.predict_proba(X)[:, 1], a[:, 0], rtol=0, atol=1e-12)
            assert np.array_equal(est.predict(X), net.predict(X))
        else:
            assert np.array_equal(est.predict(X), (a > 0.5).astype(int))
        assert _same(from_sklearn(est), net)


def test_to_sklearn_two_unit_softmax_and_refusals() -> None:
    X, _ = _sk_data(2)
    net = Network([5, 6, 2], "tanh", "cross_entropy", seed=0)
    est = to_sklearn(net, classes=["neg", "pos"])
    np.testing.assert_allclose(est.predict_proba(X), net.forward(X), rtol=0, atol=1e-12)
    assert list(est.predict(X)) == list(np.array(["neg", "pos"])[net.predict(X)])
    with pytest.raises(ConfigError, match="one hidden activation"):
        to_sklearn(Network([5, 6, 4, 2], ["relu", "tanh", "softmax"], "cross_entropy"))
    with pytest.raises(ConfigError, match="one hidden activation"):
        to_sklearn(Network([5, 6, 2], "leaky_relu", "cross_entropy"))
    with pytest.raises(ConfigError, match="output layer is tanh"):
        to_sklearn(Network([5, 6, 2], "tanh"))
    with pytest.raises(ConfigError, match="classes must be 2 distinct labels in sorted order"):
        to_sklearn(net, classes=["pos", "neg"])
    with pytest.raises(ConfigError, match="fit it first"):
        from_sklearn(object())


# ---------------------------------------------------------------------------- CLI
def _saved(tmp_path: Path) -> tuple[Path, Network]:
    net = Network([6, 5, 3], ["relu", "softmax"], "cross_entropy", seed=9)
    path = tmp_path / "model.safetensors"
    io.save(net, path, extra={"input_divisor": 16.0})
    return path, net


def test_cli_export_onnx(ort, tmp_path, capsys) -> None:
    model, net = _saved(tmp_path)
    out = tmp_path / "model.onnx"
    assert main(["export", str(model), "-o", str(out), "--include-scaling"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    raw = np.random.default_rng(0).integers(0, 17, size=(10, 6)).astype(np.float64)
    assert _rel_err(_run(ort, out, raw), net.forward(raw / 16.0)) <= 1e-8
    # an existing file stays unless --force
    before = out.read_bytes()
    assert main(["export", str(model), "-o", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["export", str(model), "-o", str(out), "--force"]) == 0
    assert _same(from_onnx(out), net)


def test_cli_export_torch_state_dict(tmp_path, capsys) -> None:
    torch = pytest.importorskip("torch")
    model, net = _saved(tmp_path)
    out = tmp_path / "model.pt"
    assert main(["export", str(model), "-o", str(out)]) == 0
    state = torch.load(out, weights_only=True)
    assert sorted(state) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    module = torch.nn.Sequential(
        torch.nn.Linear(6, 5, dtype=torch.float64),
        torch.nn.ReLU(),
        torch.nn.Linear(5, 3, dtype=torch.float64),
        torch.nn.Softmax(dim=-1),
    )
    module.load_state_dict(state)
    assert _same(from_torch(module), net)


def test_cli_export_bad_input(tmp_path, capsys, monkeypatch) -> None:
    model, _ = _saved(tmp_path)
    cases = [
        (["-o", str(tmp_path / "m.txt")], "must end in .onnx (ONNX) or .pt"),
        (["-o", str(tmp_path / "m.pt"), "--include-scaling"], "applies to .onnx exports only"),
        (["-o", str(tmp_path / "no" / "m.onnx")], "does not exist"),
    ]
    for extra, message in cases:
        assert main(["export", str(model), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    assert main(["export", str(tmp_path / "bad.safetensors"), "-o", str(tmp_path / "b.pt")]) == 2
    assert "not a deltaflow model file" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", str(model), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "python3 -m pip install 'deltaflow[onnx]'" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors", "model.safetensors"]


# ------------------------------------------------------------------------ README
README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_models_that_travel_runs(ort, tmp_path, monkeypatch, capsys) -> None:
    """The README's section, run as it is: its commands through main(), then its Python."""
    pytest.importorskip("torch")
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Models that travel") : text.index("### Initialisations")]
    (bash,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    monkeypatch.chdir(tmp_path)
    commands = [
        line.split("#")[0].split()
        for line in bash.replace("\\\n", " ").splitlines()
        if line.startswith("deltaflow ")
    ]
    assert [c[1] for c in commands] == ["train", "export", "export"]
    for command in commands:
        assert main([*command[1:], *(["--quiet"] if command[1] == "train" else [])]) == 0
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert float(printed[-4]) < 1e-6 and float(printed[-3]) < 1e-6
    shapes = {"0.weight": (32, 64), "0.bias": (32,), "2.weight": (10, 32), "2.bias": (10,)}
    assert printed[-2] == str(shapes)
    sk_score, ours = (float(v) for v in printed[-1].split())
    assert sk_score == ours > 0.9
