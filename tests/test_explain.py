"""Tests for deltaflow.explain, `deltaflow explain` and the per-layer delta norms of fit."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaflow import ConfigError, DataError, Network, save
from deltaflow.cli import main
from deltaflow.data import load_digits
from deltaflow.explain import (
    FORMATS,
    delta_norm_table,
    op_counts,
    path_gradients,
    render,
    trace_step,
)

# ----------------------------------------------------------------- the golden 2-3-2 case
THETA1 = np.array([[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]])
B1 = np.array([0.1, 0.0, -0.1])
THETA2 = np.array([[0.7, -0.8], [0.9, 0.1], [-0.2, 0.3]])
B2 = np.array([0.05, -0.05])
X = np.array([0.5, -1.0])
Y = np.array([1.0, 0.0])  # class 0
ALPHA = 0.5


def golden_net() -> Network:
    net = Network([2, 3, 2], "sigmoid", "squared_error", seed=0)
    net.weights[0][...] = THETA1
    net.weights[1][...] = THETA2
    net.biases[0][...] = B1
    net.biases[1][...] = B2
    return net


def by_hand() -> dict[str, np.ndarray | float]:
    """The notes' equations for one example, written out independently of deltaflow."""

    def sigma(u: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-u))

    z1 = np.array([sum(X[k] * THETA1[k, j] for k in range(2)) + B1[j] for j in range(3)])
    a1 = sigma(z1)
    z2 = np.array([sum(a1[k] * THETA2[k, j] for k in range(3)) + B2[j] for j in range(2)])
    a2 = sigma(z2)
    cost = float(sum((a2[j] - Y[j]) ** 2 for j in range(2)))
    dC_da2 = 2 * (a2 - Y)
    g2 = a2 * (1 - a2)
    d2 = dC_da2 * g2
    back = np.array([sum(THETA2[k, j] * d2[j] for j in range(2)) for k in range(3)])
    g1 = a1 * (1 - a1)
    d1 = g1 * back
    G1 = np.array([[X[k] * d1[j] for j in range(3)] for k in range(2)])
    G2 = np.array([[a1[k] * d2[j] for j in range(2)] for k in range(3)])
    new1, new2 = THETA1 - ALPHA * G1, THETA2 - ALPHA * G2
    a2_after = sigma(sigma(X @ new1 + B1 - ALPHA * d1) @ new2 + B2 - ALPHA * d2)
    return dict(
        z1=z1, a1=a1, z2=z2, a2=a2, cost=cost, dC_da2=dC_da2, g2=g2, d2=d2, back=back,
        g1=g1, d1=d1, G1=G1, G2=G2, new1=new1, new2=new2, b1=B1 - ALPHA * d1,
        b2=B2 - ALPHA * d2, cost_after=float(((a2_after - Y) ** 2).sum()),
    )  # fmt: skip


def f4(v: float) -> str:
    """Four significant digits, the renderer's documented default."""
    text = f"{float(v):.4g}"
    return "0" if text == "-0" else text


def vec(v: np.ndarray) -> str:
    return "[" + ", ".join(f4(x) for x in v) + "]"


def factor(v: float) -> str:
    return f"({f4(v)})" if f4(v).startswith("-") else f4(v)


def test_trace_matches_the_hand_computation() -> None:
    h = by_hand()
    t = trace_step(golden_net(), X, 0, learning_rate=ALPHA)
    l1, l2 = t.layers
    assert t.m == 1 and t.sizes == (2, 3, 2)
    np.testing.assert_allclose(t.y, Y)
    for got, want in [
        (l1.z, h["z1"]), (l1.a, h["a1"]), (l2.z, h["z2"]), (l2.a, h["a2"]),
        (l2.dC_da, h["dC_da2"]), (l2.g_prime, h["g2"]), (l2.delta, h["d2"]),
        (l1.dC_da, h["back"]), (l1.g_prime, h["g1"]), (l1.delta, h["d1"]),
        (l1.dtheta, h["G1"]), (l2.dtheta, h["G2"]), (l1.db, h["d1"]), (l2.db, h["d2"]),
        (l1.theta_new, h["new1"]), (l2.theta_new, h["new2"]),
        (l1.b_new, h["b1"]), (l2.b_new, h["b2"]),
    ]:  # fmt: skip
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    assert t.cost == pytest.approx(h["cost"], rel=1e-13)
    assert t.cost_after == pytest.approx(h["cost_after"], rel=1e-12)
    assert t.cost_after < t.cost
    for lay in t.layers:
        np.testing.assert_allclose(lay.fd_dtheta, lay.dtheta, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(lay.fd_db, lay.db, rtol=1e-6, atol=1e-9)


def test_golden_text_shows_the_hand_computed_numbers() -> None:
    h = by_hand()
    text = render(trace_step(golden_net(), X, 0, learning_rate=ALPHA))
    a1, a2, d1, d2 = h["a1"], h["a2"], h["d1"], h["d2"]
    expected = [
        "a^(0) = x = [0.5, -1]",
        "y = [1, 0]",
        f"z^(1) = a^(0) Theta^(1) + b^(1) = {vec(h['z1'])}",
        f"a^(1) = sigmoid(z^(1)) = {vec(a1)}",
        f"a^(2) = sigmoid(z^(2)) = {vec(a2)}",
        f"C_0 = sum_j (a_j^(2) - y_j)^2 = ({f4(a2[0])} - 1)^2 + ({f4(a2[1])} - 0)^2 = "
        f"{f4(h['cost'])}",
        f"dC/da^(2) = 2 (a^(2) - y) = {vec(h['dC_da2'])}",
        f"g'(z^(2)) = a^(2) * (1 - a^(2)) = {vec(h['g2'])}",
        f"delta^(2) = dC/da^(2) * g'(z^(2)) = {vec(d2)}",
        f"delta_0^(2) = {factor(h['dC_da2'][0])} * {factor(h['g2'][0])} = {f4(d2[0])}",
        f"Theta^(2) delta^(2) = {vec(h['back'])}",
        f"delta^(1) = (Theta^(2) delta^(2)) * g'(z^(1)) = {vec(d1)}",
        f"C_0 = {f4(h['cost_after'])} (it was {f4(h['cost'])})",
        "21 = 6 (Theta delta) + 3 (g') + 12 (read-off)",
    ]
    for k in range(3):  # each unit of the recursion, with the entries of delta^(2) it reuses
        terms = " + ".join(f"{factor(THETA2[k, j])} * {factor(d2[j])}" for j in range(2))
        expected.append(f"delta_{k}^(1) = {factor(h['g1'][k])} * ({terms}) = {f4(d1[k])}")
    for want in expected:
        assert want in text, want
    # every weight's read-off row: a_k^(l-1), delta_j^(l), their product
    for l, a_prev, delta, G in ((1, X, d1, h["G1"]), (2, a1, d2, h["G2"])):
        for k in range(G.shape[0]):
            for j in range(G.shape[1]):
                row = rf"Theta_{k}{j}\^\({l}\)\s+{re.escape(f4(a_prev[k]))}\s+"
                row += rf"{re.escape(f4(delta[j]))}\s+{re.escape(f4(G[k, j]))}\s"
                assert re.search(row, text), (l, k, j)
    # the updated Theta^(2), row by row
    for row in h["new2"]:
        assert re.search(r"\[\s+" + r"\s+".join(re.escape(f4(v)) for v in row) + r"\s+\]", text)


def test_op_counts_by_hand() -> None:
    c = op_counts([2, 3, 2])
    assert (c.weights, c.forward, c.recursion, c.derivative, c.read_off) == (12, 12, 6, 3, 12)
    assert c.backward == 21
    assert c.paths == (2, 1)
    # layer 1: 6 weights, 2 paths each of 2 Theta and 2 g' factors on delta^(2), + a_k: 6 * 5
    assert c.path_enumeration == (30, 6) and c.path_total == 36
    deep = op_counts([2, 3, 3, 2])
    assert deep.paths == (6, 2, 1)
    assert deep.path_enumeration == (6 * (4 * 6 + 1), 9 * (2 * 2 + 1), 6)
    assert deep.backward == (9 + 6) + (3 + 3) + 21
    with pytest.raises(ConfigError):
        op_counts([3])


def _count_paths(sizes: list[int], l: int) -> int:
    """Paths from one unit of layer l to the output, by walking them."""
    if l == len(sizes) - 1:
        return 1
    return sum(_count_paths(sizes, l + 1) for _ in range(sizes[l + 1]))


@given(st.lists(st.integers(1, 4), min_size=2, max_size=5))
def test_path_counts_equal_walked_paths(sizes: list[int]) -> None:
    c = op_counts(sizes)
    assert list(c.paths) == [_count_paths(sizes, l) for l in range(1, len(sizes))]
    assert c.weights == sum(a * b for a, b in zip(sizes, sizes[1:]))


ACTS = st.sampled_from(["sigmoid", "tanh", "relu", "leaky_relu", "identity"])


@settings(max_examples=25)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    act=ACTS,
    cost=st.sampled_from(["squared_error", "cross_entropy", "binary_cross_entropy"]),
    seed=st.integers(0, 2**16),
)
def test_trace_is_the_engine(sizes: list[int], act: str, cost: str, seed: int) -> None:
    if cost == "cross_entropy" and sizes[-1] < 2:
        sizes = [*sizes[:-1], 2]
    net = Network(sizes, act, cost, seed=seed)
    rng = np.random.default_rng(seed)
    for b in net.biases:  # non-zero biases keep relu away from its kink at z = 0
        b[...] = rng.uniform(-0.5, 0.5, b.shape)
    x = rng.uniform(-1, 1, sizes[0])
    if cost == "binary_cross_entropy":
        y: object = rng.integers(0, 2, sizes[-1]).astype(float)
    elif net.is_classifier:
        y = int(rng.integers(0, max(sizes[-1], 2)))  # with one output unit: 0 or 1
    else:
        y = rng.uniform(-1, 1, sizes[-1])
    before = [w.copy() for w in net.weights]
    t = trace_step(net, x, y)
    assert all(np.array_equal(a, b) for a, b in zip(before, net.weights))  # untouched
    dtheta, db = net.gradients(x[None, :], t.y[None, :])
    for lay in t.layers:
        np.testing.assert_array_equal(lay.dtheta, dtheta[lay.l - 1])
        np.testing.assert_array_equal(lay.db, db[lay.l - 1])
        # the read-off: one product a_k^(l-1) delta_j^(l) per weight
        np.testing.assert_allclose(lay.dtheta, np.outer(t.a(lay.l - 1), lay.delta), rtol=1e-15)
    assert t.fd_max_error < 1e-5
    assert t.path_multiplications == op_counts(sizes).path_total
    assert t.path_max_difference is not None and t.path_max_difference < 1e-12
    for fmt in FORMATS:
        assert render(t, fmt)


def test_path_gradients_equal_the_dynamic_programme_on_a_deeper_net() -> None:
    net = Network([3, 4, 3, 3, 2], "tanh", seed=5)
    t = trace_step(net, [0.1, -0.4, 0.8], 1)
    grads, mults = path_gradients(t)
    assert mults == op_counts(net.sizes).path_total
    for g, lay in zip(grads, t.layers):
        np.testing.assert_allclose(g, lay.dtheta, rtol=1e-12, atol=1e-15)


def test_float32_network_is_traced_in_float64_and_left_alone() -> None:
    net = Network([4, 3, 2], dtype="float32", seed=2)
    t = trace_step(net, np.linspace(0, 1, 4), 1)
    assert net.dtype == np.float32 and net.weights[0].dtype == np.float32
    assert t.layers[0].delta.dtype == np.float64
    assert t.fd_max_error < 1e-6


def test_bad_arguments() -> None:
    net = golden_net()
    with pytest.raises(DataError, match="one example"):
        trace_step(net, np.zeros((2, 2)), [0, 1])
    with pytest.raises(DataError, match="features"):
        trace_step(net, np.zeros(5), 0)
    with pytest.raises(DataError):
        trace_step(net, X, 7)
    with pytest.raises(ConfigError, match="learning_rate"):
        trace_step(net, X, 0, learning_rate=-1)
    t = trace_step(net, X, 0)
    with pytest.raises(ConfigError, match="format"):
        render(t, "html")
    with pytest.raises(ConfigError, match="digits"):
        render(t, digits=0)


def test_large_network_is_abbreviated_but_fully_compared() -> None:
    net = Network([64, 30, 10], seed=0)
    data = load_digits()
    t = trace_step(net, data.X_train[0], int(data.y_train[0]))
    text = render(t, max_entries=20)
    assert "(64 x 30 matrix: more than 20 entries)" in text
    assert "20 of 1950 parameters shown; the largest difference over all 1950 is" in text
    assert t.fd_max_error < 1e-6
    assert t.path_multiplications == op_counts([64, 30, 10]).path_total


def test_matched_pairs_and_softmax_base_cases() -> None:
    ce = render(trace_step(Network([2, 3, 2], "sigmoid", "cross_entropy", seed=1), X, 1))
    assert "the loss gives the base case directly" in ce and "delta^(2) = a^(2) - y = [" in ce
    soft = trace_step(Network([2, 3], ["softmax"], "squared_error", seed=1), X, 2)
    assert soft.layers[0].g_prime is None
    assert "Softmax couples the units" in render(soft)
    shallow = render(trace_step(Network([2, 2], "sigmoid", seed=1), X, 0))
    assert "no hidden layer, so there is no recursion" in shallow


# ---------------------------------------------------------------- well-formed output
def _markdown_ok(text: str) -> None:
    lines = text.splitlines()
    assert lines[0].startswith("# ")
    assert sum(line.startswith("```") for line in lines) % 2 == 0
    in_code, table_cols = False, None
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        if line.startswith("|"):
            cols = line.count("|")
            table_cols = table_cols or cols
            assert cols == table_cols, line
            assert line.endswith("|")
        else:
            table_cols = None
            assert line.count("`") % 2 == 0, line


def _latex_ok(text: str) -> None:
    stack = []
    for match in re.finditer(r"\\(begin|end)\{([^}]*)\}", text):
        kind, env = match.groups()
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, env
    assert not stack
    assert text.lstrip().startswith(r"\documentclass")
    assert text.rstrip().endswith(r"\end{document}")
    depth = 0
    for ch in re.sub(r"\\[{}]", "", text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    for para in re.sub(r"\\begin\{align\*\}.*?\\end\{align\*\}", "", text, flags=re.S).split(
        "\n\n"
    ):
        assert para.count("$") % 2 == 0, para
    assert r"\left(" not in text or text.count(r"\left(") == text.count(r"\right)")


NETS = [
    (Network([2, 3, 2], seed=0), [0.3, 0.7], 1),
    (Network([2, 3, 3, 2], "relu", "cross_entropy", seed=1), [0.3, 0.7], 0),
    (Network([3, 2, 2], ["softmax", "sigmoid"], seed=2), [0.1, 0.2, 0.3], 1),
    (Network([12, 14, 3], "leaky_relu", "binary_cross_entropy", seed=3), np.ones(12), [1, 0, 1]),
]


@pytest.mark.parametrize("net,x,y", NETS)
def test_markdown_and_latex_are_well_formed(net: Network, x: object, y: object) -> None:
    t = trace_step(net, x, y)
    _markdown_ok(render(t, "markdown"))
    _latex_ok(render(t, "latex", max_entries=10))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine installed")
def test_latex_compiles(tmp_path: Path) -> None:
    (tmp_path / "x.tex").write_text(render(trace_step(golden_net(), X, 0), "latex"))
    subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "x.tex"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (tmp_path / "x.pdf").stat().st_size > 1000


def test_as_dict_is_plain_data() -> None:
    import json

    d = trace_step(golden_net(), X, 0).as_dict()
    again = json.loads(json.dumps(d))
    assert again["layers"][1]["delta"] == pytest.approx(list(by_hand()["d2"]), rel=1e-13)
    assert again["counts"]["path_enumeration"] == [30, 6]


# ------------------------------------------------------------------------------ CLI
def test_cli_explain_default_is_the_notes_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain"]) == 0
    out = capsys.readouterr().out
    assert "layers S = (2, 3, 2), g = sigmoid on every layer, cost squared_error" in out
    for heading in ("1. Forward sweep", "2. Cost", "3. Base case", "4. Recursion", "5. Read-off"):
        assert heading in out
    assert "Enumerating the paths of this network for real took 36 multiplications" in out


def test_cli_explain_model_row_and_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = Network([64, 5, 10], seed=3)
    save(net, tmp_path / "m.safetensors")
    out = tmp_path / "step.tex"
    argv = ["explain", "--model", str(tmp_path / "m.safetensors"), "--row", "7"]
    assert main([*argv, "--format", "latex", "-o", str(out)]) == 0
    _latex_ok(out.read_text())
    assert main([*argv, "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    _markdown_ok(md)
    data = load_digits()
    want = trace_step(net, data.X_train[7], int(data.y_train[7]))
    assert f"`C_0 = {f4(want.cost_after)}`" in md
    assert main([*argv, "--format", "latex", "-o", str(out)]) == 2  # exists, no --force
    assert "already exists" in capsys.readouterr().err


def test_cli_explain_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save(Network([2, 3, 2], seed=0), tmp_path / "m.safetensors")
    assert main(["explain", "--model", str(tmp_path / "m.safetensors"), "--layers", "2,2"]) == 2
    assert "leave them out with --model" in capsys.readouterr().err
    assert main(["explain", "--row", "100000"]) == 2
    assert "outside the training data" in capsys.readouterr().err
    assert main(["explain", "--layers", "2,3,2", "--row", "1"]) == 2
    assert "start the layers with 64" in capsys.readouterr().err
    assert main(["explain", "--format", "html"]) == 2


# ----------------------------------------------------------------------- delta norms
def test_delta_norms_are_the_mean_abs_delta_of_each_batch() -> None:
    """One full batch per epoch: the recorded norms are the hand-computed deltas' means."""
    rng = np.random.default_rng(0)
    Xb, yb = rng.uniform(0, 1, (8, 2)), rng.integers(0, 2, 8)
    net = golden_net()
    T1, T2, b1, b2 = THETA1.copy(), THETA2.copy(), B1.copy(), B2.copy()
    history = net.fit(Xb, yb, epochs=2, batch_size=8, learning_rate=ALPHA, shuffle=False,
                      track_delta_norms=True)  # fmt: skip
    Yb = np.eye(2)[yb]
    for epoch in range(2):
        a1 = 1 / (1 + np.exp(-(Xb @ T1 + b1)))
        a2 = 1 / (1 + np.exp(-(a1 @ T2 + b2)))
        d2 = 2 * (a2 - Yb) * a2 * (1 - a2)  # per example, no 1/m
        d1 = (d2 @ T2.T) * a1 * (1 - a1)
        assert history.delta_norms[epoch] == pytest.approx(
            [np.abs(d1).mean(), np.abs(d2).mean()], rel=1e-12
        )
        T1, T2 = T1 - ALPHA * Xb.T @ d1 / 8, T2 - ALPHA * a1.T @ d2 / 8
        b1, b2 = b1 - ALPHA * d1.mean(0), b2 - ALPHA * d2.mean(0)
    table = delta_norm_table(history)
    lines = table.splitlines()
    assert lines[1].split() == ["epoch", "delta^(1)", "delta^(2)"]
    assert lines[4].split() == ["2"] + [f4(v) for v in history.delta_norms[1]]


def test_delta_norms_off_by_default_and_vanishing_in_a_deep_sigmoid_net() -> None:
    data = load_digits()
    Xs, ys = data.X_train[:400], data.y_train[:400]
    plain = Network([64, 10], seed=0).fit(Xs, ys, epochs=1)
    assert plain.delta_norms == []
    with pytest.raises(ConfigError, match="track_delta_norms"):
        delta_norm_table(plain)
    deep = Network([64, 30, 30, 30, 30, 10], seed=0)
    h = deep.fit(Xs, ys, epochs=1, batch_size=10, learning_rate=3.0, track_delta_norms=True)
    first = h.delta_norms[0]
    assert len(first) == 5
    # each sigmoid layer's g' <= 1/4 shrinks delta on its way back to the input
    assert all(a < b for a, b in zip(first, first[1:])), first
