"""Model files: bit-exact round trips, atomic writes, and files that must be refused."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from deltaflow import ModelFileError, Network, load, save
from deltaflow.io import load_extra


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "acts,cost",
    [
        ("sigmoid", "squared_error"),
        (["relu", "tanh", "softmax"], "cross_entropy"),
        (["leaky_relu", "identity", "sigmoid"], "binary_cross_entropy"),
    ],
)
def test_round_trip_is_bit_exact(tmp_path, dtype, acts, cost):
    net = Network([5, 4, 3, 2], acts, cost, dtype=dtype, seed=3)
    for p in net.weights + net.biases:
        p += np.random.default_rng(0).standard_normal(p.shape).astype(dtype)
    path = tmp_path / "m.safetensors"
    save(net, path, extra={"input_divisor": 255.0})
    back = load(path)
    assert back.sizes == net.sizes and back.activation_names == net.activation_names
    assert back.loss.name == net.loss.name and back.dtype == net.dtype
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    X = np.random.default_rng(1).standard_normal((3, 5))
    assert np.array_equal(net.forward(X), back.forward(X))
    assert load_extra(path) == {"input_divisor": 255.0}
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def test_save_replaces_atomically_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    old = Network([3, 2], seed=0)
    save(old, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("deltaflow.io.os.replace", boom)
    with pytest.raises(OSError):
        save(Network([3, 2], seed=1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def _write(path, tensors, metadata):
    path.write_bytes(st_save(tensors, metadata=metadata))


def _valid(net):
    tensors = {}
    for l in range(1, net.L + 1):
        tensors[f"theta.{l}"] = net.weights[l - 1]
        tensors[f"b.{l}"] = net.biases[l - 1]
    meta = {
        "format": "deltaflow",
        "format_version": "1",
        "sizes": json.dumps(net.sizes),
        "activations": json.dumps(net.activation_names),
        "cost": '"squared_error"',
        "dtype": '"float64"',
    }
    return tensors, meta


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda t, m: m.update(sizes="[3, 5, 2]"), "theta.1 has shape"),
        (lambda t, m: m.update(sizes="[3, 4, 2, 2]"), "activations for 3 layers"),
        (lambda t, m: m.update(activations='["sigmoid", "swish"]'), "unknown activation"),
        (lambda t, m: m.update(cost='"hinge"'), "unknown cost"),
        (lambda t, m: m.update(dtype='"float32"'), "is float64 but the metadata says float32"),
        (lambda t, m: t.pop("b.2"), "missing \\['b.2'\\]"),
        (lambda t, m: t.update(extra=np.zeros(1)), "unexpected \\['extra'\\]"),
        (lambda t, m: m.update(format_version="9"), "format version '9'"),
        (lambda t, m: m.pop("format"), "not a deltaflow model"),
        (lambda t, m: m.update(sizes="[3, -4, 2]"), "positive integers"),
        (lambda t, m: m.update(sizes="{"), "not valid JSON"),
    ],
)
def test_inconsistent_model_is_rejected(tmp_path, change, match):
    tensors, meta = _valid(Network([3, 4, 2], seed=0))
    change(tensors, meta)
    path = tmp_path / "bad.safetensors"
    _write(path, tensors, meta)
    with pytest.raises(ModelFileError, match=match):
        load(path)


def test_broken_files_are_rejected(tmp_path):
    good = tmp_path / "good.safetensors"
    save(Network([3, 4, 2], seed=0), good)
    data = good.read_bytes()
    cases = {
        "empty": b"",
        "short": b"\x01\x02",
        "truncated": data[: len(data) - 10],
        "huge-header": struct.pack("<Q", 2**62) + data[8:],
        "not-json": struct.pack("<Q", 4) + b"\xff\xfe{}" + data[12:],
        "pickle": b"\x80\x04\x95" + b"\x00" * 40,
        "text": b"hello, I am a CSV file\n1,2,3\n",
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(blob)
        with pytest.raises(ModelFileError, match="not a deltaflow model file"):
            load(path)
    with pytest.raises(ModelFileError, match="no such model file"):
        load(tmp_path / "missing.safetensors")
    with pytest.raises(ModelFileError, match="is a directory"):
        load(tmp_path)
