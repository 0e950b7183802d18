"""Hostile and broken files: every reader ends in deltaflow's own error, quickly and small.

Each fuzz test starts from valid files and feeds thousands of corrupted, truncated,
oversized-header and wrong-type variants (hypothesis, derandomised so every run feeds
the same inputs) to ``deltaflow.load``, the checkpoint reader, and the MNIST IDX, CSV and
NPZ readers. Every input must either load or raise a :class:`DeltaflowError` subclass
with a one-line message; no other exception, no input taking more than a few seconds,
and no input making the reader allocate more than a few megabytes (tracemalloc sees
numpy's allocations). Nothing is ever unpickled: files that would run code when
unpickled leave no trace.

``FUZZ_COUNTS`` records how many inputs each target received (the closing note of
issue 5 quotes the totals).
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import tracemalloc
import warnings
import zipfile
from collections import Counter
from pathlib import Path
from time import perf_counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as st_save

from deltaflow import DeltaflowError, ModelFileError, Network, load, save
from deltaflow.cli import main
from deltaflow.data import load_csv, load_features, load_npz, read_idx
from deltaflow.io import load_extra, read_safetensors
from deltaflow.training.checkpoint import (
    CheckpointWarning,
    _checksum,
    load_latest,
    read_checkpoint,
)

FUZZ_COUNTS: Counter[str] = Counter()
MEMORY_LIMIT = 32 * 1024 * 1024  # bytes any one tiny input may make a reader allocate
TIME_LIMIT = 5.0  # seconds for one input, generous for a loaded machine
FUZZ = settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def outcome(target, reader, path):
    """Run ``reader(path)``; check it ends well, quickly and small; return how it ended."""
    FUZZ_COUNTS[target] += 1
    tracemalloc.start()  # only around the reader: tracing slows hypothesis itself
    t0 = perf_counter()
    try:
        reader(path)
        result = "loaded"
    except DeltaflowError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        result = type(exc).__name__
    finally:
        elapsed = perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < TIME_LIMIT, f"{target} took {elapsed:.1f} s"
    assert peak < MEMORY_LIMIT, f"{target} allocated {peak:,} bytes for a tiny file"
    return result


# ------------------------------------------------------------------------ byte mutations
@st.composite
def mutations(draw, base: bytes):
    """``base`` with 1 to 4 edits: bit flips, overwrites, truncation, insertion,
    deletion, a rewritten 8-byte length prefix, appended junk. Positions favour the
    first bytes, where the headers are."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(["flip", "set", "truncate", "insert", "delete", "length", "append"])
        )
        n = len(data)
        pos = draw(st.one_of(st.integers(0, 80), st.integers(0, max(n, 1) * 2))) % max(n, 1)
        if op == "flip":
            if n:
                data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            if n:
                data[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 32))]
        elif op == "length":
            value = draw(
                st.one_of(
                    st.sampled_from([0, 1, n - 8, n - 7, n, 2**31, 2**63 - 1, 2**64 - 1]),
                    st.integers(0, 2**64 - 1),
                )
            )
            data[0:8] = struct.pack("<Q", max(value, 0) % 2**64)
        else:
            data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def whole_files():
    """Wrong-type files: empty, random bytes, other formats."""
    npz = io.BytesIO()
    np.savez(npz, X=np.zeros((2, 2)))
    npy = io.BytesIO()
    np.save(npy, np.zeros(3))
    return st.one_of(
        st.binary(max_size=256),
        st.sampled_from(
            [
                b"",
                b"\x00" * 8,
                gzip.compress(b"hello"),
                npz.getvalue(),
                npy.getvalue(),
                pickle.dumps({"weights": [1, 2]}),
                b"PK\x03\x04" + b"\x00" * 40,
                b'{"theta.1": {}}',
                "é,ü\n1,2\n".encode("latin-1"),
            ]
        ),
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------- model files
def model_bases(tmp: Path) -> list[bytes]:
    out = []
    for i, (sizes, acts, cost, dtype) in enumerate(
        [
            ([3, 4, 2], "sigmoid", "squared_error", "float64"),
            ([5, 3, 3, 2], ["relu", "tanh", "softmax"], "cross_entropy", "float32"),
        ]
    ):
        save(Network(sizes, acts, cost, dtype=dtype, seed=i), tmp / "base.safetensors")
        out.append((tmp / "base.safetensors").read_bytes())
    return out


def test_fuzz_model_files_bytes(work):
    bases = model_bases(work)
    path = work / "model.safetensors"
    seen = Counter()

    @FUZZ
    @given(data=st.one_of(st.sampled_from(bases).flatmap(mutations), whole_files()))
    def run(data):
        write(path, data)
        seen[outcome("load (bytes)", load, path)] += 1
        outcome("load_extra (bytes)", load_extra, path)

    run()
    assert seen["ModelFileError"] > 0.8 * sum(seen.values())


SAFETENSORS_DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "U8", "BOOL", "F8_E4M3", "X1"]
JSON_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@st.composite
def header_edits(draw, base: bytes):
    """``base`` with its JSON header edited (and a correct length prefix): tensors with
    other shapes, dtypes or offsets, tensors dropped or added, metadata replaced by
    other JSON (huge layer sizes, wrong types), or the header replaced altogether."""
    (n,) = struct.unpack("<Q", base[:8])
    header = json.loads(base[8 : 8 + n])
    body = base[8 + n :]
    names = sorted(k for k in header if k != "__metadata__")
    meta = header.setdefault("__metadata__", {})
    n_layers = len(json.loads(meta["sizes"])) if "sizes" in meta else 3
    for _ in range(draw(st.integers(1, 3))):
        op = draw(
            st.sampled_from(
                ["shape", "dtype", "offsets", "drop", "add", "meta", "sizes", "deep", "whole"]
            )
        )
        name = draw(st.sampled_from(names))
        if op == "shape" and name in header:
            header[name]["shape"] = draw(
                st.lists(
                    st.one_of(st.integers(0, 8), st.sampled_from([2**31, 2**40, 2**63])),
                    max_size=4,
                )
            )
        elif op == "dtype" and name in header:
            header[name]["dtype"] = draw(st.sampled_from(SAFETENSORS_DTYPES))
        elif op == "offsets" and name in header:
            header[name]["data_offsets"] = draw(
                st.lists(st.integers(-5, len(body) + 5) | st.just(2**64), min_size=0, max_size=3)
            )
        elif op == "drop":
            header.pop(name, None)
        elif op == "add":
            header[draw(st.text(max_size=6))] = draw(JSON_JUNK)
        elif op == "meta":
            key = draw(
                st.sampled_from(["sizes", "activations", "cost", "dtype", "extra", "format"])
            )
            value = draw(
                st.one_of(
                    JSON_JUNK.map(json.dumps),
                    st.sampled_from(['["swish", "relu"]', '"hinge"', '"float16"', "[[[[[", ""]),
                )
            )
            meta[key] = draw(st.sampled_from([value, 7, None, [value]]))  # non-strings too
        elif op == "sizes":  # as many layers as the file has, some of them huge
            sizes = draw(
                st.lists(
                    st.integers(1, 9) | st.sampled_from([2**20, 2**40, 2**62]),
                    min_size=n_layers,
                    max_size=n_layers,
                )
            )
            meta["sizes"] = json.dumps(sizes)
        elif op == "deep":  # nesting deep enough to exhaust a recursive parser
            depth = draw(st.sampled_from([1000, 10_000, 100_000]))
            deep = "[" * depth + "]" * depth
            if draw(st.booleans()):
                meta[draw(st.sampled_from(["sizes", "activations", "extra"]))] = deep
            else:
                raw = deep.encode()
                return struct.pack("<Q", len(raw)) + raw + body
        else:
            header = draw(JSON_JUNK)
            break
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def test_fuzz_model_headers(work):
    bases = model_bases(work)
    path = work / "model.safetensors"
    seen = Counter()

    @FUZZ
    @given(data=st.sampled_from(bases).flatmap(header_edits))
    def run(data):
        write(path, data)
        seen[outcome("load (headers)", load, path)] += 1

    run()
    assert seen["ModelFileError"] > 0.8 * sum(seen.values())


def resave(path, tensors=None, meta=None, **changes):
    """Rewrite a model file with some tensors or metadata entries changed."""
    t, m = read_safetensors(path)
    t.update(tensors or {})
    m.update({k: json.dumps(v) for k, v in changes.items()})
    m.update(meta or {})
    path.write_bytes(st_save(t, metadata=m))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(sizes=[3, 4, 2, 2]), "lists 2 activations for 3 layers"),
        (dict(sizes=[3, 4]), "activations for 1 layers"),
        (dict(sizes=[20000, 20000, 2]), r"theta.1 has shape \(3, 4\) but sizes .* need"),
        (dict(sizes=[3, 5, 2]), r"theta.1 has shape \(3, 4\) but sizes \[3, 5, 2\]"),
        (dict(dtype="float32"), "is float64 but the metadata says float32"),
        (dict(dtype="float16"), "'cost' or 'dtype' is malformed"),
        (dict(activations=["sigmoid", "swish"]), "unknown activation 'swish'"),
        (dict(cost="hinge"), "unknown cost 'hinge'"),
        (dict(sizes=[3, True, 2]), "positive integers"),
        ({"tensors": {"theta.2": np.zeros((4, 2), np.float16)}}, "float16 but the metadata"),
        ({"tensors": {"b.1": np.zeros((5,))}}, r"b.1 has shape \(5,\)"),
        ({"tensors": {"theta.3": np.zeros((2, 2))}}, r"unexpected \['theta.3'\]"),
        ({"meta": {"sizes": "[" * 50_000 + "]" * 50_000}}, "'sizes' is not valid JSON"),
    ],
)
def test_model_whose_metadata_and_tensors_disagree_is_rejected(tmp_path, change, message):
    path = tmp_path / "m.safetensors"
    save(Network([3, 4, 2], seed=0), path)
    change = dict(change)
    resave(path, tensors=change.pop("tensors", None), meta=change.pop("meta", None), **change)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=message):
            load(path)
        assert tracemalloc.get_traced_memory()[1] < MEMORY_LIMIT
    finally:
        tracemalloc.stop()


class _Trap:
    """Unpickling this creates a file: proof that pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_files_that_would_run_code_never_do(tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"theta.1": _Trap(marker)})
    for name in ("model.safetensors", "model.pt", "model.pkl"):
        with pytest.raises(ModelFileError):
            load(write(tmp_path / name, payload))
    # an NPZ whose arrays are pickled objects
    np.savez(tmp_path / "obj.npz", X=np.array([_Trap(marker)], dtype=object), y=np.zeros(1))
    with pytest.raises(DeltaflowError, match="Python objects, which need pickle"):
        load_npz(tmp_path / "obj.npz")
    with pytest.raises(DeltaflowError):
        load_features(tmp_path / "obj.npz")
    write(tmp_path / "pickled.npz", payload)
    with pytest.raises(DeltaflowError, match="not a readable .npz"):
        load_npz(tmp_path / "pickled.npz")
    # a pickled "checkpoint" newer than the real one is skipped, not run
    net = Network([3, 2], seed=0)
    net.fit(np.eye(3), [0, 1, 0], epochs=1, checkpoint_dir=tmp_path / "ck")
    write(tmp_path / "ck" / "checkpoint-000009.safetensors", payload)
    with pytest.warns(CheckpointWarning, match="checkpoint-000009"):
        assert load_latest(tmp_path / "ck").epoch == 1
    assert main(["evaluate", str(tmp_path / "model.pkl")]) == 2
    assert "not a deltaflow model" in capsys.readouterr().err
    assert not marker.exists()


# --------------------------------------------------------------------------- checkpoints
def checkpoint_base(tmp: Path) -> tuple[Path, bytes]:
    d = tmp / "ckpt-base"
    if not d.exists():
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(40, 4)), rng.integers(0, 3, 40)
        Network([4, 5, 3], "tanh", "cross_entropy", seed=0).fit(
            X,
            y,
            epochs=2,
            batch_size=8,
            optimizer="adam",
            learning_rate=0.01,
            validation_split=0.25,
            early_stopping=True,
            checkpoint_dir=d,
        )
    return d, (d / "checkpoint-000002.safetensors").read_bytes()


def test_fuzz_checkpoints(work):
    _, base = checkpoint_base(work)
    path = work / "checkpoint-000003.safetensors"
    seen = Counter()

    @FUZZ
    @given(data=st.one_of(mutations(base), header_edits(base), whole_files()))
    def run(data):
        write(path, data)
        seen[outcome("read_checkpoint", read_checkpoint, path)] += 1

    run()
    # the checksum lets almost nothing through
    assert seen["loaded"] <= 0.02 * sum(seen.values())


def test_damaged_newest_checkpoint_is_always_skipped_for_the_previous(work, tmp_path):
    d, base = checkpoint_base(work)
    older = (d / "checkpoint-000001.safetensors").read_bytes()
    (tmp_path / "checkpoint-000001.safetensors").write_bytes(older)
    newest = tmp_path / "checkpoint-000002.safetensors"

    @settings(FUZZ, max_examples=150)
    @given(data=mutations(base))
    def run(data):
        write(newest, data)
        FUZZ_COUNTS["load_latest"] += 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ckpt = load_latest(tmp_path)
        if ckpt.epoch == 1:  # fell back, and said so
            assert [w.category for w in caught] == [CheckpointWarning]
            assert "checkpoint-000002" in str(caught[0].message)
        else:  # the edit left the file valid (e.g. JSON whitespace): nothing to warn about
            assert ckpt.epoch == 2 and not caught

    run()


def resign(tensors, meta):
    """A hostile checkpoint: edited, then given a correct checksum."""
    meta = {k: v for k, v in meta.items() if k != "checksum"}
    meta["checksum"] = _checksum(tensors, meta)
    return st_save(tensors, metadata=meta)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t, m: t.update({"opt.m.0": np.zeros((2, 2))}), r"opt.m.0 has shape \(2, 2\)"),
        (lambda t, m: t.update({"opt.m.0": t["opt.m.0"].astype(np.float32)}), "is float32"),
        (lambda t, m: t.pop("opt.v.3"), "opt.v.3 is missing"),
        (lambda t, m: t.update({"order": np.zeros(30, np.int64)}), "not a permutation"),
        (lambda t, m: t.update({"order": np.arange(30.0)}), "order is float64"),
        (lambda t, m: t.update({"split": np.arange(7, dtype=np.int64)}), "no validation split"),
        (lambda t, m: m.update(rng='{"bit_generator": "MT19937"}'), "random generator"),
        (lambda t, m: m.update(state='{"best_cost": 1}'), "'state' must hold"),
        (lambda t, m: m.update(history='{"epoch": [1, 2]}'), "history has fields"),
        (lambda t, m: m.update(epoch='"two"'), "'epoch' is 'two'"),
        (lambda t, m: m.update(sizes="[4, 6, 3]"), r"theta.1 has shape \(4, 5\)"),
        (lambda t, m: m.update(optimizer='{"scalars": {}, "arrays": {"m": 99}}'), "bad array"),
        (lambda t, m: m.update(config='{"epochs": 2}'), "other settings"),
        (lambda t, m: m.update(extra="[1]"), "'extra' must be a JSON object"),
    ],
)
def test_hostile_checkpoints_with_valid_checksums_are_refused(work, tmp_path, edit, message):
    d, base = checkpoint_base(work)
    tensors, meta = read_safetensors(d / "checkpoint-000002.safetensors")
    edit(tensors, meta)
    (tmp_path / "checkpoint-000002.safetensors").write_bytes(resign(tensors, meta))
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 4)), rng.integers(0, 3, 40)
    net = Network([4, 5, 3], "tanh", "cross_entropy", seed=0)
    with pytest.raises(DeltaflowError, match=message):
        net.fit(
            X,
            y,
            epochs=2,
            batch_size=8,
            optimizer="adam",
            learning_rate=0.01,
            validation_split=0.25,
            early_stopping=True,
            checkpoint_dir=tmp_path,
            resume=True,
        )


# -------------------------------------------------------------------------------- IDX
def idx_file(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(s.to_bytes(4, "big") for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def idx_bases() -> list[bytes]:
    rng = np.random.default_rng(0)
    plain = [
        idx_file(rng.integers(0, 256, (6, 4, 4), dtype=np.uint8), 0x08),
        idx_file(rng.integers(0, 10, 6).astype(np.uint8), 0x08),
        idx_file(rng.normal(size=(3, 2)).astype(np.float32), 0x0D),
        idx_file(rng.integers(-99, 99, (2, 2, 2, 2)).astype(np.int16), 0x0B),
    ]
    return plain + [gzip.compress(b, mtime=0) for b in plain[:2]]


@st.composite
def idx_inputs(draw):
    base = draw(st.sampled_from(idx_bases()))
    data = draw(mutations(base))
    if draw(st.booleans()) and base[:2] != b"\x1f\x8b":
        data = gzip.compress(data, mtime=0)  # damaged IDX inside an intact gzip
    return data


@st.composite
def idx_headers(draw):
    """Well-formed headers declaring other types, ranks and (huge) sizes."""
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF]))
    dims = draw(st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 9), max_size=6))
    ndim = draw(st.sampled_from([len(dims), 0, 5, 255]))
    body = draw(st.binary(max_size=64))
    data = bytes([0, 0, code, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims) + body
    return gzip.compress(data, mtime=0) if draw(st.booleans()) else data


def test_fuzz_mnist_idx(work):
    path = work / "train-images-idx3-ubyte"
    seen = Counter()

    @FUZZ
    @given(data=st.one_of(idx_inputs(), idx_headers(), whole_files()))
    def run(data):
        write(path, data)
        seen[outcome("read_idx", read_idx, path)] += 1

    run()
    assert seen["DataError"] > 0.8 * sum(seen.values())


def test_mnist_directory_of_broken_files_is_a_data_error(tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = idx_file(rng.integers(0, 256, (5, 3, 3), dtype=np.uint8), 0x08)
    labels = idx_file(np.array([0, 1, 2, 3, 4], np.uint8), 0x08)
    files = {
        "train-images-idx3-ubyte": images,
        "train-labels-idx1-ubyte": labels,
        "t10k-images-idx3-ubyte": images,
        "t10k-labels-idx1-ubyte": idx_file(np.array([0, 1, 2, 3, 200], np.uint8), 0x08),
    }
    for name, data in files.items():
        write(tmp_path / name, data)
    assert main(["train", "--data", "mnist", "--data-dir", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "contains label 200; MNIST labels are 0..9" in err and err.count("\n") == 1


# -------------------------------------------------------------------------------- CSV
CSV_BASES = [
    b"label,a,b,c\n0,1.5,2,3\n1,0,0.25,-1\n2,7,8,9\n",
    b"0,1,2\n1,3,4\n0,5,6\n",
    gzip.compress(b"y,x1,x2\n1,0.5,0.25\n0,1e3,-2\n", mtime=0),
]
CSV_TOKENS = [
    b",",
    b'"',
    b"\n",
    b"\r\n",
    b"nan",
    b"inf",
    b"-inf",
    b"1e999",
    b"-1",
    b"2.5",
    b"\x00",
    b"\xff",
    "\u0661".encode(),
    b"1_0",
    b" ",
    b"9" * 40,
    b"label",
    b"\xef\xbb\xbf",
    b"#",
]


@st.composite
def csv_inputs(draw):
    base = draw(st.sampled_from(CSV_BASES))
    if draw(st.booleans()):
        return draw(mutations(base))
    data = bytearray(gzip.decompress(base) if base[:2] == b"\x1f\x8b" else base)
    for _ in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, len(data)))
        data[pos:pos] = draw(st.sampled_from(CSV_TOKENS))
    return bytes(data)


def test_fuzz_csv(work):
    path = work / "data.csv"
    seen = Counter()

    @FUZZ
    @given(data=st.one_of(csv_inputs(), whole_files()), column=st.sampled_from([0, -1, "label"]))
    def run(data, column):
        write(path, data)
        seen[outcome("load_csv", lambda p: load_csv(p, label_column=column), path)] += 1
        outcome("load_features (csv)", load_features, path)

    run()
    assert seen["DataError"] > 0.5 * sum(seen.values())


# -------------------------------------------------------------------------------- NPZ
def npz_bases() -> list[bytes]:
    rng = np.random.default_rng(0)
    arrays = dict(X=rng.normal(size=(5, 3)), y=np.array([0, 1, 2, 1, 0]))
    out = []
    for saver in (np.savez, np.savez_compressed):
        buf = io.BytesIO()
        saver(buf, **arrays, X_test=arrays["X"][:2].astype(np.float32), y_test=np.array([1, 0]))
        out.append(buf.getvalue())
    return out


def npy_member(descr: str, shape: tuple, fortran: bool, body: bytes, version=(1, 0)) -> bytes:
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    header = header + " " * (63 - len(header) % 64) + "\n"
    if version == (1, 0):
        size = struct.pack("<H", len(header))
    else:
        size = struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes(version) + size + header.encode("latin-1") + body


@st.composite
def npz_members(draw):
    """Archives whose .npy members declare other dtypes, shapes (huge), orders, versions."""
    buf = io.BytesIO()
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with zipfile.ZipFile(buf, "w", method) as zf:
        keys = st.lists(
            st.sampled_from(["X", "y", "X_test", "y_test", "z"]), max_size=4, unique=True
        )
        for key in draw(keys):
            descr = draw(st.sampled_from(["<f8", "<f4", "<i8", "|u1", "|O", "<U3", "<c16", "|V4"]))
            shape = tuple(
                draw(st.lists(st.integers(0, 6) | st.sampled_from([2**20, 2**40]), max_size=3))
            )
            body = draw(st.binary(max_size=200))
            version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
            member = npy_member(descr, shape, draw(st.booleans()), body, version)
            name = key + draw(st.sampled_from([".npy", ".npy", ""]))
            zf.writestr(name, member if draw(st.integers(0, 9)) else body)
    return buf.getvalue()


def test_fuzz_npz(work):
    bases = npz_bases()
    path = work / "data.npz"
    seen = Counter()

    @FUZZ
    @given(data=st.one_of(st.sampled_from(bases).flatmap(mutations), npz_members(), whole_files()))
    def run(data):
        write(path, data)
        seen[outcome("load_npz", load_npz, path)] += 1
        outcome("load_features (npz)", load_features, path)

    run()
    assert seen["DataError"] > 0.8 * sum(seen.values())


def test_npz_labels_too_large_for_class_indices_are_refused(tmp_path, capsys):
    np.savez(tmp_path / "big.npz", X=np.zeros((2, 3)), y=np.array([0, 2**62]))
    with pytest.raises(DeltaflowError, match="label 4611686018427387904, too large"):
        load_npz(tmp_path / "big.npz")
    write(tmp_path / "big.csv", b"9000000000000000,1,2\n0,1,2\n")
    assert main(["train", "--data", str(tmp_path / "big.csv"), "--label-column", "0", "-q"]) == 2
    assert "too large for a class index" in capsys.readouterr().err


# ---------------------------------------------------------------- the CLI's output files
def test_cli_never_overwrites_without_force_and_leaves_no_partial_file(tmp_path, capsys):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"precious")
    argv = ["train", "-q", "--epochs", "1", "--layers", "64,5,10", "--save", str(model)]
    assert main(argv) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert model.read_bytes() == b"precious"
    assert main([*argv, "--force"]) == 0
    assert load(model).sizes == [64, 5, 10]

    inputs = write(tmp_path / "in.csv", b"1,2,3\n")  # 3 features for a 64-input model
    out = tmp_path / "pred.csv"
    assert main(["predict", str(model), str(inputs), "-o", str(out)]) == 2
    assert "3 features but the input layer has 64" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "model.safetensors"]
    out.write_text("old")
    inputs = write(tmp_path / "in.csv", b",".join([b"0"] * 64) + b"\n")
    assert main(["predict", str(model), str(inputs), "-o", str(out)]) == 2
    assert out.read_text() == "old"
    assert main(["predict", str(model), str(inputs), "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith("prediction,a0")
    # a model whose saved input scaling is not a number is refused, not a traceback
    resave(model, meta={"extra": json.dumps({"input_divisor": "abc"})})
    assert main(["predict", str(model), str(inputs)]) == 2
    assert "input_divisor" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_fuzz_counts_cover_thousands_of_inputs():
    """Run last in this file (pytest keeps file order): the tally quoted in the notes."""
    if len(FUZZ_COUNTS) < 10:
        pytest.skip("run the whole file to tally the fuzz inputs")
    total = sum(FUZZ_COUNTS.values())
    print(f"\nfuzz inputs: {total} in all; {dict(sorted(FUZZ_COUNTS.items()))}")
    assert total >= 3500
