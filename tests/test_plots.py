"""Tests for deltaflow.plots and the picture options of `deltaflow train`.

Every picture is drawn from a real (short) training run, written as a file and checked
to be a PNG of a sensible size whose drawn data are the numbers it was given.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from deltaflow import ConfigError, DataError, Network, plots  # noqa: E402
from deltaflow.cli import main  # noqa: E402
from deltaflow.data import load_digits  # noqa: E402
from deltaflow.training.loop import History  # noqa: E402


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_sensible_png(path: Path) -> None:
    width, height = png_size(path)
    assert 300 <= width <= 2500 and 250 <= height <= 2500, (width, height)
    assert path.stat().st_size > 8_000  # real content, not a blank canvas


@pytest.fixture(scope="module")
def run():
    """A short real training run on the digits, recording the per-layer |delta|."""
    data = load_digits()
    net = Network([64, 16, 16, 10], seed=0)
    history = net.fit(
        data.X_train,
        data.y_train,
        epochs=4,
        batch_size=10,
        learning_rate=3.0,
        validation_split=0.1,
        track_delta_norms=True,
        seed=0,
    )
    return data, net, history


def test_learning_curves(run, tmp_path: Path) -> None:
    _, _, history = run
    fig = plots.plot_history(history, tmp_path / "curves.png", title="digits")
    assert_sensible_png(tmp_path / "curves.png")
    cost_ax, acc_ax = fig.axes
    assert (cost_ax.get_xlabel(), cost_ax.get_ylabel()) == ("epoch", "cost C")
    assert (acc_ax.get_xlabel(), acc_ax.get_ylabel()) == ("epoch", "accuracy (%)")
    train, val = cost_ax.lines[:2]
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_allclose(train.get_ydata(), history.cost)
    np.testing.assert_allclose(val.get_ydata(), history.val_cost)
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), np.array(history.val_accuracy) * 100)
    legend = [t.get_text() for t in cost_ax.get_legend().get_texts()]
    assert legend[:2] == ["training (mean over the epoch)", "validation"]
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["training", "validation"]


def test_regression_history_has_one_panel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (60, 2))
    net = Network([2, 4, 1], ["tanh", "identity"], seed=0)
    history = net.fit(X, X[:, 0] * X[:, 1], epochs=3, learning_rate=0.1)
    fig = plots.plot_history(history, tmp_path / "r.png")
    assert len(fig.axes) == 1
    assert_sensible_png(tmp_path / "r.png")


def test_first_layer_weights(run, tmp_path: Path) -> None:
    _, net, _ = run
    fig = plots.plot_first_layer(net, tmp_path / "w.png", image_shape=(8, 8))
    assert_sensible_png(tmp_path / "w.png")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 16
    for j, im in enumerate(images):
        np.testing.assert_array_equal(im.get_array(), net.weights[0][:, j].reshape(8, 8))
        lo, hi = im.get_clim()
        assert lo == -hi == -np.abs(net.weights[0][:, j]).max()  # symmetric around 0
    # the default is the square image when S_0 is a square
    assert len(plots.plot_first_layer(net, max_units=5).axes) == 6  # a 3x2 grid, one blank


def test_confusion_matrix(run, tmp_path: Path) -> None:
    data, net, _ = run
    pred = net.predict(data.X_test)
    fig = plots.plot_confusion(data.y_test, pred, tmp_path / "c.png", n_classes=10)
    assert_sensible_png(tmp_path / "c.png")
    ax = fig.axes[0]
    want = np.zeros((10, 10), dtype=int)
    for t, p in zip(data.y_test, pred):
        want[t, p] += 1
    np.testing.assert_array_equal(ax.images[0].get_array(), want)
    assert sum(int(t.get_text()) for t in ax.texts) == data.y_test.size
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert f"accuracy {np.mean(pred == data.y_test):.2%}" in ax.get_title()


def test_delta_norms(run, tmp_path: Path) -> None:
    _, _, history = run
    fig = plots.plot_delta_norms(history, tmp_path / "d.png")
    assert_sensible_png(tmp_path / "d.png")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    norms = np.array(history.delta_norms)
    assert norms.shape == (4, 3)
    for l, line in enumerate(ax.lines):
        np.testing.assert_allclose(line.get_ydata(), norms[:, l])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("layer 1 (hidden)") and labels[-1].startswith("layer 3 (output)")


def test_other_formats_and_no_path(run, tmp_path: Path) -> None:
    _, _, history = run
    plots.plot_history(history, tmp_path / "c.svg")
    assert (tmp_path / "c.svg").read_bytes().lstrip().startswith(b"<?xml")
    assert plots.plot_history(history).axes  # a Figure, nothing written


def test_plot_errors(run, tmp_path: Path) -> None:
    _, net, history = run
    with pytest.raises(ConfigError, match=r"\.png, \.pdf or \.svg"):
        plots.plot_history(history, tmp_path / "c.jpg")
    with pytest.raises(DataError, match="does not exist"):
        plots.plot_history(history, tmp_path / "no" / "c.png")
    with pytest.raises(DataError, match="empty"):
        plots.plot_history(History())
    with pytest.raises(DataError, match="not a square image"):
        plots.plot_first_layer(Network([10, 3, 2]))
    with pytest.raises(DataError, match="pixels"):
        plots.plot_first_layer(net, image_shape=(4, 4))
    with pytest.raises(ConfigError, match="track_delta_norms"):
        plots.plot_delta_norms(History())
    with pytest.raises(DataError, match="same length"):
        plots.plot_confusion([0, 1], [0])


def test_missing_matplotlib_is_one_line(run, monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(ConfigError, match=r"pip install 'deltaflow\[plot\]'"):
        plots.plot_history(run[2])
    assert main(["train", "--epochs", "1", "--plot", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'deltaflow[plot]'" in err
    assert not (tmp_path / "c.png").exists()


def test_cli_train_draws_every_picture(tmp_path: Path, capsys) -> None:
    paths = {k: tmp_path / f"{k}.png" for k in ("curves", "weights", "confusion", "deltas")}
    argv = [
        "train", "--epochs", "2", "--layers", "64,12,12,10", "-q", "--delta-table",
        "--plot", str(paths["curves"]), "--plot-weights", str(paths["weights"]),
        "--plot-confusion", str(paths["confusion"]), "--plot-deltas", str(paths["deltas"]),
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    for path in paths.values():
        assert_sensible_png(path)
        assert str(path) in out
    table = out[out.index("mean |delta^(l)| per example") :].splitlines()[1:]
    assert table[0].split() == ["epoch", "delta^(1)", "delta^(2)", "delta^(3)"]
    assert [row.split()[0] for row in table[2:4]] == ["1", "2"]
    assert all(float(v) > 0 for v in table[2].split()[1:])
    # an existing picture is refused before training, unless --force
    assert main(argv) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["train", "--epochs", "1", "-q", "--plot", str(paths["curves"]),
                 "--plot-deltas", str(paths["curves"]), "--force"]) == 2  # fmt: skip
    assert "same file" in capsys.readouterr().err
