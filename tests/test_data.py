"""Tests for deltaflow.data: datasets, file readers and the MNIST download."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import socket
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaflow.data import (
    MNIST_MD5,
    Dataset,
    check_finite,
    load_csv,
    load_dataset,
    load_digits,
    load_mnist,
    load_npz,
    one_hot,
    read_idx,
    train_test_split_indices,
)
from deltaflow.errors import ConfigError, DataError

MNIST_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IDX_TYPES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array: np.ndarray, *, type_byte: int | None = None) -> bytes:
    """Encode an array as an IDX file (big-endian sizes and values)."""
    array = np.asarray(array)
    code = IDX_TYPES[array.dtype] if type_byte is None else type_byte
    header = bytes([0, 0, code, array.ndim])
    header += b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def idx_header(shape: tuple[int, ...], type_byte: int = 0x08) -> bytes:
    return bytes([0, 0, type_byte, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape)


def make_mnist(n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Tiny MNIST-shaped arrays: 28x28 uint8 images and labels 0..9."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }


def write_mnist(directory: Path, arrays: dict[str, np.ndarray], *, gz: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        content = idx_bytes(array)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
        else:
            (directory / name).write_bytes(content)


def check_mnist(dataset: Dataset, arrays: dict[str, np.ndarray]) -> None:
    n_train = arrays["train-labels-idx1-ubyte"].shape[0]
    n_test = arrays["t10k-labels-idx1-ubyte"].shape[0]
    assert dataset.X_train.shape == (n_train, 784)
    assert dataset.X_test.shape == (n_test, 784)
    assert dataset.X_train.dtype == np.float32 and dataset.X_train.flags.c_contiguous
    assert dataset.y_train.dtype == np.int64
    expected = arrays["train-images-idx3-ubyte"].reshape(n_train, -1) / 255.0
    np.testing.assert_allclose(dataset.X_train, expected, rtol=1e-6)
    np.testing.assert_array_equal(dataset.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(dataset.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert dataset.image_shape == (28, 28)
    assert dataset.n_classes == 10
    assert dataset.n_features == 784


def shared_data_dir() -> Path | None:
    override = os.environ.get("DELTAFLOW_SHARED_DATA")
    candidate = (
        Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    return candidate if candidate.is_dir() else None


def shared_file(relative: str) -> Path:
    directory = shared_data_dir()
    if directory is None or not (directory / relative).is_file():
        pytest.skip(f"shared test data {relative} is not available")
    return directory / relative


# ---------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def test_digits_shapes_and_range(digits: Dataset) -> None:
    assert digits.X_train.shape[0] + digits.X_test.shape[0] == 1797
    assert digits.n_features == 64
    assert digits.X_test.shape[0] == 450
    assert digits.X_train.dtype == np.float32 and digits.X_train.flags.c_contiguous
    assert digits.y_train.dtype == np.int64
    for X in (digits.X_train, digits.X_test):
        assert X.min() == 0.0 and X.max() == 1.0
    assert (digits.name, digits.n_classes, digits.image_shape) == ("digits", 10, (8, 8))


def test_digits_split_is_stratified_and_deterministic(digits: Dataset) -> None:
    again = load_digits(seed=0)
    np.testing.assert_array_equal(again.X_train, digits.X_train)
    np.testing.assert_array_equal(again.y_test, digits.y_test)
    other = load_digits(seed=1)
    assert not np.array_equal(other.y_test, digits.y_test)
    total = np.bincount(digits.y_train, minlength=10) + np.bincount(digits.y_test, minlength=10)
    np.testing.assert_allclose(np.bincount(digits.y_test, minlength=10), total * 0.25, atol=1)


def test_digits_without_split_and_bad_test_size() -> None:
    whole = load_digits(test_size=0)
    assert whole.X_train.shape == (1797, 64) and whole.X_test is None
    with pytest.raises(ConfigError, match="test_size"):
        load_digits(test_size=1.5)


# ---------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    content = idx_bytes(images)
    path = tmp_path / "images.idx"  # no .gz suffix either way: detection is by magic bytes
    path.write_bytes(gzip.compress(content) if compress else content)
    result = read_idx(path)
    np.testing.assert_array_equal(result, images)
    assert result.dtype == np.uint8
    assert result.flags.owndata and result.flags.writeable


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_other_types_come_back_native(tmp_path: Path, dtype: type) -> None:
    values = np.array([[-3, 2], [1, 100]], dtype=dtype)
    path = tmp_path / "values.idx"
    path.write_bytes(idx_bytes(values))
    result = read_idx(path)
    np.testing.assert_array_equal(result, values)
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    dtype=st.sampled_from(list(IDX_TYPES)),
    compress=st.booleans(),
)
def test_read_idx_round_trip_property(shape: list[int], dtype: np.dtype, compress: bool) -> None:
    values = (np.arange(int(np.prod(shape))) % 100).astype(dtype).reshape(shape)
    content = idx_bytes(values)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "values"
        path.write_bytes(gzip.compress(content) if compress else content)
        result = read_idx(path)
    assert result.shape == tuple(shape)
    np.testing.assert_array_equal(result, values)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (idx_header((10,)) + bytes(9), "truncated"),
        (idx_header((10,)) + bytes(11), "beyond|holds 11 bytes"),
        (b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + bytes(3), "not an IDX file"),
        (idx_header((3,), type_byte=0x07) + bytes(3), "element type 0x07"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (bytes([0, 0, 8, 5]) + (1).to_bytes(4, "big") * 5 + bytes(1), "5 dimensions"),
        (idx_header((3, 4))[:10], "truncated inside its header"),
        (b"\x00\x00", "too short"),
    ],
)
def test_read_idx_rejects_bad_files(
    tmp_path: Path, compress: bool, content: bytes, message: str
) -> None:
    path = tmp_path / "bad"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(DataError, match=message):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_huge_declared_size_fails_fast_without_allocating(
    tmp_path: Path, compress: bool
) -> None:
    content = idx_header((65535, 65535)) + bytes(84)  # claims 4.3e9 bytes, holds 84
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(content) if compress else content)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(DataError, match="declares shape"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 10 * 2**20


def test_read_idx_gzip_bomb_is_not_decompressed_past_declared_size(tmp_path: Path) -> None:
    path = tmp_path / "bomb"
    path.write_bytes(gzip.compress(idx_header((16,)) + bytes(50 * 2**20)))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="beyond the 16 bytes"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_read_idx_corrupt_gzip(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x1f\x8b" + bytes(range(200)))
    with pytest.raises(DataError, match="gzip"):
        read_idx(garbage)

    good = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8).reshape(10, 100) % 7))
    cut = tmp_path / "cut"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="gzip|truncated"):
        read_idx(cut)

    flipped = bytearray(good)
    flipped[-6] ^= 0xFF  # inside the CRC-32 trailer
    bad_crc = tmp_path / "bad_crc"
    bad_crc.write_bytes(bytes(flipped))
    with pytest.raises(DataError, match="gzip"):
        read_idx(bad_crc)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "absent")


# ---------------------------------------------------------------------------- MNIST files


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_directory(tmp_path: Path, gz: bool) -> None:
    arrays = make_mnist()
    write_mnist(tmp_path, arrays, gz=gz)
    check_mnist(load_mnist(tmp_path), arrays)


def test_load_mnist_mixed_plain_and_gz_prefers_plain(tmp_path: Path) -> None:
    arrays = make_mnist()
    write_mnist(tmp_path, arrays, gz=True)
    plain = {"t10k-labels-idx1-ubyte": arrays["t10k-labels-idx1-ubyte"][::-1].copy()}
    write_mnist(tmp_path, plain, gz=False)
    dataset = load_mnist(tmp_path)
    np.testing.assert_array_equal(dataset.y_test, plain["t10k-labels-idx1-ubyte"])


def test_load_mnist_names_the_missing_files(tmp_path: Path) -> None:
    write_mnist(tmp_path, make_mnist())
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as caught:
        load_mnist(tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message
    assert "has no train-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz];" in message
    assert "train-labels-idx1-ubyte[.gz]" not in message
    assert "expected the four standard MNIST IDX files" in message


def test_load_mnist_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        load_mnist(tmp_path / "absent")


@pytest.mark.parametrize(
    ("name", "replacement", "message"),
    [
        ("train-labels-idx1-ubyte", np.zeros(19, np.uint8), "20 images but .* 19 labels"),
        ("t10k-labels-idx1-ubyte", np.full(10, 10, np.uint8), "label 10"),
        ("train-images-idx3-ubyte", np.zeros((20, 784), np.uint8), r"shape \(n, rows, cols\)"),
        ("train-labels-idx1-ubyte", np.zeros((20, 1), np.uint8), r"shape \(n,\)"),
        ("t10k-images-idx3-ubyte", np.zeros((10, 28, 28), np.int16), "unsigned bytes"),
        ("t10k-images-idx3-ubyte", np.zeros((10, 14, 14), np.uint8), "28x28 but test"),
    ],
)
def test_load_mnist_rejects_inconsistent_files(
    tmp_path: Path, name: str, replacement: np.ndarray, message: str
) -> None:
    arrays = make_mnist()
    arrays[name] = replacement
    write_mnist(tmp_path, arrays)
    with pytest.raises(DataError, match=message):
        load_mnist(tmp_path)


# ---------------------------------------------------------------------------- MNIST download


class MnistServer:
    """A local HTTP server for tiny MNIST files that counts the requests it gets."""

    def __init__(self, root: Path) -> None:
        self.arrays = make_mnist(seed=1)
        write_mnist(root, self.arrays)
        self.checksums = {
            f"{name}.gz": hashlib.md5((root / f"{name}.gz").read_bytes()).hexdigest()
            for name in MNIST_NAMES
        }
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        handler = functools.partial(Handler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def mnist_server(tmp_path: Path, no_proxy: None):
    server = MnistServer(tmp_path / "served")
    try:
        yield server
    finally:
        server.close()


def test_download_fills_cache_once(tmp_path: Path, mnist_server: MnistServer) -> None:
    cache = tmp_path / "cache"
    calls: list[tuple[str, int, int | None]] = []
    dataset = load_mnist(
        cache_dir=cache,
        base_url=mnist_server.url,
        checksums=mnist_server.checksums,
        progress=lambda name, done, total: calls.append((name, done, total)),
    )
    check_mnist(dataset, mnist_server.arrays)
    assert sorted(mnist_server.requests) == sorted(f"/{name}.gz" for name in MNIST_NAMES)
    assert sorted(path.name for path in cache.iterdir()) == sorted(f"{n}.gz" for n in MNIST_NAMES)
    for name in MNIST_NAMES:
        reports = [call for call in calls if call[0] == f"{name}.gz"]
        size = (cache / f"{name}.gz").stat().st_size
        assert reports[0][1] == 0 and reports[-1] == (f"{name}.gz", size, size)

    again = load_mnist(cache_dir=cache, base_url=mnist_server.url, checksums=mnist_server.checksums)
    check_mnist(again, mnist_server.arrays)
    assert len(mnist_server.requests) == 4


def test_download_fetches_only_missing_files(tmp_path: Path, mnist_server: MnistServer) -> None:
    cache = tmp_path / "cache"
    write_mnist(cache, {"train-images-idx3-ubyte": mnist_server.arrays["train-images-idx3-ubyte"]})
    load_mnist(
        cache_dir=cache, base_url=mnist_server.url.rstrip("/"), checksums=mnist_server.checksums
    )
    assert "/train-images-idx3-ubyte.gz" not in mnist_server.requests
    assert len(mnist_server.requests) == 3


def test_download_with_wrong_checksum_leaves_nothing(
    tmp_path: Path, mnist_server: MnistServer
) -> None:
    cache = tmp_path / "cache"
    checksums = {**mnist_server.checksums, "train-images-idx3-ubyte.gz": "0" * 32}
    with pytest.raises(DataError, match="corrupt.*retry"):
        load_mnist(cache_dir=cache, base_url=mnist_server.url, checksums=checksums)
    assert list(cache.iterdir()) == []


def test_download_http_error(tmp_path: Path, mnist_server: MnistServer) -> None:
    with pytest.raises(DataError, match="HTTP 404"):
        load_mnist(cache_dir=tmp_path / "cache", base_url=mnist_server.url + "nowhere/")
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_from_unreachable_server(tmp_path: Path, no_proxy: None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DataError, match="could not download MNIST.*check your connection"):
        load_mnist(cache_dir=tmp_path / "cache", base_url=f"http://127.0.0.1:{port}/")
    assert list((tmp_path / "cache").iterdir()) == []


def test_no_download_when_disabled(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="downloading is off"):
        load_mnist(cache_dir=tmp_path, download=False)


def test_default_cache_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTAFLOW_CACHE", str(tmp_path / "root"))
    with pytest.raises(DataError, match=str(tmp_path / "root" / "mnist")):
        load_mnist(download=False)
    monkeypatch.delenv("DELTAFLOW_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_mnist(tmp_path / "xdg" / "deltaflow" / "mnist", make_mnist())
    check_mnist(load_mnist(download=False), make_mnist())


def test_unknown_checksum_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown file names"):
        load_mnist(cache_dir=tmp_path, checksums={"train-images-idx3-ubyte": "0" * 32})


def test_official_checksums_are_the_published_ones() -> None:
    assert MNIST_MD5["t10k-labels-idx1-ubyte.gz"] == "ec29112dd5afa0611ce80d1b7f02629c"
    assert sorted(MNIST_MD5) == sorted(f"{name}.gz" for name in MNIST_NAMES)


# ---------------------------------------------------------------------------- CSV


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_gzipped_csv_bomb_is_refused_at_the_cap(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("deltaflow.data.csv._MAX_TEXT_BYTES", 2**20)
    small = tmp_path / "small.csv.gz"
    small.write_bytes(gzip.compress(b"1,2\n" * 1000))
    assert load_csv(small).X_train.shape == (1000, 1)  # under the cap: read as usual
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(b"1,2\n" * (20 * 2**20 // 4)))  # 20 MiB of text
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="decompresses to more than 1 MiB of text"):
            load_csv(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20


def test_csv_header_detected_and_label_first(tmp_path: Path) -> None:
    path = write_text(tmp_path / "points.csv", "label,a,b\n1,0.5,2\n0,1.5,3\n")
    dataset = load_csv(path)
    np.testing.assert_array_equal(dataset.X_train, [[0.5, 2], [1.5, 3]])
    np.testing.assert_array_equal(dataset.y_train, [1, 0])
    assert dataset.X_train.dtype == np.float32 and dataset.y_train.dtype == np.int64
    assert dataset.X_test is None and dataset.y_test is None
    assert (dataset.name, dataset.n_classes, dataset.image_shape) == ("points", 2, None)


def test_csv_without_header_label_last(tmp_path: Path) -> None:
    path = write_text(tmp_path / "p.csv", "0.5,2,1\n1.5,3,0\n\n")
    for column in (-1, 2):
        dataset = load_csv(path, label_column=column)
        np.testing.assert_array_equal(dataset.X_train, [[0.5, 2], [1.5, 3]])
        np.testing.assert_array_equal(dataset.y_train, [1, 0])


def test_csv_label_by_name(tmp_path: Path) -> None:
    path = write_text(tmp_path / "p.csv", '"x","digit","y"\n0.5,3,2\n1.5,4,3\n')
    dataset = load_csv(path, label_column="digit")
    np.testing.assert_array_equal(dataset.X_train, [[0.5, 2], [1.5, 3]])
    np.testing.assert_array_equal(dataset.y_train, [3, 4])
    assert dataset.n_classes == 5
    with pytest.raises(DataError, match="no column named 'label'"):
        load_csv(path, label_column="label")


def test_csv_header_forced_and_suppressed(tmp_path: Path) -> None:
    path = write_text(tmp_path / "p.csv", "0,1,2\n1,5,6\n")
    assert load_csv(path, header=True).X_train.shape == (1, 2)
    assert load_csv(path).X_train.shape == (2, 2)
    with pytest.raises(DataError, match="no header"):
        load_csv(path, label_column="0")


def test_csv_keeps_pixel_values_unscaled(tmp_path: Path) -> None:
    path = write_text(tmp_path / "p.csv", "3,0,128,255\n1,255,0,7\n")
    dataset = load_csv(path)
    assert dataset.X_train.max() == 255.0


def test_csv_crlf_and_quoted_numbers(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b'1,"2.5",3\r\n0,4,"5"\r\n')
    dataset = load_csv(path)
    np.testing.assert_array_equal(dataset.X_train, [[2.5, 3], [4, 5]])


def test_csv_wrong_field_count_names_the_line(tmp_path: Path) -> None:
    path = write_text(tmp_path / "p.csv", "label,a,b\n1,2,3\n\n0,1\n")
    with pytest.raises(DataError, match=r"p\.csv: line 4 has 2 fields, expected 3"):
        load_csv(path)


def test_csv_non_numeric_value_names_line_and_column(tmp_path: Path) -> None:
    path = write_text(tmp_path / "p.csv", "1,2,3\n0,4,abc\n")
    with pytest.raises(DataError, match="line 2, column 3: 'abc' is not a number"):
        load_csv(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2\n1.5,3\n", "line 2, column 1: label 1.5 is not an integer"),
        ("1,2\n-1,3\n", "line 2, column 1: label -1 is negative"),
        ("1,2\n0,nan\n", "line 2, column 2: 'nan' is not a finite"),
        ("1,2\n0,1e39\n", "line 2, column 2: '1e39' is not a finite"),
    ],
)
def test_csv_bad_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_csv(write_text(tmp_path / "p.csv", text))


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("\n  \n", "empty"), ("label,a\n", "no data rows"), ("1\n2\n", "1 column")],
)
def test_csv_without_data(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_csv(write_text(tmp_path / "p.csv", text))


def test_csv_label_column_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="out of range"):
        load_csv(write_text(tmp_path / "p.csv", "1,2\n"), label_column=2)


def test_csv_gzipped_detected_by_content(tmp_path: Path) -> None:
    content = gzip.compress(b"y,a\n1,2\n0,3\n")
    for name in ("p.csv.gz", "p.csv"):
        (tmp_path / name).write_bytes(content)
        np.testing.assert_array_equal(load_csv(tmp_path / name).y_train, [1, 0])
    (tmp_path / "cut.csv.gz").write_bytes(content[:-6])
    with pytest.raises(DataError, match="gzip"):
        load_csv(tmp_path / "cut.csv.gz")


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_csv(tmp_path / "absent.csv")


# ---------------------------------------------------------------------------- real files


def test_real_mnist_5k_csv() -> None:
    path = shared_file("mnist-5k/mnist_5k.csv.gz")
    dataset = load_csv(path, label_column=-1)
    assert dataset.X_train.shape == (5000, 784)
    np.testing.assert_array_equal(np.bincount(dataset.y_train), [500] * 10)
    assert dataset.X_train.min() == 0 and dataset.X_train.max() == 255
    assert dataset.n_classes == 10


def test_real_mnist_t10k_idx() -> None:
    images = read_idx(shared_file("mnist/t10k-images-idx3-ubyte.gz"))
    labels = read_idx(shared_file("mnist/t10k-labels-idx1-ubyte.gz"))
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert images.max() == 255
    expected = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    np.testing.assert_array_equal(np.bincount(labels), expected)


def test_real_mnist_directory_lacks_training_images() -> None:
    directory = shared_file("mnist/train-labels-idx1-ubyte.gz").parent
    if (directory / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("the shared MNIST directory is complete")
    with pytest.raises(DataError, match=r"has no train-images-idx3-ubyte\[\.gz\];"):
        load_mnist(directory)


# ---------------------------------------------------------------------------- NPZ


def test_npz_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X, X_test = rng.normal(size=(6, 3)), rng.normal(size=(2, 3))
    path = tmp_path / "blobs.npz"
    np.savez(path, X=X, y=np.array([0, 1, 2, 0, 1, 2]), X_test=X_test, y_test=np.array([3.0, 0]))
    dataset = load_npz(path)
    np.testing.assert_allclose(dataset.X_train, X.astype(np.float32))
    assert dataset.X_train.dtype == np.float32 and dataset.y_test.dtype == np.int64
    np.testing.assert_array_equal(dataset.y_test, [3, 0])
    assert (dataset.name, dataset.n_classes, dataset.n_features) == ("blobs", 4, 3)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.array([[1, None]], dtype=object), "y": np.array([0])}, "pickle"),
        ({"X": np.ones((2, 2))}, "no array 'y'"),
        ({"y": np.ones(2)}, "no array 'X'"),
        ({"X": np.ones(2), "y": np.ones(2)}, "'X' .* expected 2-D"),
        ({"X": np.ones((2, 2)), "y": np.ones((2, 1))}, "'y' .* expected 1-D"),
        ({"X": np.ones((3, 2)), "y": np.ones(2)}, "3 rows but y_train has 2"),
        ({"X": np.array([[1, np.inf]]), "y": np.ones(1)}, "row 0, column 1"),
        ({"X": np.array([["a"]]), "y": np.ones(1)}, "element type"),
        ({"X": np.ones((2, 2)), "y": np.array([0.5, 1])}, "not an integer"),
        ({"X": np.ones((2, 2)), "y": np.ones(2), "X_test": np.ones((1, 2))}, "both or neither"),
        (
            {"X": np.ones((2, 2)), "y": np.ones(2), "X_test": np.ones((1, 3)), "y_test": [1]},
            "same columns",
        ),
    ],
)
def test_npz_rejects_bad_contents(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_npz(path)


def test_npz_rejects_files_that_are_not_archives(tmp_path: Path) -> None:
    text = write_text(tmp_path / "text.npz", "not a zip file")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz(text)
    single = tmp_path / "single.npz"
    with open(single, "wb") as out:
        np.save(out, np.ones(3))
    with pytest.raises(DataError, match=".npy file"):
        load_npz(single)
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "absent.npz")


# ---------------------------------------------------------------------------- load_dataset


def test_load_dataset_dispatch(tmp_path: Path) -> None:
    assert load_dataset("digits", seed=3).name == "digits"
    csv_path = write_text(tmp_path / "p.csv", "1,2,0\n0,3,1\n")
    np.testing.assert_array_equal(load_dataset(csv_path, label_column=-1).y_train, [0, 1])
    np.testing.assert_array_equal(load_dataset(str(csv_path)).y_train, [1, 0])
    np.savez(tmp_path / "d.npz", X=np.ones((2, 2)), y=np.array([0, 1]))
    assert load_dataset(tmp_path / "d.npz").n_classes == 2
    arrays = make_mnist()
    write_mnist(tmp_path / "mnist", arrays)
    check_mnist(load_dataset("mnist", data_dir=tmp_path / "mnist"), arrays)


def test_load_dataset_unknown_and_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'digits', 'mnist', or a path to a .csv"):
        load_dataset("minst")
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "absent.csv.gz")


# ---------------------------------------------------------------------------- helpers


def test_one_hot() -> None:
    encoded = one_hot(np.array([2, 0, 1]), 3)
    np.testing.assert_array_equal(encoded, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert encoded.dtype == np.float64
    assert one_hot(np.array([1]), 2, dtype=np.float32).dtype == np.float32
    assert one_hot(np.array([], dtype=np.int64), 4).shape == (0, 4)


@pytest.mark.parametrize("bad", [10, -1])
def test_one_hot_out_of_range(bad: int) -> None:
    with pytest.raises(DataError, match=rf"label {bad} is outside 0\.\.9 .*output layer"):
        one_hot(np.array([0, bad, 3]), 10)


def test_one_hot_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        one_hot(np.array([0]), 0)
    with pytest.raises(DataError, match="not an integer"):
        one_hot(np.array([0.5]), 2)
    with pytest.raises(DataError, match="1-D"):
        one_hot(np.zeros((2, 2), dtype=np.int64), 2)


@settings(max_examples=50, deadline=None)
@given(m=st.integers(2, 500), fraction=st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1))
def test_split_indices_partition(m: int, fraction: float, seed: int) -> None:
    train, test = train_test_split_indices(m, fraction, np.random.default_rng(seed))
    assert len(test) >= 1 and len(train) >= 1
    assert abs(len(test) - m * fraction) <= 1
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(m))
    again = train_test_split_indices(m, fraction, np.random.default_rng(seed))
    np.testing.assert_array_equal(again[1], test)


def test_split_indices_edge_cases() -> None:
    train, test = train_test_split_indices(5, 0.0, np.random.default_rng(0))
    assert len(test) == 0 and sorted(train) == list(range(5))
    with pytest.raises(ConfigError):
        train_test_split_indices(5, 1.0, np.random.default_rng(0))
    with pytest.raises(ConfigError):
        train_test_split_indices(1, 0.5, np.random.default_rng(0))


def test_check_finite() -> None:
    check_finite(np.ones((2, 2)), "X")
    check_finite(np.arange(4), "X")
    X = np.ones((3, 4))
    X[2, 1], X[1, 3] = np.inf, np.nan
    with pytest.raises(DataError, match=r"X contains NaN .*first at row 1, column 3.*impute"):
        check_finite(X, "X")


def test_dataset_validates_and_converts() -> None:
    dataset = Dataset(np.ones((2, 3), dtype=np.float64), np.array([0, 1]), None, None, "t", 2, None)
    assert dataset.X_train.dtype == np.float32 and dataset.n_features == 3
    with pytest.raises(DataError, match="2 rows but y_train has 3"):
        Dataset(np.ones((2, 3)), np.array([0, 1, 1]), None, None, "t", 2, None)
    with pytest.raises(DataError, match="label 2 but n_classes is 2"):
        Dataset(np.ones((2, 3)), np.array([0, 2]), None, None, "t", 2, None)
    with pytest.raises(DataError, match="both be given"):
        Dataset(np.ones((2, 3)), np.array([0, 1]), np.ones((1, 3)), None, "t", 2, None)
    with pytest.raises(DataError, match="image_shape"):
        Dataset(np.ones((2, 3)), np.array([0, 1]), None, None, "t", 2, (2, 2))


# ------------------------------------------------------- delimiters, names, splits, scaling


@pytest.mark.parametrize("sep", [",", ";", "\t", " ", "  "])
def test_csv_delimiter_is_sniffed(tmp_path: Path, sep: str) -> None:
    path = write_text(tmp_path / "p.csv", f"a{sep}b{sep}label\n1{sep}2{sep}0\n3{sep}4{sep}1\n")
    dataset = load_csv(path, label_column=None)
    np.testing.assert_array_equal(dataset.X_train, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(dataset.y_train, [0, 1])


def test_csv_label_from_header_name_or_an_error_showing_the_first_row(tmp_path: Path) -> None:
    path = write_text(tmp_path / "p.csv", "a,Target,b\n1,1,2\n3,0,4\n")
    np.testing.assert_array_equal(load_csv(path, label_column=None).y_train, [1, 0])
    bare = write_text(tmp_path / "q.csv", "1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="which column of .* Its first row is '1,2,3'"):
        load_csv(bare, label_column=None)


def test_csv_named_labels_become_classes(tmp_path: Path) -> None:
    path = write_text(tmp_path / "p.csv", "x,species\n1,b\n2,a\n3,b\n")
    dataset = load_csv(path, label_column="species")
    assert dataset.class_names == ("a", "b") and dataset.n_classes == 2
    np.testing.assert_array_equal(dataset.y_train, [1, 0, 1])
    again = load_csv(path, label_column=-1, class_names=["b", "a", "c"])
    np.testing.assert_array_equal(again.y_train, [0, 1, 0])
    with pytest.raises(DataError, match="line 2, column 2: label 'b' is not one of"):
        load_csv(path, label_column=-1, class_names=["a"])
    headless = write_text(tmp_path / "h.csv", "5.1,setosa\n6.3,virginica\n")
    assert load_csv(headless, label_column=-1).class_names == ("setosa", "virginica")


def test_stratified_split_is_seeded_and_keeps_class_shares() -> None:
    from deltaflow.data.dataset import stratified_split_indices

    y = np.repeat(np.arange(3), [50, 30, 20])
    train, test = stratified_split_indices(y, 0.2, 7)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    np.testing.assert_array_equal(np.bincount(y[test]), [10, 6, 4])
    again, test2 = stratified_split_indices(y, 0.2, 7)
    np.testing.assert_array_equal(test, test2)
    assert not np.array_equal(test, stratified_split_indices(y, 0.2, 8)[1])


def test_scaling_round_trips_and_refuses_malformed_records() -> None:
    from deltaflow.data.scaling import Scaling, fit_scaling

    X = np.array([[0.0, 10.0], [2.0, 30.0], [4.0, 20.0]])
    s = fit_scaling("standard", X)
    np.testing.assert_allclose(s.apply(X).mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(s.apply(X).std(axis=0), 1, atol=1e-6)
    back = Scaling.from_json(s.to_json(), 2, "m")
    np.testing.assert_array_equal(back.apply(X), s.apply(X))
    m = fit_scaling("minmax", X)
    np.testing.assert_allclose(m.apply(X), [[0, 0], [0.5, 1], [1, 0.5]])
    assert fit_scaling("auto", X).kind == "standard"
    pixels = np.tile(np.arange(64.0) * 4, (2, 1))
    assert fit_scaling("auto", pixels).divisor == 255.0
    for bad in (
        {"kind": "x"},
        {**s.to_json(), "spread": [1.0, -1.0]},
        {**s.to_json(), "shift": [1]},
    ):
        with pytest.raises(DataError, match="malformed"):
            Scaling.from_json(bad, 2, "m")
