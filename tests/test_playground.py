"""The playground: its session (settings, data, training, trace) and its server.

The session tests need nothing beyond deltaflow; the server tests need the ``web`` extra
and httpx (Starlette's test client) and skip without them.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest

from deltaflow import Network
from deltaflow.cli import main
from deltaflow.errors import ConfigError
from deltaflow.explain import trace_step
from deltaflow.web.datasets import DOMAIN, features, make_points
from deltaflow.web.session import BOUNDARY_CELLS, UNIT_CELLS, Playground, Settings, checked


def _decoded(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=np.uint8)


# ------------------------------------------------------------------------- the data
@pytest.mark.parametrize("name", ["circle", "xor", "gauss", "spiral"])
def test_points_are_balanced_seeded_and_inside_the_square(name):
    P, y = make_points(name, 200, 0.1, np.random.default_rng(3))
    assert P.shape == (200, 2) and y.shape == (200,)
    assert np.abs(P).max() <= DOMAIN
    assert set(np.unique(y)) == {0, 1}
    if name != "xor":
        assert np.count_nonzero(y) == 100
    P2, y2 = make_points(name, 200, 0.1, np.random.default_rng(3))
    np.testing.assert_array_equal(P, P2)
    np.testing.assert_array_equal(y, y2)


def test_noiseless_sets_are_separated_as_described():
    P, y = make_points("circle", 400, 0.0, np.random.default_rng(0))
    r = np.hypot(P[:, 0], P[:, 1])
    assert r[y == 1].max() <= 2.5 + 1e-12 and r[y == 0].min() >= 3.5 - 1e-12
    P, y = make_points("xor", 400, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(y, (P[:, 0] * P[:, 1] > 0).astype(int))


def test_features_are_the_named_functions_of_x1_and_x2():
    P = np.array([[1.5, -2.0], [0.5, 3.0]])
    F = features(P, ["x1", "x2", "x1^2", "x2^2", "x1*x2", "sin(x1)", "sin(x2)"])
    expected = [[1.5, -2.0, 2.25, 4.0, -3.0, math.sin(1.5), math.sin(-2.0)]]
    expected.append([0.5, 3.0, 0.25, 9.0, 1.5, math.sin(0.5), math.sin(3.0)])
    np.testing.assert_allclose(F, expected)


# ------------------------------------------------------------------- the settings
@pytest.mark.parametrize(
    "changes, words",
    [
        ({"depth": 3}, "unknown setting 'depth'"),
        ({"hidden": [4] * 7}, "at most 6"),
        ({"hidden": [9]}, "from 1 to 8"),
        ({"hidden": [0]}, "from 1 to 8"),
        ({"hidden": "4,2"}, "list"),
        ({"hidden": [True]}, "from 1 to 8"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"learning_rate": 100}, "learning_rate"),
        ({"learning_rate": "0.1"}, "learning_rate"),
        ({"batch_size": 101}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"l2": -1}, "l2"),
        ({"noise": 51}, "noise"),
        ({"train_ratio": 95}, "train_ratio"),
        ({"dataset": "moons"}, "dataset must be one of"),
        ({"cost": "hinge"}, "cost must be one of"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"activations": ["softmax"]}, "activations must be one of"),
        ({"features": []}, "at least one"),
        ({"features": ["x1", "x1"]}, "each once"),
        ({"features": ["x3"]}, "features must be one of"),
        ({"seed": -1}, "seed"),
        ([1, 2], "object"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_line_and_change_nothing(changes, words):
    play = Playground()
    before = play.settings
    weights = [w.copy() for w in play.net.weights]
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        play.configure(changes)
    assert play.settings == before
    for w, w0 in zip(play.net.weights, weights):
        np.testing.assert_array_equal(w, w0)


def test_layers_added_and_removed_keep_one_activation_per_layer():
    s = checked(Settings(), {"hidden": [4, 2, 3]})
    assert s.activations == ("tanh", "tanh", "tanh")
    s = checked(s, {"activations": ["relu", "sigmoid", "tanh"]})
    s = checked(s, {"hidden": [4]})
    assert s.activations == ("relu",)
    s = checked(s, {"hidden": []})
    assert s.activations == () and s.hidden == ()
    assert checked(s, {"features": ["sin(x2)", "x1"]}).features == ("x1", "sin(x2)")


def test_a_network_change_rebuilds_and_a_rate_change_keeps_training():
    play = Playground()
    play.epoch()
    assert play.configure({"learning_rate": 0.3}) is False
    assert play.progress.steps > 0
    assert play.configure({"hidden": [3, 3, 3], "activations": ["sigmoid"] * 3}) is True
    assert play.progress.steps == 0
    assert play.net.sizes == [2, 3, 3, 3, 1]
    assert play.net.activation_names == ["sigmoid", "sigmoid", "sigmoid", "sigmoid"]
    play.configure({"cost": "cross_entropy", "features": ["x1", "x2", "x1*x2"], "hidden": []})
    assert play.net.sizes == [3, 2] and play.net.activation_names == ["softmax"]


# ---------------------------------------------------------------------- training
def test_training_on_the_circle_lowers_both_costs():
    play = Playground()
    first = play.update()
    for _ in range(30):
        play.epoch()
    last = play.update()
    assert last["epoch"] == 30 and last["examples"] == 30 * 250 and last["steps"] == 30 * 25
    assert last["loss"] < 0.5 * first["loss"]
    assert last["test_loss"] < 0.6 * first["test_loss"]
    assert last["accuracy"] > 0.9
    # the costs are evaluate's, on the session's own training and test rows
    from deltaflow import evaluate

    assert last["loss"] == pytest.approx(evaluate(play.net, play.X, play.data.y)[0])


def test_update_carries_every_heat_map_at_its_size_and_is_plain_json():
    play = Playground(Settings(hidden=(3, 5), activations=("relu", "sigmoid")))
    msg = play.update()
    json.dumps(msg, allow_nan=False)
    assert _decoded(msg["boundary"]).size == BOUNDARY_CELLS**2
    assert [len(layer) for layer in msg["units"]] == [3, 5, 1]
    assert all(_decoded(m).size == UNIT_CELLS**2 for layer in msg["units"] for m in layer)
    # a sigmoid unit's output lies in (0, 1): its bytes stay in the upper half of 0..255
    assert all(_decoded(m).min() >= 127 for m in msg["units"][1])
    np.testing.assert_allclose(msg["weights"][0], np.round(play.net.weights[0], 4), atol=1e-12)
    described = play.describe()
    json.dumps(described, allow_nan=False)
    assert len(described["points"]) == 500
    assert described["train_size"] == 250 and described["test_size"] == 250


def test_the_boundary_is_the_networks_output_on_the_grid():
    play = Playground()
    for _ in range(5):
        play.epoch()
    cells = BOUNDARY_CELLS
    c = (np.arange(cells) + 0.5) / cells * 2 * DOMAIN - DOMAIN
    x1, x2 = np.meshgrid(c, c[::-1])
    grid = np.column_stack([x1.ravel(), x2.ravel()])
    p = play.net.forward(grid)[:, 0]
    expected = np.rint((2 * p - 1 + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(_decoded(play.update()["boundary"]), expected)


def test_a_step_is_one_batch_and_its_trace_is_the_engines_before_it():
    play = Playground(Settings(batch_size=7, hidden=(3,), activations=("sigmoid",)))
    row = int(play.order[0])
    before = play.net.copy()
    msg = play.step()
    assert msg["row"] == row and play.progress.steps == 1 and play.progress.examples == 7
    oracle = trace_step(before, play.X[row], play.data.y[row], learning_rate=0.1)
    t = msg["trace"]
    for lay, ref in zip(t["layers"], oracle.layers):
        np.testing.assert_allclose(lay["delta"], ref.delta, rtol=1e-5)
        np.testing.assert_allclose(lay["dtheta"], ref.dtheta, rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(lay["fd_dtheta"], ref.dtheta, rtol=1e-4, atol=1e-9)
    # the gradient of this one example by the network's own backward pass
    dtheta, _ = before.gradients(play.X[row : row + 1], play.data.y[row : row + 1])
    np.testing.assert_allclose(t["layers"][0]["dtheta"], dtheta[0], rtol=1e-5, atol=1e-12)
    # sizes 2-3-1: Theta delta 3*1, g' 3, read-off 2*3 + 3*1
    assert t["counts"]["backward"] == 3 + 3 + 9
    assert t["path_multiplications"] is not None
    # the step changed the parameters the way one batch of plain SGD does
    rows = play.order[:7]
    ref = before.copy()
    ref.fit(
        play.X[rows], play.data.y[rows], epochs=1, batch_size=7, learning_rate=0.1, shuffle=False
    )
    for w, w_ref in zip(play.net.weights, ref.weights):
        np.testing.assert_allclose(w, w_ref, rtol=1e-12)
    # the next step's trace starts where this batch ended
    assert play.trace()["row"] == int(play.order[7])


def test_trace_of_a_chosen_row_and_bad_rows():
    play = Playground()
    msg = play.trace(12)
    assert msg["row"] == 12 and msg["label"] == int(play.data.y[12])
    assert msg["point"] == pytest.approx(play.data.points[12].tolist())
    for bad in (-1, 250, "3", 2.0, True):
        with pytest.raises(ConfigError, match="row"):
            play.trace(bad)


def test_reset_draws_new_weights_for_the_same_data():
    play = Playground()
    points = play.data.points.copy()
    w = play.net.weights[0].copy()
    play.epoch()
    play.reset()
    np.testing.assert_array_equal(play.data.points, points)
    assert not np.array_equal(play.net.weights[0], w)
    assert play.progress.examples == 0


def test_digits_session_shows_test_images_by_class():
    play = Playground(
        Settings(
            dataset="digits",
            cost="cross_entropy",
            hidden=(6,),
            activations=("relu",),
            train_ratio=70,
        )
    )
    assert play.net.sizes == [64, 6, 10]
    described = play.describe()
    assert described["image_labels"] == sorted(described["image_labels"])
    assert len(described["image_labels"]) == 100 and _decoded(described["images"]).size == 6400
    before = play.update()
    for _ in range(3):
        play.epoch()
    msg = play.update()
    assert len(msg["predictions"]) == 100 and "boundary" not in msg
    assert [len(layer) for layer in msg["units"]] == [6, 10]
    assert msg["loss"] < before["loss"]
    assert described["train_size"] + described["test_size"] == 1797
    assert abs(described["train_size"] - 0.7 * 1797) < 2


def test_network_of_the_session_is_a_plain_deltaflow_network():
    play = Playground()
    assert isinstance(play.net, Network)
    assert play.net.sizes == [2, 4, 2, 1]
    assert play.net.activation_names == ["tanh", "tanh", "sigmoid"]


# ---------------------------------------------------------------------- the CLI
def test_cli_without_the_web_extra_says_what_to_install(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["playground", "--no-browser", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "deltaflow: error: the playground needs the web extra; install it with: "
        'pip install "deltaflow[web]"'
    ]


def test_cli_refuses_a_taken_port_and_a_bad_one(capsys):
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["playground", "--no-browser", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot listen on 127.0.0.1:{port}" in err[0]
    assert main(["playground", "--no-browser", "--port", "70000"]) == 2
    assert "--port must be from 0 to 65535" in capsys.readouterr().err
