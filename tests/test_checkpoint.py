"""Checkpoints: bit-identical resume, rotation, atomic writes, damaged files, refusals."""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import deltaflow.io as dio
from deltaflow import ConfigError, DivergenceError, ModelFileError, Network, load, save
from deltaflow.data import load_digits
from deltaflow.training.checkpoint import (
    CheckpointWarning,
    list_checkpoints,
    load_latest,
    read_checkpoint,
)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    # a few hundred rows keep each epoch a few milliseconds
    return d.X_train[:400], d.y_train[:400]


class Interrupt(Exception):
    """Stands in for a crash after a given epoch's callbacks."""


def crash_after(epoch):
    def cb(rec):
        if rec.epoch == epoch:
            raise Interrupt

    return cb


def params(net):
    return net.weights + net.biases


def bit_identical(a, b):
    return all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(params(a), params(b))
    )


SETTINGS = {
    "sgd": dict(optimizer="sgd", learning_rate=0.5),
    "momentum": dict(optimizer="momentum", learning_rate=0.05),
    "nesterov": dict(optimizer="nesterov", learning_rate=0.05, weight_decay=1e-4),
    "adam": dict(optimizer="adam", learning_rate=0.01, schedule="cosine"),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, digits, name, dtype):
    X, y = digits
    kw = dict(epochs=7, batch_size=16, validation_split=0.2, **SETTINGS[name])
    arch = ([64, 12, 10], "tanh", "cross_entropy")
    ref = Network(*arch, dtype=dtype, seed=5)
    href = ref.fit(X, y, **kw)

    net = Network(*arch, dtype=dtype, seed=5)
    with pytest.raises(Interrupt):
        net.fit(X, y, checkpoint_dir=tmp_path, callbacks=[crash_after(3)], **kw)
    # crash again after resuming, at another epoch
    net = Network(*arch, dtype=dtype, seed=5)
    with pytest.raises(Interrupt):
        net.fit(X, y, checkpoint_dir=tmp_path, resume=True, callbacks=[crash_after(5)], **kw)
    assert [e for e, _ in list_checkpoints(tmp_path)] == [4, 3]

    net = Network(*arch, dtype=dtype, seed=5)
    seen = []
    h = net.fit(X, y, checkpoint_dir=tmp_path, resume=True, callbacks=[seen.append], **kw)
    assert bit_identical(net, ref)
    assert [r.epoch for r in seen] == [5, 6, 7]  # only the epochs still to run
    assert h.epoch == list(range(1, 8))
    assert h.cost == href.cost and h.val_cost == href.val_cost
    assert h.val_accuracy == href.val_accuracy and h.learning_rate == href.learning_rate


def test_checkpoint_holds_the_whole_state(tmp_path, digits):
    X, y = digits
    net = Network([64, 9, 10], seed=1)
    net.fit(
        X,
        y,
        epochs=3,
        batch_size=50,
        optimizer="adam",
        learning_rate=0.01,
        validation_split=0.25,
        checkpoint_dir=tmp_path,
        checkpoint_extra={"note": "hi"},
    )
    ckpt = load_latest(tmp_path)
    assert ckpt.epoch == 3 and ckpt.path.name == "checkpoint-000003.safetensors"
    assert bit_identical(ckpt.network(), net)
    assert ckpt.optimizer["t"] == 3 * 6  # 300 training rows in batches of 50
    assert len(ckpt.optimizer["m"]) == len(ckpt.optimizer["v"]) == 4
    assert ckpt.rng_state == net.rng.bit_generator.state
    assert sorted(ckpt.order.tolist()) == list(range(300))
    assert sorted(ckpt.split.tolist()) == list(range(400))
    assert ckpt.history["epoch"] == [1, 2, 3] and ckpt.state["finished"] is True
    assert ckpt.config["optimizer"] == "adam" and ckpt.config["batch_size"] == 50
    assert ckpt.extra == {"note": "hi"}


def test_keeps_the_newest_two_and_every_n_epochs(tmp_path, digits):
    X, y = digits
    net = Network([64, 8, 10], seed=0)
    written = []
    orig = dio.atomic_write_bytes

    def spy(path, data):
        written.append(Path(path).name)
        orig(path, data)

    import deltaflow.training.checkpoint as ck

    ck_write = ck.atomic_write_bytes
    ck.atomic_write_bytes = spy
    try:
        net.fit(
            X,
            y,
            epochs=7,
            batch_size=40,
            learning_rate=1.0,
            checkpoint_dir=tmp_path,
            checkpoint_every=3,
        )
    finally:
        ck.atomic_write_bytes = ck_write
    # every third epoch and the last one
    assert written == [f"checkpoint-{e:06d}.safetensors" for e in (3, 6, 7)]
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint-000006.safetensors",
        "checkpoint-000007.safetensors",
    ]


def test_resuming_a_finished_run_changes_nothing(tmp_path, digits):
    X, y = digits
    kw = dict(
        epochs=4,
        batch_size=20,
        learning_rate=0.5,
        validation_split=0.1,
        early_stopping=True,
        patience=1,
        checkpoint_dir=tmp_path,
    )
    a = Network([64, 8, 10], seed=2)
    ha = a.fit(X, y, **kw)
    b = Network([64, 8, 10], seed=2)
    seen = []
    hb = b.fit(X, y, resume=True, callbacks=[seen.append], **kw)
    assert seen == [] and bit_identical(a, b)
    assert hb.as_dict() == ha.as_dict()


def test_early_stopping_state_survives_a_resume(tmp_path, digits):
    X, y = digits
    kw = dict(
        epochs=20,
        batch_size=20,
        learning_rate=8.0,
        validation_split=0.3,
        early_stopping=True,
        patience=2,
        min_delta=1e-3,
    )
    ref = Network([64, 10, 10], seed=4)
    href = ref.fit(X, y, **kw)
    assert href.stopped_early  # the test needs a run that stops early
    net = Network([64, 10, 10], seed=4)
    with pytest.raises(Interrupt):
        net.fit(X, y, checkpoint_dir=tmp_path, callbacks=[crash_after(len(href) - 1)], **kw)
    net = Network([64, 10, 10], seed=4)
    h = net.fit(X, y, checkpoint_dir=tmp_path, resume=True, **kw)
    assert bit_identical(net, ref)  # the best epoch's parameters, restored
    assert h.best_epoch == href.best_epoch and h.stopped_early


def flip_byte(path, offset_from_end):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["bitflip", "truncate", "empty", "garbage_header"])
def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path, digits, damage):
    X, y = digits
    kw = dict(epochs=6, batch_size=20, learning_rate=0.05, optimizer="momentum")
    ref = Network([64, 8, 10], seed=9)
    ref.fit(X, y, **kw)
    net = Network([64, 8, 10], seed=9)
    with pytest.raises(Interrupt):  # after the checkpoint of epoch 4
        net.fit(X, y, checkpoint_dir=tmp_path, callbacks=[crash_after(5)], **kw)
    newest = tmp_path / "checkpoint-000004.safetensors"
    if damage == "bitflip":  # a flipped bit inside a weight: only the checksum sees it
        flip_byte(newest, 100)
    elif damage == "truncate":
        newest.write_bytes(newest.read_bytes()[:-37])
    elif damage == "empty":
        newest.write_bytes(b"")
    else:
        newest.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.warns(
        CheckpointWarning,
        match=r"checkpoint-000004.*resuming from "
        r"checkpoint-000003.safetensors \(epoch 3\)",
    ):
        net = Network([64, 8, 10], seed=9)
        net.fit(X, y, checkpoint_dir=tmp_path, resume=True, **kw)
    assert bit_identical(net, ref)
    # the run went on past the damaged file, which rotation then removed
    assert [read_checkpoint(p).epoch for _, p in list_checkpoints(tmp_path)] == [6, 5]


def test_bitflip_is_reported_as_a_checksum_mismatch(tmp_path, digits):
    X, y = digits
    Network([64, 5, 10], seed=0).fit(X, y, epochs=1, checkpoint_dir=tmp_path)
    path = tmp_path / "checkpoint-000001.safetensors"
    flip_byte(path, 10)
    with pytest.raises(ModelFileError, match="corrupt: its checksum does not match"):
        read_checkpoint(path)
    with pytest.raises(ModelFileError, match="no valid checkpoint in .*checksum"):
        load_latest(tmp_path)


def test_no_checkpoint_means_a_fresh_start_and_existing_ones_are_not_overwritten(tmp_path, digits):
    X, y = digits
    kw = dict(epochs=2, batch_size=40, learning_rate=1.0)
    a = Network([64, 6, 10], seed=1)
    a.fit(X, y, checkpoint_dir=tmp_path / "new", resume=True, **kw)  # nothing to resume
    b = Network([64, 6, 10], seed=1)
    b.fit(X, y, **kw)
    assert bit_identical(a, b)
    before = {p.name: p.read_bytes() for p in (tmp_path / "new").iterdir()}
    with pytest.raises(ConfigError, match="already holds checkpoints.*resume=True"):
        Network([64, 6, 10], seed=1).fit(X, y, checkpoint_dir=tmp_path / "new", **kw)
    assert {p.name: p.read_bytes() for p in (tmp_path / "new").iterdir()} == before


def test_resume_with_other_settings_data_or_network_is_refused(tmp_path, digits):
    X, y = digits
    kw = dict(epochs=3, batch_size=40, learning_rate=1.0, checkpoint_dir=tmp_path)
    net = Network([64, 6, 10], seed=1)
    with pytest.raises(Interrupt):
        net.fit(X, y, callbacks=[crash_after(2)], **kw)
    with pytest.raises(ConfigError, match=r"batch_size=40 \(now 20\)"):
        Network([64, 6, 10], seed=1).fit(X, y, resume=True, **{**kw, "batch_size": 20})
    with pytest.raises(ConfigError, match="other training data"):
        Network([64, 6, 10], seed=1).fit(X[:-1], y[:-1], resume=True, **kw)
    with pytest.raises(ConfigError, match=r"sizes \[64, 6, 10\].*this network has \[64, 7, 10\]"):
        Network([64, 7, 10], seed=1).fit(X, y, resume=True, **kw)
    with pytest.raises(ConfigError, match="checkpoint_every"):
        Network([64, 6, 10], seed=1).fit(X, y, checkpoint_every=0, **kw)


def test_sample_weights_are_part_of_the_checkpointed_data(tmp_path, digits):
    X, y = digits
    w = np.linspace(0.5, 2.0, X.shape[0])
    kw = dict(epochs=3, batch_size=40, learning_rate=1.0, checkpoint_dir=tmp_path)
    ref = Network([64, 6, 10], seed=1)
    ref.fit(X, y, sample_weight=w, epochs=3, batch_size=40, learning_rate=1.0)
    with pytest.raises(Interrupt):
        Network([64, 6, 10], seed=1).fit(X, y, sample_weight=w, callbacks=[crash_after(2)], **kw)
    with pytest.raises(ConfigError, match="other training data"):
        Network([64, 6, 10], seed=1).fit(X, y, sample_weight=w[::-1], resume=True, **kw)
    net = Network([64, 6, 10], seed=1)
    net.fit(X, y, sample_weight=w, resume=True, **kw)
    assert bit_identical(net, ref)


def test_stale_temporary_files_are_cleaned_and_failed_writes_keep_the_old_file(
    tmp_path, digits, monkeypatch
):
    X, y = digits
    kw = dict(epochs=2, batch_size=40, learning_rate=1.0, checkpoint_dir=tmp_path)
    net = Network([64, 6, 10], seed=1)
    with pytest.raises(Interrupt):
        net.fit(X, y, callbacks=[crash_after(2)], **kw)
    # what a SIGKILL between mkstemp and rename leaves behind
    stale = tmp_path / ".checkpoint-000002.safetensors.abc123.tmp"
    stale.write_bytes(b"half a file")
    good = (tmp_path / "checkpoint-000001.safetensors").read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        Network([64, 6, 10], seed=1).fit(X, y, resume=True, **kw)
    monkeypatch.undo()
    # the failed write left the last good checkpoint alone and no temporary file
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-000001.safetensors"]
    assert (tmp_path / "checkpoint-000001.safetensors").read_bytes() == good


def test_model_files_and_checkpoints_are_not_confused(tmp_path, digits):
    X, y = digits
    net = Network([64, 5, 10], seed=0)
    net.fit(X, y, epochs=1, checkpoint_dir=tmp_path)
    ckpt_file = tmp_path / "checkpoint-000001.safetensors"
    with pytest.raises(ModelFileError, match="not a deltaflow model"):
        load(ckpt_file)
    save(net, tmp_path / "model.safetensors")
    with pytest.raises(ModelFileError, match="not a deltaflow checkpoint"):
        read_checkpoint(tmp_path / "model.safetensors")
    with pytest.raises(ModelFileError, match="is a file, not a directory"):
        load_latest(ckpt_file)


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, digits):
    X, y = digits
    net = Network([64, 16, 10], ["tanh", "identity"], seed=0)
    with pytest.raises(DivergenceError, match=r"epoch \d+, batch \d+.*smaller learning rate") as e:
        net.fit(
            X,
            y,
            epochs=50,
            batch_size=10,
            learning_rate=0.3,
            checkpoint_dir=tmp_path,
            schedule=lambda e: 0.01 if e < 2 else 5.0,
        )
    assert all(np.isfinite(p).all() for p in params(net))
    diverged = int(re.search(r"epoch (\d+)", str(e.value)).group(1))
    assert diverged > 2  # the two gentle epochs went well
    ckpt = load_latest(tmp_path)
    assert ckpt.epoch == diverged - 1
    assert all(np.isfinite(p).all() for p in ckpt.weights + ckpt.biases)
    assert bit_identical(ckpt.network(), net)  # the epoch-start snapshot is that checkpoint


def test_checkpoint_metadata_is_json_and_checksummed(tmp_path, digits):
    X, y = digits
    Network([64, 5, 10], seed=0).fit(X, y, epochs=1, checkpoint_dir=tmp_path)
    path = tmp_path / "checkpoint-000001.safetensors"
    _, meta = dio.read_safetensors(path)
    assert meta["format"] == "deltaflow-checkpoint" and len(meta["checksum"]) == 64
    assert json.loads(meta["epoch"]) == 1
    # editing one metadata value, even keeping the file well-formed, is detected
    tensors, _ = dio.read_safetensors(path)
    from safetensors.numpy import save as st_save

    path.write_bytes(st_save(tensors, metadata={**meta, "epoch": "7"}))
    with pytest.raises(ModelFileError, match="checksum does not match"):
        read_checkpoint(path)


# ---------------------------------------------------------------- the command line, end to end
TRAIN = ["train", "--quiet", "--layers", "64,32,10", "--optimizer", "adam", "--epochs", "40"]


def newest_epoch(directory):
    found = list_checkpoints(directory)
    return found[0][0] if found else 0


def kill_when(proc, directory, ready, timeout=60.0):
    """SIGKILL ``proc`` as soon as ``ready(directory)`` holds; return what it saw."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended (status {proc.returncode}) before the kill")
        seen = ready(directory)
        if seen:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return seen
        time.sleep(0.0005)
    proc.kill()
    raise AssertionError("the kill condition never came")


def temp_files(directory):
    try:
        return {
            n for n in os.listdir(directory) if n.startswith(".checkpoint-") and n.endswith(".tmp")
        }
    except FileNotFoundError:
        return set()


def writing_now(stale):
    """A checkpoint being written: a new temporary file exists, its rename has not happened."""
    return lambda directory: temp_files(directory) - stale


def test_sigkill_at_any_moment_then_resume_is_bit_identical(tmp_path):
    from deltaflow.cli import main

    # the digits as an NPZ file: the subprocesses then start without importing sklearn
    d = load_digits()
    data = tmp_path / "digits.npz"
    np.savez(data, X=d.X_train, y=d.y_train, X_test=d.X_test, y_test=d.y_test)
    train = [*TRAIN, "--data", str(data)]
    ref = tmp_path / "uninterrupted.safetensors"
    assert main([*train, "--save", str(ref)]) == 0

    ckdir, out = tmp_path / "ck", tmp_path / "resumed.safetensors"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    first = [sys.executable, "-m", "deltaflow", *train, "--checkpoint-dir", str(ckdir)]
    first += ["--save", str(out)]
    resume = [sys.executable, "-m", "deltaflow", "train", "--quiet", "--resume", str(ckdir)]
    # kill moments: after a few epochs; the instant a checkpoint is being written (its
    # temporary file exists); a little after the next checkpoint, mid-epoch
    moments = [
        lambda d: newest_epoch(d) >= 4,
        "mid-write",
        lambda d: newest_epoch(d) >= 25 and (time.sleep(0.013) or True),
    ]
    epochs_at_kill, mid_write = [], 0
    for i, ready in enumerate(moments):
        before = newest_epoch(ckdir)
        if ready == "mid-write":
            ready = writing_now(temp_files(ckdir))
        proc = subprocess.Popen(
            first if i == 0 else resume,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        kill_when(proc, ckdir, ready)
        assert proc.returncode == -signal.SIGKILL
        mid_write += bool(temp_files(ckdir))  # killed between a write's start and its rename
        epochs_at_kill.append(newest_epoch(ckdir))
        assert epochs_at_kill[-1] >= before  # nothing already saved was lost
        # every checkpoint left behind is complete and valid
        assert all(read_checkpoint(p).epoch == e for e, p in list_checkpoints(ckdir))
        assert not out.exists()
    assert epochs_at_kill == sorted(epochs_at_kill) and epochs_at_kill[-1] < 40
    assert mid_write >= 1

    done = subprocess.run(
        [a for a in resume if a != "--quiet"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert f"after epoch {epochs_at_kill[-1]}" in done.stderr
    a, b = load(ref), load(out)
    assert bit_identical(a, b)
    assert not any(n.endswith(".tmp") for n in os.listdir(ckdir))


def test_cli_checkpoint_options_and_refusals(tmp_path, capsys):
    from deltaflow.cli import main

    d = load_digits()
    data = tmp_path / "small.npz"
    np.savez(data, X=d.X_train[:200], y=d.y_train[:200], X_test=d.X_test[:50], y_test=d.y_test[:50])
    ck = tmp_path / "ck"
    base = ["train", "-q", "--data", str(data), "--layers", "64,8,10", "--epochs", "4"]
    assert main([*base, "--checkpoint-dir", str(ck), "--checkpoint-every", "3"]) == 0
    assert [e for e, _ in list_checkpoints(ck)] == [4, 3]
    stored = load_latest(ck).extra["cli"]
    assert stored["epochs"] == 4 and stored["data"] == str(data.resolve())
    capsys.readouterr()

    # a new run never overwrites checkpoints without --force
    assert main([*base, "--checkpoint-dir", str(ck)]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main([*base, "--epochs", "2", "--checkpoint-dir", str(ck), "--force"]) == 0
    assert [e for e, _ in list_checkpoints(ck)] == [2, 1]

    # --resume takes every setting from the checkpoint and refuses conflicting ones
    assert main(["train", "-q", "--resume", str(ck), "--seed", "9"]) == 2
    assert "drop --seed" in capsys.readouterr().err
    assert main(["train", "-q", "--resume", str(ck), "--epochs", "1"]) == 2
    assert "can extend it, not shorten it" in capsys.readouterr().err
    assert main(["train", "-q", "--resume", str(ck), "--epochs", "2", "--seed", "0"]) == 0
    capsys.readouterr()
    flip_byte(ck / "checkpoint-000002.safetensors", 50)  # the CLI warns in one line, goes on
    assert main(["train", "--resume", str(ck)]) == 0
    err = capsys.readouterr().err
    assert "warning: skipped a damaged checkpoint" in err and "Traceback" not in err
    assert "resuming from" in err
    assert main(["train", "-q", "--resume", str(tmp_path / "none")]) == 2
    assert "no checkpoint in" in capsys.readouterr().err
    # a checkpoint from the library (no stored command line) is not a CLI run
    X, y = d.X_train[:50], d.y_train[:50]
    Network([64, 3, 10], seed=0).fit(X, y, epochs=1, checkpoint_dir=tmp_path / "lib")
    assert main(["train", "-q", "--resume", str(tmp_path / "lib")]) == 2
    assert "not written by 'deltaflow train'" in capsys.readouterr().err


def test_cli_resume_refuses_a_stored_command_line_of_the_wrong_types(tmp_path, capsys):
    from safetensors.numpy import save as st_save

    from deltaflow.cli import main
    from deltaflow.training.checkpoint import _checksum

    d = load_digits()
    data = tmp_path / "small.npz"
    np.savez(data, X=d.X_train[:100], y=d.y_train[:100], X_test=d.X_test[:20], y_test=d.y_test[:20])
    ck = tmp_path / "ck"
    argv = ["train", "-q", "--data", str(data), "--epochs", "2", "--checkpoint-dir", str(ck)]
    assert main(argv) == 0
    path = list_checkpoints(ck)[0][1]
    tensors, meta = dio.read_safetensors(path)
    extra = json.loads(meta["extra"])
    extra["cli"].update(layers=5, data=7)  # checksummed again: a hostile file
    meta = {k: v for k, v in meta.items() if k != "checksum"} | {"extra": json.dumps(extra)}
    meta["checksum"] = _checksum(tensors, meta)
    path.write_bytes(st_save(tensors, metadata=meta))
    assert main(["train", "-q", "--resume", str(ck)]) == 2
    assert "unusable values for data, layers" in capsys.readouterr().err
