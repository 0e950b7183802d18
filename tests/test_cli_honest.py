"""The CLI never prints a confident wrong number: held-out rows, labels, scaling, defaults."""

from __future__ import annotations

import errno
import json
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

import deltaflow
from deltaflow import load
from deltaflow.cli import main
from deltaflow.data.dataset import stratified_split_indices
from deltaflow.io import load_extra, save


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def accuracy(text):
    return float(re.search(r"accuracy ([\d.]+)%", text).group(1))


def digits_csv(path, *, header=True, sep=","):
    """The 8x8 digits as scikit-learn ships them (pixels 0..16), label last."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    rows = [
        sep.join(str(int(v)) for v in x) + f"{sep}{t}" for x, t in zip(bunch.data, bunch.target)
    ]
    head = [sep.join([*(f"px{i}" for i in range(64)), "label"])] if header else []
    path.write_text("\n".join(head + rows) + "\n")
    return path


def iris_csv(path):
    from sklearn.datasets import load_iris

    bunch = load_iris()
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for x, t in zip(bunch.data, bunch.target):
        lines.append(",".join(f"{v:g}" for v in x) + "," + bunch.target_names[t])
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- the held-out split
def test_evaluate_scores_the_split_train_held_out(capsys, tmp_path):
    model = tmp_path / "s5.safetensors"
    code, out, err = run(capsys, "train", "-q", "--seed", "5", "--epochs", "5", "--save", model)
    assert code == 0, err
    trained = accuracy(out)
    split = load_extra(model)["split"]
    assert (split["source"], split["seed"], split["n_test"]) == ("digits", 5, 450)

    code, out, err = run(capsys, "evaluate", model)
    assert code == 0, err
    assert accuracy(out) == trained
    assert "the 450 test rows held out from digits at training" in out
    code, out, err = run(capsys, "evaluate", model, "--all-rows")
    assert "all 1797 rows, including the 1347 the model was trained on" in out


def test_evaluate_on_the_training_csv_scores_its_held_out_rows(capsys, tmp_path):
    data = digits_csv(tmp_path / "digits.csv")
    model = tmp_path / "m.safetensors"
    code, out, err = run(capsys, "train", "-q", "--data", data, "--epochs", "5", "--save", model)
    assert code == 0, err
    trained = accuracy(out)
    assert "359 held-out examples" in out  # 0.2 of each class, rounded

    for argv in ([], ["--data", data]):
        code, out, err = run(capsys, "evaluate", model, *argv)
        assert code == 0, err
        assert accuracy(out) == trained
        assert "359 test rows held out from digits.csv" in out
        assert err.startswith("input scaling: the model standardises each column")
    code, out, err = run(capsys, "evaluate", model, "--data", data, "--all-rows")
    assert "all 1797 rows, including the 1438 the model was trained on" in out

    data.write_text(data.read_text().replace("\n0,", "\n1,", 1))  # the file changed
    code, out, err = run(capsys, "evaluate", model)
    assert code == 2 and "rows changed since" in err and len(err.splitlines()) == 1


def test_a_model_file_without_a_training_record_says_which_rows_it_scored(capsys, tmp_path):
    model = tmp_path / "old.safetensors"
    assert main(["train", "-q", "--epochs", "2", "--save", str(model)]) == 0
    net = load(model)
    save(net, model, extra={"input_divisor": 1.0})  # what deltaflow 0.1 wrote
    capsys.readouterr()
    code, out, err = run(capsys, "evaluate", model)
    assert code == 0, err
    assert "the model file does not record its training rows" in out


# ------------------------------------------------------------------------- labels
def test_label_column_is_never_guessed(capsys, tmp_path):
    data = digits_csv(tmp_path / "nohead.csv", header=False)
    code, out, err = run(capsys, "train", "-q", "--data", data)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "which column" in err and "'0,0,5,13,9,1" in err
    code, out, err = run(capsys, "train", "-q", "--data", data, "--label-column", "-1")
    assert code == 0, err
    assert accuracy(out) >= 90

    single = tmp_path / "one.csv"
    single.write_text("label,a,b\n" + "".join(f"3,{i},{i * 2}\n" for i in range(20)))
    code, out, err = run(capsys, "train", "-q", "--data", single)
    assert code == 2 and "single class (3)" in err and err.count("\n") == 1


def test_iris_with_named_labels_trains_and_predicts_names(capsys, tmp_path):
    data = iris_csv(tmp_path / "iris.csv")
    model = tmp_path / "iris.safetensors"
    code, out, err = run(
        capsys, "train", "-q", "--data", data, "--label-column", "species", "--save", model
    )
    assert code == 0, err
    # 27 of the 30 held-out flowers here; one more or less where the BLAS rounds otherwise
    assert accuracy(out) >= 85
    assert load_extra(model)["class_names"] == ["setosa", "versicolor", "virginica"]
    inputs = tmp_path / "in.csv"
    lines = data.read_text().splitlines()
    inputs.write_text(
        "\n".join(",".join(r.split(",")[:4]) for r in (lines[1], lines[51], lines[101]))
    )
    code, out, err = run(capsys, "predict", model, inputs)
    assert code == 0, err
    assert [r.split(",")[0] for r in out.splitlines()] == [
        "prediction",
        "setosa",
        "versicolor",
        "virginica",
    ]


def test_delimiters_are_sniffed_or_given(capsys, tmp_path):
    for name, sep in (("semi.csv", ";"), ("tab.csv", "\t"), ("space.csv", " ")):
        data = digits_csv(tmp_path / name, sep=sep)
        code, out, err = run(capsys, "train", "-q", "--data", data, "--epochs", "3")
        assert code == 0, err
        assert "1437 training" not in out and accuracy(out) >= 85
    data = tmp_path / "semi.csv"
    code, out, err = run(capsys, "train", "-q", "--data", data, "--delimiter", ",")
    assert code == 2 and "1 column" in err and "--delimiter" in err
    code, out, err = run(
        capsys, "train", "-q", "--data", data, "--delimiter", "semicolon", "--epochs", "1"
    )
    assert code == 0, err
    code, out, err = run(capsys, "train", "--data", data, "--delimiter", "ab")
    assert code == 2 and "--delimiter must be one character" in err


# ------------------------------------------------------------------------ scaling
def test_scaling_is_chosen_stored_and_announced(capsys, tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 100)
    X = rng.integers(0, 120, size=(200, 64)) + 120 * y[:, None] * (np.arange(64) < 8)
    pixels = tmp_path / "pix.csv"
    np.savetxt(pixels, np.column_stack([y, X]), fmt="%d", delimiter=",")
    model = tmp_path / "pix.safetensors"
    code, out, err = run(
        capsys, "train", "--data", pixels, "--label-column", "0", "--save", model, "--epochs", "3"
    )
    assert code == 0, err
    assert "the model divides the inputs by 255" in err
    assert load_extra(model)["scale"]["kind"] == "pixels"

    raw = tmp_path / "raw.csv"
    np.savetxt(raw, X[:5], fmt="%d", delimiter=",")
    scaled = tmp_path / "scaled.csv"
    np.savetxt(scaled, X[:5] / 255.0, delimiter=",")
    code, out, err = run(capsys, "predict", model, raw)
    assert code == 0 and err == "input scaling: the model divides the inputs by 255\n"
    code, out, err = run(capsys, "predict", model, scaled)
    assert code == 0 and "warning: every input lies within [0, 1]" in err

    for scale, kind in (("minmax", "minmax"), ("none", "none"), ("standard", "standard")):
        m = tmp_path / f"{scale}.safetensors"
        argv = ["train", "-q", "--data", pixels, "--label-column", "0", "--epochs", "1"]
        assert main([*map(str, argv), "--scale", scale, "--save", str(m)]) == 0
        stored = load_extra(m)["scale"]
        assert stored["kind"] == kind and stored["divisor"] == 1.0
        if kind == "minmax":  # fitted on the training rows alone
            train, _ = stratified_split_indices(y, 0.2, 0)
            np.testing.assert_array_equal(stored["shift"], X[train].min(axis=0))
            np.testing.assert_array_equal(
                stored["spread"], X[train].max(axis=0) - X[train].min(axis=0)
            )
    capsys.readouterr()
    code, out, err = run(capsys, "predict", tmp_path / "standard.safetensors", scaled)
    assert "warning: the inputs lie far from the training data" in err


# ----------------------------------------------------------------------- defaults
DEFAULTS = [
    ["--layers", "64,32,16,10", "--activation", "tanh,relu,sigmoid"],
    ["--optimizer", "momentum"],
    ["--optimizer", "adam"],
    ["--activation", "relu", "--cost", "cross_entropy"],
    ["--layers", "64,64,10", "--activation", "tanh"],
    ["--optimizer", "nesterov", "--layers", "64,128,10", "--activation", "leaky_relu",
     "--cost", "cross_entropy"],
    [],
]  # fmt: skip


@pytest.mark.parametrize("argv", DEFAULTS, ids=lambda a: " ".join(a) or "notes")
def test_the_defaults_learn(capsys, argv):
    code, out, err = run(capsys, "train", "-q", *argv)
    assert code == 0, err
    assert accuracy(out) >= 90
    assert "warning" not in err


def test_lr_auto_and_the_did_not_learn_warning(capsys, tmp_path):
    code, out, err = run(capsys, "train", "--lr", "auto", "--epochs", "3")
    assert code == 0, err
    picked = float(re.search(r"picked alpha=([\d.e-]+)", err).group(1))
    assert 1e-4 <= picked <= 10 and f"(alpha={picked:g})" in err
    code, out, err = run(capsys, "train", "-q", "--lr", "1e-6", "--epochs", "2")
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1 and "training did not learn" in lines[0] and "--lr auto" in lines[0]
    help_text = " ".join(run(capsys, "train", "--help")[1].split())
    assert "or 'auto': a short learning-rate range test" in help_text
    assert "sigmoid units, squared error (the notes' network): sgd 3, momentum 0.05" in help_text


# --------------------------------------------------------------- checked up front
@pytest.mark.parametrize(
    "argv,message",
    [
        (["--optimizer", "adamw"], "--optimizer must be one of"),
        (["--lr", "-1"], "--lr must be a positive number or 'auto'"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--validation-split", "1.5"], "--validation-split must be in [0, 1)"),
        (["--epochs", "-3"], "--epochs must be at least 1"),
        (["--history", "h.txt"], "--history must name a .csv or .json"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--activation", "relu,relu,relu"], "activation has 3 names"),
        (["--cost", "cross_entropy", "--activation", "relu,tanh"], "needs a softmax output"),
    ],
)
def test_every_option_is_checked_before_any_work(capsys, tmp_path, argv, message):
    code, out, err = run(capsys, "train", *argv)  # no -q: nothing else may be printed
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err


def test_an_os_error_during_the_work_is_one_line(capsys, tmp_path, monkeypatch):
    import deltaflow.io as dio

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dio.os, "fsync", full)
    model = tmp_path / "m.safetensors"
    code, out, err = run(capsys, "train", "-q", "--epochs", "1", "--save", model)
    assert code == 2
    assert err == "deltaflow: error: No space left on device\n"
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------- runs and records
def test_resume_extends_a_finished_run_bit_for_bit(capsys, tmp_path):
    ck = tmp_path / "ck"
    base = ["train", "-q", "--epochs", "3"]
    assert main([*base, "--checkpoint-dir", str(ck), "--save", str(tmp_path / "a.st")]) == 0
    capsys.readouterr()
    code, out, err = run(
        capsys, "train", "-q", "--resume", ck, "--epochs", "5", "--save", tmp_path / "b.st"
    )
    assert code == 0, err
    assert "2 epochs here, 5 in all" in out
    assert main(["train", "-q", "--epochs", "5", "--save", str(tmp_path / "c.st")]) == 0
    b, c = load(tmp_path / "b.st"), load(tmp_path / "c.st")
    for x, y in zip(b.weights + b.biases, c.weights + c.biases):
        np.testing.assert_array_equal(x, y)


def test_a_damaged_checkpoint_warns_once_with_and_without_quiet(capsys, tmp_path):
    ck = tmp_path / "ck"
    assert main(["train", "-q", "--epochs", "3", "--checkpoint-dir", str(ck)]) == 0
    newest = ck / "checkpoint-000003.safetensors"
    data = bytearray(newest.read_bytes())
    data[60] ^= 0xFF
    newest.write_bytes(bytes(data))
    capsys.readouterr()
    for quiet in ([], ["-q"]):
        shutil.copytree(ck, tmp_path / f"ck{len(quiet)}")
        code, out, err = run(capsys, "train", *quiet, "--resume", tmp_path / f"ck{len(quiet)}")
        assert code == 0, err
        assert err.count("warning:") == 1, err


def test_history_files_and_threads(capsys, tmp_path):
    for name in ("h.csv", "h.json"):
        path = tmp_path / name
        code, out, err = run(
            capsys, "train", "-q", "--epochs", "2", "--threads", "1", "--history", path
        )
        assert code == 0, err
        if name.endswith(".json"):
            record = json.loads(path.read_text())
            assert record["epoch"] == [1, 2] and len(record["cost"]) == 2
        else:
            lines = path.read_text().splitlines()
            assert lines[0].startswith("epoch,cost,accuracy") and len(lines) == 3
            assert lines[2].startswith("2,")


def test_bench_without_pytorch_runs_the_others(capsys, monkeypatch):
    import deltaflow.cli.bench as cli_bench

    real = cli_bench.available
    monkeypatch.setattr(cli_bench, "available", lambda name: name != "torch" and real(name))
    argv = ["bench", "--quick", "--arch", "784-10:sigmoid:squared_error", "--batch", "8"]
    code, out, err = run(capsys, *argv, "--contenders", "torch", "--repeats", "1")
    assert code == 0, err
    assert "PyTorch is not installed" in err
    assert "deltaflow" in out


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out == f"deltaflow {deltaflow.__version__}\n"


# --------------------------------------------------------------------- a release
def test_the_wheel_installs_and_trains_outside_the_repository(tmp_path):
    pytest.importorskip("build")
    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # build from a copy: nothing is written into the repository
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(root / name, source / name)
    shutil.copytree(root / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)]
    subprocess.run([*build, str(source)], check=True, capture_output=True)
    wheel = next(dist.glob("deltaflow-*.whl"))
    assert any(n.endswith("/LICENSE") for n in zipfile.ZipFile(wheel).namelist())
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True)  # numpy and the rest from here
    python = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run(
        [*pip, "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [str(env_dir / "bin" / "deltaflow"), "train", "-q", "--epochs", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": str(env_dir / "bin"), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    where = subprocess.run(
        [str(python), "-c", "import deltaflow; print(deltaflow.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": str(env_dir / "bin"), "HOME": str(tmp_path)},
    ).stdout
    assert str(env_dir) in where
