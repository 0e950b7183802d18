"""The command line through ``main(argv)``: the jobs a user runs, and bad input."""

from __future__ import annotations

import gzip
import re
import struct

import numpy as np
import pytest

from deltaflow import load
from deltaflow.cli import build_parser, main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_with_no_arguments_reaches_95_percent(capsys, tmp_path):
    code, out, err = run(capsys, "train", "--save", str(tmp_path / "m.safetensors"))
    assert code == 0, err
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", out).group(1))
    assert accuracy >= 95.0
    assert "epoch 30/30" in err  # the progress bar's last state
    net = load(tmp_path / "m.safetensors")
    assert net.sizes == [64, 30, 10] and net.activation_names == ["sigmoid", "sigmoid"]

    code, out, err = run(capsys, "evaluate", str(tmp_path / "m.safetensors"))
    assert code == 0, err
    assert f"accuracy {accuracy:.2f}%" in out


def test_train_options_and_predict(capsys, tmp_path):
    model = tmp_path / "relu.safetensors"
    code, out, err = run(
        capsys,
        "train",
        "--layers",
        "64,32,10",
        "--activation",
        "relu",
        "--cost",
        "cross_entropy",
        "--optimizer",
        "adam",
        "--epochs",
        "8",
        "--batch-size",
        "32",
        "--dtype",
        "float32",
        "--seed",
        "3",
        "--quiet",
        "--save",
        str(model),
    )
    assert code == 0, err
    assert err == ""  # --quiet
    net = load(model)
    assert net.dtype == np.float32 and net.activation_names == ["relu", "softmax"]

    from deltaflow.data import load_digits

    data = load_digits()
    inputs = tmp_path / "in.csv"
    np.savetxt(  # raw pixels 0..16, as scikit-learn ships them
        inputs,
        np.round(data.X_test[:20] * 16),
        fmt="%d",
        delimiter=",",
        header=",".join(f"px{i}" for i in range(64)),
        comments="",
    )
    preds = tmp_path / "pred.csv"
    code, out, err = run(capsys, "predict", str(model), str(inputs), "-o", str(preds))
    assert code == 0, err
    assert err == "input scaling: the model divides the inputs by 16\n"
    lines = preds.read_text().splitlines()
    assert lines[0].split(",")[:2] == ["prediction", "a0"] and len(lines) == 21
    table = np.loadtxt(preds, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(table[:, 0], net.predict(data.X_test[:20]))
    np.testing.assert_allclose(table[:, 1:].sum(axis=1), 1.0, rtol=1e-5)  # softmax rows

    code, out, err = run(capsys, "predict", str(model), str(inputs), "-o", str(preds))
    assert code == 2 and "already exists; pass --force" in err


def test_train_on_csv_and_npz(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(300, 6))
    y = (X[:, 0] > 127).astype(int)
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.column_stack([X, y]), fmt="%d", delimiter=",")
    code, out, err = run(
        capsys,
        "train",
        "--data",
        str(csv),
        "--label-column",
        "-1",
        "--epochs",
        "40",
        "--cost",
        "cross_entropy",
        "--activation",
        "tanh",
    )
    assert code == 0, err
    assert "standardises each column" in err  # six integer columns are not images
    assert float(re.search(r"test accuracy ([\d.]+)%", out).group(1)) >= 90
    npz = tmp_path / "d.npz"
    np.savez(npz, X=X / 255.0, y=y)
    code, out, err = run(capsys, "train", "--data", str(npz), "--epochs", "2", "-q")
    assert code == 0 and "test accuracy" in out


def _idx(path, array, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_train_on_mnist_directory(capsys, tmp_path):
    for prefix, n in (("train", 60), ("t10k", 20)):
        labels = np.arange(n) % 10
        images = np.zeros((n, 28, 28))
        images[np.arange(n), labels, :] = 255  # the label is a lit row: learnable
        _idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images, 0x803)
        _idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels, 0x801)
    code, out, err = run(
        capsys,
        "train",
        "--data",
        "mnist",
        "--data-dir",
        str(tmp_path),
        "--epochs",
        "100",
        "--validation-split",
        "0",
    )
    assert code == 0, err
    assert "60 training and 20 test examples" in err
    assert float(re.search(r"test accuracy ([\d.]+)%", out).group(1)) >= 95.0


def test_gradcheck_command(capsys):
    code, out, err = run(
        capsys,
        "gradcheck",
        "--layers",
        "4,6,5,3",
        "--activation",
        "tanh",
        "--cost",
        "cross_entropy",
    )
    assert code == 0, err
    assert "PASS" in out
    errors = [float(x) for x in re.findall(r"\d\.\d+e[-+]\d+", out)]
    assert len(errors) >= 6 and max(errors) < 1e-6


def test_every_command_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    assert {"train", "evaluate", "predict", "gradcheck"} <= set(commands)
    for name in commands:
        code, out, _ = run(capsys, name, "--help")
        assert code == 0 and "usage: deltaflow " + name in out
        for action in commands[name]._actions:  # noqa: SLF001
            assert action.help, f"{name} {action.option_strings} has no help"


def _bad_files(tmp_path):
    (tmp_path / "bad.csv").write_text("1,2,3\n4,5\n")
    (tmp_path / "notmodel.safetensors").write_text("hello")
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "exists.safetensors").write_text("keep me")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--layers", "64,0,10"], "each at least 1"),
        (["train", "--layers", "60,30,10"], "starts with 60 inputs but the data has 64"),
        (["train", "--layers", "64,x,10"], "whole numbers separated by commas"),
        (["train", "--activation", "swish"], "unknown activation 'swish'"),
        (["train", "--cost", "hinge"], "unknown cost 'hinge'"),
        (["train", "--optimizer", "rmsprop"], "--optimizer must be one of sgd"),
        (["train", "--epochs", "0"], "--epochs must be at least 1"),
        (["train", "--dtype", "int8"], "dtype must be"),
        (["train", "--layers", "64,30,5"], "label 9 but the output layer has 5"),
        (
            ["train", "--data", "{tmp}/bad.csv", "--label-column", "0"],
            "line 2 has 2 fields, expected 3",
        ),
        (["train", "--data", "{tmp}/missing.csv"], "no such file"),
        (["train", "--data", "foo"], "unknown data source"),
        (["train", "--data", "mnist", "--data-dir", "{tmp}/emptydir"], "train-images-idx3-ubyte"),
        (["train", "--save", "{tmp}/exists.safetensors"], "already exists; pass --force"),
        (["train", "--save", "{tmp}/nodir/m.safetensors"], "does not exist"),
        (["evaluate", "{tmp}/notmodel.safetensors"], "not a deltaflow model file"),
        (["evaluate", "{tmp}/missing.safetensors"], "no such model file"),
        (["predict", "{tmp}/notmodel.safetensors", "{tmp}/bad.csv"], "not a deltaflow model"),
        (["train", "--epochs", "three"], "invalid int value"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, argv, message):
    _bad_files(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = run(capsys, *argv, *(["-q"] if argv[0] == "train" else []))
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "exists.safetensors").read_text() == "keep me"


def test_predict_rejects_wrong_feature_count(capsys, tmp_path):
    model = tmp_path / "m.safetensors"
    assert main(["train", "--epochs", "1", "-q", "--save", str(model)]) == 0
    (tmp_path / "x.csv").write_text("1,2,3\n")
    code, out, err = run(capsys, "predict", str(model), str(tmp_path / "x.csv"))
    assert code == 2 and "3 features but the input layer has 64" in err


def test_train_with_lbfgs_runs_full_batch_and_refuses_what_it_lacks(capsys, tmp_path):
    code, out, err = run(capsys, "train", "--optimizer", "lbfgs", "--epochs", "40")
    assert code == 0, err
    assert "lbfgs, full batch" in err  # the banner goes to stderr with the progress bar
    assert float(re.search(r"test accuracy ([\d.]+)%", out).group(1)) >= 80.0
    for extra, word in (
        (["--checkpoint-dir", str(tmp_path / "ck")], "checkpoints"),
        (["--delta-table"], "delta norms"),
        (["--lr", "auto"], "line search"),
    ):
        code, out, err = run(capsys, "train", "--optimizer", "lbfgs", *extra)
        assert code == 2 and out == "", (extra, out)
        assert len(err.strip().splitlines()) == 1 and word in err, err
    assert not (tmp_path / "ck").exists()
