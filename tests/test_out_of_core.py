"""Data bigger than memory: .npy directories, memory-mapped training, convert."""

from __future__ import annotations

import gzip
import mmap
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from deltaflow import Network, evaluate, fit, save
from deltaflow.cli import main
from deltaflow.data import load_csv, open_npy_dir
from deltaflow.data.npy import NpyWriter, RowSubset, ShardedRows, advise, is_mapped
from deltaflow.errors import ConfigError, DataError
from deltaflow.training import checkpoint
from deltaflow.training.orders import block_order, shuffle_mode


def _params(net: Network) -> list[np.ndarray]:
    return [p.copy() for p in net.weights + net.biases]


def _same(a: Network, b: Network) -> bool:
    return all(np.array_equal(p, q) for p, q in zip(a.weights + a.biases, b.weights + b.biases))


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.random((403, 12)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) * 4 / 3).astype(np.int64) % 4
    return X, y


@pytest.fixture
def npy_dir(tmp_path: Path, arrays: tuple[np.ndarray, np.ndarray]) -> Path:
    X, y = arrays
    directory = tmp_path / "data"
    directory.mkdir()
    np.save(directory / "X.npy", X)
    np.save(directory / "y.npy", y)
    return directory


def _write_shards(directory: Path, X: np.ndarray, y: np.ndarray, sizes: list[int]) -> None:
    directory.mkdir(exist_ok=True)
    start = 0
    for k, n in enumerate(sizes):
        np.save(directory / f"X-{k:05d}.npy", X[start : start + n])
        np.save(directory / f"y-{k:05d}.npy", y[start : start + n])
        start += n


# ----------------------------------------------------------------- reading directories
def test_open_npy_dir_maps_without_loading(npy_dir: Path, arrays: tuple) -> None:
    X, y = arrays
    data = open_npy_dir(npy_dir)
    assert isinstance(data.X, np.memmap) and is_mapped(data.X)
    assert np.array_equal(data.X, X) and np.array_equal(data.y, y)
    assert data.X_test is None and not is_mapped(X)


def test_shards_read_as_one_array(tmp_path: Path, arrays: tuple) -> None:
    X, y = arrays
    _write_shards(tmp_path / "d", X, y, [100, 3, 300])
    data = open_npy_dir(tmp_path / "d")
    assert isinstance(data.X, ShardedRows) and data.X.shape == X.shape
    idx = np.array([402, 0, 101, 100, 99, 250, 103])
    out = np.empty((len(idx), 12), dtype=np.float32)
    data.X.take(idx, axis=0, out=out)
    assert np.array_equal(out, X[idx])
    assert np.array_equal(data.X[95:110], X[95:110])
    assert np.array_equal(np.asarray(data.y), y)
    subset = RowSubset(data.X, [5, 200, 401])
    assert np.array_equal(subset[1:], X[[200, 401]]) and is_mapped(subset)


def test_a_fingerprint_of_mapped_rows_reads_chunks_and_matches_memory(
    tmp_path: Path, arrays: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltaflow.data import dataset

    X, y = arrays
    np.save(tmp_path / "a.npy", X[:150])
    np.save(tmp_path / "b.npy", X[150:])
    np.save(tmp_path / "X.npy", X)
    parts = [np.load(tmp_path / f"{n}.npy", mmap_mode="r") for n in "ab"]
    shards = ShardedRows(parts)
    rows = np.array([400, 3, 151, 149, 0])

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole of the mapped rows was asked for at once")

    monkeypatch.setattr(ShardedRows, "__array__", never)
    monkeypatch.setattr(RowSubset, "__array__", never)
    monkeypatch.setattr(dataset, "_CHUNK_BYTES", 100)  # two rows a chunk
    whole = dataset.fingerprint(X, y)
    assert dataset.fingerprint(np.load(tmp_path / "X.npy", mmap_mode="r"), y) == whole
    assert dataset.fingerprint(shards, y) == whole
    assert dataset.fingerprint(RowSubset(shards, rows)) == dataset.fingerprint(X[rows])
    assert dataset.fingerprint(shards[:-1], y) != whole


def test_npy_writer_streams_rows_with_a_final_header(tmp_path: Path) -> None:
    w = NpyWriter(tmp_path / "a.npy", np.float32, (3,))
    w.write(np.arange(6).reshape(2, 3))
    w.write(np.ones((1, 3)))
    w.close()
    got = np.load(tmp_path / "a.npy")
    assert got.dtype == np.float32 and got.tolist() == [[0, 1, 2], [3, 4, 5], [1, 1, 1]]


def test_advise_accepts_maps_and_ignores_memory(npy_dir: Path) -> None:
    X = np.load(npy_dir / "X.npy", mmap_mode="r")
    for advice in (mmap.MADV_RANDOM, mmap.MADV_SEQUENTIAL, mmap.MADV_WILLNEED):
        advise(X, advice)
        advise(X[10:], advice, 5, 50)
    advise(np.zeros((3, 3)), mmap.MADV_WILLNEED)  # in memory: nothing to advise
    assert is_mapped(X[10:]) and X[10:].shape == (393, 12)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d, X, y: np.save(d / "y.npy", y[:-1]), "y.npy has 402 rows but X.npy has 403"),
        (lambda d, X, y: os.remove(d / "y.npy"), "y.npy is missing"),
        (lambda d, X, y: (d / "notes.txt").write_text("hi"), "notes.txt is not a .npy file"),
        (lambda d, X, y: (d / "X.npy").write_bytes(b"X,y\n1,2\n"), "X.npy is not a .npy file"),
        (lambda d, X, y: np.save(d / "X.npy", X.ravel()), "X.npy has shape (4836,)"),
        (lambda d, X, y: np.save(d / "X.npy", np.asfortranarray(X)), "Fortran"),
        (lambda d, X, y: np.save(d / "X.npy", X.astype(str)), "elements of type <U"),
        (
            lambda d, X, y: (d / "X.npy").write_bytes((d / "X.npy").read_bytes()[:-10]),
            "X.npy declares shape (403, 12)",
        ),
    ],
)
def test_bad_directory_names_the_file(npy_dir: Path, arrays: tuple, make, message) -> None:
    make(npy_dir, *arrays)
    with pytest.raises(DataError, match=None) as info:
        open_npy_dir(npy_dir)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: np.save(d / "y-00001.npy", np.zeros(5, np.int64)), "y-00001.npy has 5 rows"),
        (lambda d: np.save(d / "X-00001.npy", np.zeros((3, 12))), "holds float64 but"),
        (lambda d: np.save(d / "X-00001.npy", np.zeros((3, 11), np.float32)), "has 11 columns"),
        (lambda d: os.remove(d / "y-00002.npy"), "X-00002.npy has no matching y-00002.npy"),
        (lambda d: os.rename(d / "X-00001.npy", d / "X-00007.npy"), "X-00001.npy"),
        (lambda d: np.save(d / "X.npy", np.zeros((3, 12))), "both X.npy/y.npy and shards"),
    ],
)
def test_bad_shards_name_the_file(tmp_path: Path, arrays: tuple, change, message) -> None:
    d = tmp_path / "d"
    _write_shards(d, *arrays, [100, 3, 300])
    change(d)
    with pytest.raises(DataError) as info:
        open_npy_dir(d)
    assert message in str(info.value)


def test_train_on_a_bad_directory_exits_2_and_writes_nothing(
    npy_dir: Path, arrays: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(npy_dir / "y.npy", arrays[1][:10])
    model = tmp_path / "model.safetensors"
    assert main(["train", "--data", str(npy_dir), "--save", str(model), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "y.npy has 10 rows but X.npy has 403" in err
    assert not model.exists()


# ------------------------------------------------------------------- orders
def test_shuffle_modes() -> None:
    assert shuffle_mode(True, mapped=False) == "rows"
    assert shuffle_mode(True, mapped=True) == "blocks"
    assert shuffle_mode(False, mapped=True) is None
    assert shuffle_mode("Rows", mapped=True) == "rows"
    with pytest.raises(ConfigError, match="shuffle must be"):
        shuffle_mode("random", mapped=False)


def test_block_order_is_a_permutation_read_a_few_blocks_at_a_time() -> None:
    m, block, buffer = 1000, 7, 3
    order = block_order(m, block, buffer, np.random.default_rng(0))
    assert np.array_equal(np.sort(order), np.arange(m))
    # each run of `buffer` blocks' rows comes from exactly those blocks
    blocks_per_window = [len(np.unique(order[s : s + block * buffer] // block)) for s in (0, 21)]
    assert blocks_per_window == [3, 3]
    again = block_order(m, block, buffer, np.random.default_rng(0))
    other = block_order(m, block, buffer, np.random.default_rng(1))
    assert np.array_equal(order, again) and not np.array_equal(order, other)
    assert not np.array_equal(order[: block * buffer], np.sort(order[: block * buffer]))


# ------------------------------------------------------------------ training on maps
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"optimizer": "adam"},
        {"validation_split": 0.2, "early_stopping": True, "patience": 1},
        {"sample_weight": np.linspace(0.1, 2, 403)},
    ],
    ids=["sgd", "adam", "validation", "weights"],
)
def test_memmap_with_row_shuffle_is_bit_identical_to_memory(
    npy_dir: Path, arrays: tuple, kwargs: dict
) -> None:
    X, y = arrays
    Xm, ym = np.load(npy_dir / "X.npy", mmap_mode="r"), np.load(npy_dir / "y.npy", mmap_mode="r")
    a = Network([12, 9, 4], "relu", "cross_entropy", seed=0)  # float64: cast per batch
    b = a.copy()
    ha = fit(a, X, y, epochs=3, batch_size=32, seed=3, shuffle="rows", **kwargs)
    hb = fit(b, Xm, ym, epochs=3, batch_size=32, seed=3, shuffle="rows", **kwargs)
    assert _same(a, b)
    assert ha.as_dict() == {**hb.as_dict(), "seconds": ha.seconds}


def test_shards_and_one_hot_targets_match_memory(tmp_path: Path, arrays: tuple) -> None:
    X, y = arrays
    Y = np.eye(4, dtype=np.float32)[y]
    d = tmp_path / "d"
    _write_shards(d, X, Y, [50, 353])
    data = open_npy_dir(d)
    a = Network([12, 5, 4], "sigmoid", "squared_error", seed=1)
    b = a.copy()
    ha = fit(a, X, Y, epochs=2, batch_size=40, seed=0, shuffle="rows")
    hb = fit(b, data.X, data.y, epochs=2, batch_size=40, seed=0, shuffle="rows")
    assert _same(a, b) and ha.accuracy == hb.accuracy


def test_block_shuffle_on_a_map_equals_block_shuffle_in_memory(
    npy_dir: Path, arrays: tuple
) -> None:
    X, y = arrays
    Xm, ym = np.load(npy_dir / "X.npy", mmap_mode="r"), np.load(npy_dir / "y.npy", mmap_mode="r")
    a = Network([12, 6, 4], "tanh", "cross_entropy", dtype="float32", seed=2)
    b = a.copy()
    fit(a, X, y, epochs=2, batch_size=16, seed=5, shuffle="blocks")
    hb = fit(b, Xm, ym, epochs=2, batch_size=16, seed=5)  # blocks: the default for maps
    assert _same(a, b)
    c = a.copy()
    fit(c, X, y, epochs=2, batch_size=16, seed=5, shuffle="rows")
    assert not _same(a, c) and len(hb) == 2


def test_evaluate_on_a_map(npy_dir: Path, arrays: tuple) -> None:
    X, y = arrays
    net = Network([12, 7, 4], "relu", "cross_entropy", seed=4)
    Xm, ym = np.load(npy_dir / "X.npy", mmap_mode="r"), np.load(npy_dir / "y.npy", mmap_mode="r")
    assert evaluate(net, Xm, ym, chunk=50) == evaluate(net, X, y, chunk=50)


def test_nan_in_the_file_is_reported_and_the_epoch_undone(npy_dir: Path, arrays: tuple) -> None:
    X, y = arrays
    X = X.copy()
    X[301, 5] = np.nan
    np.save(npy_dir / "X.npy", X)
    net = Network([12, 6, 4], "relu", "cross_entropy", seed=0)
    start = _params(net)
    with pytest.raises(DataError, match=r"row 301, column 5"):
        fit(net, np.load(npy_dir / "X.npy", mmap_mode="r"), y, epochs=2, batch_size=8)
    assert all(np.array_equal(p, q) for p, q in zip(start, net.weights + net.biases))


def test_bad_labels_on_a_map_are_refused_before_training(npy_dir: Path, arrays: tuple) -> None:
    X, y = arrays
    np.save(npy_dir / "y.npy", np.where(np.arange(403) == 77, 9, y))
    net = Network([12, 6, 4], "relu", "cross_entropy", seed=0)
    Xm, ym = np.load(npy_dir / "X.npy", mmap_mode="r"), np.load(npy_dir / "y.npy", mmap_mode="r")
    with pytest.raises(DataError, match="label 9 but the output layer has 4 units"):
        fit(net, Xm, ym)


def test_a_map_is_never_copied(tmp_path: Path) -> None:
    m, n = 100_000, 256  # 102 MB of float32
    w = NpyWriter(tmp_path / "X.npy", np.float32, (n,))
    rng = np.random.default_rng(0)
    for _ in range(4):
        w.write(rng.random((m // 4, n), dtype=np.float32))
    w.close()
    np.save(tmp_path / "y.npy", rng.integers(0, 2, m))
    X, y = np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")
    net = Network([n, 8, 2], "relu", "cross_entropy", dtype="float32", seed=0)
    tracemalloc.start()
    try:
        fit(net, X, y, epochs=1, batch_size=2048, learning_rate=0.01)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes // 2, (
        f"fit allocated {peak / 1e6:.0f} MB for a {X.nbytes / 1e6:.0f} MB map"
    )


def test_resume_on_a_map_is_bit_identical(npy_dir: Path, tmp_path: Path) -> None:
    X, y = np.load(npy_dir / "X.npy", mmap_mode="r"), np.load(npy_dir / "y.npy", mmap_mode="r")
    start = Network([12, 5, 4], "relu", "cross_entropy", seed=0)
    a, b, c = start.copy(), start.copy(), start.copy()
    settings = {"epochs": 3, "batch_size": 32, "seed": 1, "validation_split": 0.1}
    fit(a, X, y, **settings)
    ck = tmp_path / "ck"
    fit(b, X, y, **settings, checkpoint_dir=ck)
    newest = checkpoint.list_checkpoints(ck)[0][1]
    newest.unlink()  # as if the run had stopped after epoch 2
    fit(c, X, y, **settings, checkpoint_dir=ck, resume=True)
    assert _same(a, b) and _same(a, c)


# ------------------------------------------------------------------------ convert
def _write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    lines = ["label," + ",".join(f"f{j}" for j in range(X.shape[1]))]
    lines += [f"{label}," + ",".join(repr(float(v)) for v in row) for label, row in zip(y, X)]
    path.write_text("\n".join(lines) + "\n")


def test_convert_csv_in_chunks_matches_load_csv(
    tmp_path: Path, arrays: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deltaflow.data.convert as convert_module

    monkeypatch.setattr(convert_module, "CHUNK_BYTES", 12 * 4 * 37)  # 37 rows a chunk
    X, y = arrays
    _write_csv(tmp_path / "a.csv", X, y)
    assert (
        main(["convert", str(tmp_path / "a.csv"), "-o", str(tmp_path / "d"), "--label-column", "0"])
        == 0
    )
    data, expected = open_npy_dir(tmp_path / "d"), load_csv(tmp_path / "a.csv", label_column=0)
    assert np.array_equal(data.X, expected.X_train) and np.array_equal(data.y, expected.y_train)
    assert sorted(os.listdir(tmp_path / "d")) == ["X.npy", "y.npy"]


def test_convert_npz_to_shards_and_a_test_split(tmp_path: Path, arrays: tuple) -> None:
    X, y = arrays
    np.savez_compressed(tmp_path / "a.npz", X=X, y=y, X_test=X[:7], y_test=y[:7])
    out = tmp_path / "d"
    assert main(["convert", str(tmp_path / "a.npz"), "-o", str(out), "--shard-rows", "150"]) == 0
    assert sorted(os.listdir(out)) == [
        "X-00000.npy", "X-00001.npy", "X-00002.npy", "X_test.npy",
        "y-00000.npy", "y-00001.npy", "y-00002.npy", "y_test.npy",
    ]  # fmt: skip
    data = open_npy_dir(out)
    assert np.array_equal(np.asarray(data.X), X) and np.array_equal(np.asarray(data.y), y)
    assert np.array_equal(data.X_test, X[:7]) and data.X.dtype == np.float32


def test_convert_idx_with_labels_and_scale(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (30, 4, 5), dtype=np.uint8)
    labels = rng.integers(0, 10, 30).astype(np.uint8)
    header = bytes([0, 0, 8, 3]) + b"".join(int(s).to_bytes(4, "big") for s in images.shape)
    with gzip.open(tmp_path / "images.gz", "wb") as fh:
        fh.write(header + images.tobytes())
    (tmp_path / "labels").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 30]) + labels.tobytes())
    args = ["convert", str(tmp_path / "images.gz"), "--labels", str(tmp_path / "labels")]
    assert main([*args, "-o", str(tmp_path / "raw")]) == 0
    assert main([*args, "-o", str(tmp_path / "scaled"), "--scale", "255"]) == 0
    raw, scaled = open_npy_dir(tmp_path / "raw"), open_npy_dir(tmp_path / "scaled")
    assert raw.X.dtype == np.uint8 and np.array_equal(raw.X, images.reshape(30, 20))
    assert np.array_equal(scaled.X, images.reshape(30, 20).astype(np.float32) / np.float32(255))
    assert np.array_equal(raw.y, labels)


def test_convert_bad_source_exits_2_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.csv").write_text("1,2,3\n" * 50 + "1,x,3\n")
    bad = ["convert", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "d")]
    assert main(bad) == 2  # no label column named or given: never guessed
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "which column" in err and "--label-column" in err
    assert main([*bad, "--label-column", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 51, column 2: 'x' is not a number" in err
    assert sorted(os.listdir(tmp_path)) == ["bad.csv"]


def test_convert_refuses_an_existing_directory_without_force(tmp_path: Path, arrays: tuple) -> None:
    X, y = arrays
    np.savez(tmp_path / "a.npz", X=X, y=y)
    out = tmp_path / "d"
    out.mkdir()
    (out / "old.txt").write_text("old")
    assert main(["convert", str(tmp_path / "a.npz"), "-o", str(out)]) == 2
    assert main(["convert", str(tmp_path / "a.npz"), "-o", str(out), "--force"]) == 0
    assert sorted(os.listdir(out)) == ["X.npy", "y.npy"]
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "d"]


def test_train_from_a_converted_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    X = rng.random((600, 6)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(np.int64) + 2 * (X[:, 1] > 0.5)
    np.savez(tmp_path / "a.npz", X=X, y=y)
    out = tmp_path / "d"
    assert main(["convert", str(tmp_path / "a.npz"), "-o", str(out), "--shard-rows", "250"]) == 0
    capsys.readouterr()
    args = ["train", "--data", str(out), "--epochs", "30", "--quiet", "--activation", "relu"]
    assert main([*args, "--cost", "cross_entropy", "--learning-rate", "0.5"]) == 0
    printed = capsys.readouterr().out
    accuracy = float(printed.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 80 and "on 120 held-out examples" in printed


def test_evaluate_a_saved_model_on_a_directory(
    npy_dir: Path, arrays: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = arrays
    net = Network([12, 6, 4], "relu", "cross_entropy", seed=0)
    model = tmp_path / "m.safetensors"
    save(net, model)
    assert main(["evaluate", str(model), "--data", str(npy_dir)]) == 0
    cost, accuracy = evaluate(net, X, y)
    assert f"accuracy {accuracy:.2%}, cost {cost:.4f} on all 403 rows" in (capsys.readouterr().out)
    save(net, model, extra={"input_divisor": 255.0})
    assert main(["evaluate", str(model), "--data", str(npy_dir)]) == 2
    assert "convert --scale 255" in capsys.readouterr().err
