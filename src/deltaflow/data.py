"""Datasets and the readers that load them.

Every loader returns a :class:`Dataset`: a design matrix ``X`` of shape ``(m, S_0)``
(one row per example, one column per input unit, float32, C order) and a label vector
``y`` of shape ``(m,)`` (int64 class indices ``0 .. n_classes - 1``), for a training
split and, where the source has one, a test split.

Sources
-------
``digits``
    scikit-learn's bundled 8x8 handwritten digits (1797 images), scaled to ``[0, 1]``.
``mnist``
    The MNIST IDX files, from a directory or downloaded once into a cache.
CSV files
    One integer label column, every other column a numeric feature.
NPZ files
    Arrays ``X`` and ``y``, optionally ``X_test`` and ``y_test``.

Every problem with the data raises :class:`~deltaflow.errors.DataError` with a message
that names the file, the place in it and what to do about it.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import http.client
import io
import math
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from deltaflow.errors import ConfigError, DataError

__all__ = [
    "MNIST_BASE_URL",
    "MNIST_MD5",
    "Dataset",
    "check_finite",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_features",
    "load_mnist",
    "load_npz",
    "one_hot",
    "pixel_divisor",
    "read_idx",
    "train_test_split_indices",
]

ProgressCallback = Callable[[str, int, "int | None"], None]

MNIST_BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
"""The MNIST mirror that torchvision uses; it serves the four official ``.gz`` files."""

MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
"""Published md5 checksums of the four official MNIST distribution files."""

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_TEXT_BYTES = 1 << 30  # a gzipped CSV may decompress to at most 1 GiB

# IDX element type byte -> numpy dtype (IDX stores multi-byte values big-endian).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Deflate cannot expand data by more than about 1032:1, so a gzip file of n bytes
# cannot decompress to more than this many times n bytes.
_MAX_DEFLATE_RATIO = 1032
_NPZ_KEYS = ("X", "y", "X_test", "y_test")
# A label is a class index and each class gets an output unit: a file's labels must not
# be allowed to ask for an absurd output layer (a label of 2**62 would).
_MAX_CLASSES = 1 << 20


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled classification dataset with a training split and an optional test split.

    The arrays are checked and converted on construction: features become float32 in C
    order, labels become int64. Instances compare by identity (arrays have no single
    truth value).

    Parameters
    ----------
    X_train : numpy.ndarray
        Training inputs of shape ``(m, S_0)``: one row per example.
    y_train : numpy.ndarray
        Training labels of shape ``(m,)``, integer class indices ``>= 0``.
    X_test : numpy.ndarray or None
        Test inputs of shape ``(m_test, S_0)``, or None when the source has no split.
    y_test : numpy.ndarray or None
        Test labels of shape ``(m_test,)``; None exactly when ``X_test`` is None.
    name : str
        A short name for messages and model files, such as ``"mnist"`` or a file stem.
    n_classes : int or None
        Number of classes ``K``; every label lies in ``0 .. K - 1``. None if unknown.
    image_shape : tuple of (int, int) or None
        ``(rows, cols)`` when each row of ``X`` is an image flattened row-major, so that
        ``rows * cols == S_0``; None for non-image data.

    Raises
    ------
    DataError
        If shapes disagree, labels are not non-negative integers, a label is not below
        ``n_classes``, or ``image_shape`` does not match ``S_0``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    name: str
    n_classes: int | None
    image_shape: tuple[int, int] | None

    def __post_init__(self) -> None:
        X_train = _as_features(self.X_train, "X_train")
        y_train = _as_labels(self.y_train, "y_train")
        _check_rows(X_train, y_train, "X_train", "y_train")
        object.__setattr__(self, "X_train", X_train)
        object.__setattr__(self, "y_train", y_train)

        if (self.X_test is None) != (self.y_test is None):
            raise DataError("X_test and y_test must both be given or both be None")
        if self.X_test is not None and self.y_test is not None:
            X_test = _as_features(self.X_test, "X_test")
            y_test = _as_labels(self.y_test, "y_test")
            _check_rows(X_test, y_test, "X_test", "y_test")
            if X_test.shape[1] != X_train.shape[1]:
                raise DataError(
                    f"X_test has {X_test.shape[1]} features but X_train has "
                    f"{X_train.shape[1]}; both splits need the same columns"
                )
            object.__setattr__(self, "X_test", X_test)
            object.__setattr__(self, "y_test", y_test)

        if self.n_classes is not None:
            self._check_n_classes(self.n_classes)
        if self.image_shape is not None:
            rows, cols = self.image_shape
            if rows * cols != X_train.shape[1]:
                raise DataError(
                    f"image_shape {self.image_shape} has {rows * cols} pixels but the "
                    f"data has {X_train.shape[1]} features"
                )

    def _check_n_classes(self, n_classes: int) -> None:
        if n_classes < 1:
            raise DataError(f"n_classes must be at least 1, got {n_classes}")
        for labels, label_name in ((self.y_train, "y_train"), (self.y_test, "y_test")):
            if labels is not None and labels.size and labels.max() >= n_classes:
                raise DataError(
                    f"{label_name} contains label {int(labels.max())} but n_classes is "
                    f"{n_classes}; labels must lie in 0..{n_classes - 1}"
                )

    @property
    def n_features(self) -> int:
        """Number of input features ``S_0`` (the width of the input layer)."""
        return int(self.X_train.shape[1])


def check_finite(X: np.ndarray, name: str) -> None:
    """Raise if an array holds NaN or infinite values.

    Parameters
    ----------
    X : numpy.ndarray
        The array to check, usually a design matrix of shape ``(m, S_0)``.
    name : str
        How to call the array in the message, such as ``"X"`` or ``"X_test"``.

    Raises
    ------
    DataError
        If any entry is NaN or infinite. The message gives the first offending row and
        column (or index, for a 1-D array).
    """
    X = np.asarray(X)
    if X.dtype.kind not in "fc" or np.isfinite(X).all():
        return
    first = tuple(int(i) for i in np.argwhere(~np.isfinite(X))[0])
    if len(first) == 2:
        where = f"row {first[0]}, column {first[1]}"
    elif len(first) == 1:
        where = f"index {first[0]}"
    else:
        where = f"index {first}"
    raise DataError(
        f"{name} contains NaN or infinite values (first at {where}); clean or impute them first"
    )


def one_hot(y: np.ndarray, n_classes: int, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    """Encode class indices as one-hot target rows.

    Parameters
    ----------
    y : numpy.ndarray
        Labels of shape ``(m,)``, integer class indices.
    n_classes : int
        Number of classes ``K``, the width of the output layer ``S_L``.
    dtype : numpy dtype, default numpy.float64
        Element type of the result.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(m, K)`` whose row ``i`` is 1 in column ``y[i]`` and 0 elsewhere.

    Raises
    ------
    ConfigError
        If ``n_classes`` is not a positive integer.
    DataError
        If ``y`` is not 1-D and integer-valued, or a label lies outside ``0 .. K - 1``.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise ConfigError(f"n_classes must be a positive integer, got {n_classes!r}")
    if n_classes < 1:
        raise ConfigError(f"n_classes must be a positive integer, got {n_classes}")
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise DataError(f"labels must be 1-D of shape (m,), got shape {labels.shape}")
    labels = _as_labels(labels, "labels", allow_negative=True)
    outside = (labels < 0) | (labels >= n_classes)
    if outside.any():
        bad = int(labels[np.argmax(outside)])
        raise DataError(
            f"label {bad} is outside 0..{n_classes - 1} (n_classes={n_classes}); check that "
            "the output layer has one unit per class and that labels start at 0"
        )
    encoded = np.zeros((labels.shape[0], int(n_classes)), dtype=dtype)
    encoded[np.arange(labels.shape[0]), labels] = 1
    return encoded


def train_test_split_indices(
    m: int, test_fraction: float, rng: np.random.Generator | int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(m)`` at random into training and held-out indices.

    Parameters
    ----------
    m : int
        Number of examples.
    test_fraction : float
        Fraction of the examples to hold out, in ``[0, 1)``. A positive fraction holds
        out at least one example and keeps at least one for training.
    rng : numpy.random.Generator or int or None
        Source of randomness; an int or None seeds a new ``numpy.random.default_rng``.

    Returns
    -------
    train_idx : numpy.ndarray
        Indices of the training examples, shape ``(m - m_test,)``, in shuffled order.
    test_idx : numpy.ndarray
        Indices of the held-out examples, shape ``(m_test,)``, in shuffled order.

    Raises
    ------
    ConfigError
        If ``m`` is negative, ``test_fraction`` is outside ``[0, 1)``, or a positive
        fraction is asked of fewer than two examples.
    """
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 0:
        raise ConfigError(f"m must be a non-negative integer, got {m!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
    m_test = 0
    if test_fraction > 0:
        if m < 2:
            raise ConfigError(f"cannot hold out a fraction of {m} example(s); need at least 2")
        m_test = min(max(1, round(m * test_fraction)), m - 1)
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    order = generator.permutation(int(m))
    return order[m_test:], order[:m_test]


def load_digits(*, test_size: float = 0.25, seed: int = 0) -> Dataset:
    """Load scikit-learn's bundled 8x8 handwritten digits.

    Parameters
    ----------
    test_size : float, default 0.25
        Fraction of the 1797 images held out as the test split, in ``[0, 1)``; 0 gives
        no test split.
    seed : int, default 0
        Seed of the stratified split; the same seed always gives the same split.

    Returns
    -------
    Dataset
        ``X`` of shape ``(m, 64)`` with pixels scaled from ``0..16`` to ``[0, 1]``,
        ``n_classes=10``, ``image_shape=(8, 8)``. Each class keeps its proportion in
        both splits.

    Raises
    ------
    ConfigError
        If ``test_size`` is outside ``[0, 1)``.
    """
    if not 0.0 <= test_size < 1.0:
        raise ConfigError(f"test_size must be in [0, 1), got {test_size}")
    from sklearn.datasets import load_digits as sklearn_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_load_digits()
    X = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    if test_size == 0:
        return Dataset(X, y, None, None, "digits", 10, (8, 8))
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=seed
    )
    return Dataset(X_train, y_train, X_test, y_test, "digits", 10, (8, 8))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not.

    The header is checked before anything is allocated: the magic number, the element
    type, the number of dimensions and that the declared size matches the data exactly.
    A gzip file is recognised by its magic bytes, not its name, and is never
    decompressed past one byte more than the header declares.

    Parameters
    ----------
    path : str or os.PathLike
        The IDX file.

    Returns
    -------
    numpy.ndarray
        A new array with the shape the header declares. The element type is uint8 for
        type byte 0x08; the other IDX types (int8, int16, int32, float32, float64) come
        back in native byte order.

    Raises
    ------
    DataError
        If the file is missing, is not a valid IDX file, is truncated or has trailing
        data, or is a corrupt gzip file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            file_size = os.fstat(raw.fileno()).st_size
            if not compressed:
                return _read_idx_stream(raw, path, file_size=file_size)
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_idx_stream(stream, path, max_bytes=file_size * _MAX_DEFLATE_RATIO)
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a corrupt or truncated gzip file ({exc})") from exc
    except OSError as exc:
        raise DataError(f"could not read {path} ({exc})") from exc


def _read_idx_stream(
    stream: io.BufferedIOBase,
    path: Path,
    *,
    file_size: int | None = None,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Parse an IDX header and payload from an open binary stream.

    Exactly one of ``file_size`` (uncompressed: the payload must fill the file exactly)
    and ``max_bytes`` (gzip: an upper bound on the decompressed size) is given.
    """
    magic = stream.read(4)
    if len(magic) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(magic)} bytes of header)")
    if magic[0] != 0 or magic[1] != 0:
        raise DataError(
            f"{path} is not an IDX file: it starts with bytes {magic[:2].hex(' ')}, expected 00 00"
        )
    type_byte, ndim = magic[2], magic[3]
    if type_byte not in _IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        raise DataError(f"{path} has IDX element type 0x{type_byte:02X}; expected one of {known}")
    if not 1 <= ndim <= 4:
        raise DataError(f"{path} declares {ndim} dimensions; IDX files here must have 1 to 4")
    dims_bytes = stream.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(f"{path} is truncated inside its header")
    shape = tuple(int.from_bytes(dims_bytes[4 * i : 4 * i + 4], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_byte]
    n_elements = 1
    for size in shape:
        n_elements *= size
    payload = n_elements * dtype.itemsize
    header = 4 + 4 * ndim

    if file_size is not None and header + payload != file_size:
        raise DataError(
            f"{path} declares shape {shape} ({payload:,} bytes of data) but holds "
            f"{file_size - header:,} bytes after its header; the file is truncated or corrupt"
        )
    if max_bytes is not None and header + payload > max_bytes:
        raise DataError(
            f"{path} declares shape {shape} ({payload:,} bytes of data), more than its "
            "compressed size can hold; the file is corrupt or not an IDX file"
        )

    result = np.empty(shape, dtype=dtype)
    buffer = result.reshape(-1).view(np.uint8).data
    filled = 0
    while filled < payload:
        count = stream.readinto(buffer[filled : filled + _CHUNK_BYTES])
        if not count:
            raise DataError(
                f"{path} is truncated: its header declares {payload:,} bytes of data "
                f"but it holds only {filled:,}"
            )
        filled += count
    if stream.read(1):
        raise DataError(
            f"{path} has data beyond the {payload:,} bytes its header declares; "
            "the file is corrupt or not an IDX file"
        )
    if dtype.byteorder == ">":
        return result.astype(dtype.newbyteorder("="))
    return result


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    base_url: str | None = None,
    progress: ProgressCallback | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Dataset:
    """Load MNIST from a directory, or from a local cache that is filled on first use.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        A directory holding the four standard IDX files ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
        ``t10k-labels-idx1-ubyte``, each plain or with a ``.gz`` suffix. When given,
        nothing is downloaded.
    cache_dir : str or os.PathLike, optional
        Directory that holds (or receives) the four ``.gz`` files when ``data_dir`` is
        None. Defaults to ``$DELTAFLOW_CACHE/mnist`` if that variable is set, else
        ``$XDG_CACHE_HOME/deltaflow/mnist``, else ``~/.cache/deltaflow/mnist``.
    download : bool, default True
        Whether to download files missing from the cache.
    base_url : str, optional
        Where to download from; defaults to :data:`MNIST_BASE_URL`.
    progress : callable, optional
        Called as ``progress(filename, bytes_done, bytes_total)`` when a download starts
        and after each chunk arrives; ``bytes_total`` is None when the server does not
        say. Silent by default.
    checksums : mapping of str to str, optional
        md5 checksums by ``.gz`` file name, overriding the entries of :data:`MNIST_MD5`
        (for mirrors that serve other files, and for tests).

    Returns
    -------
    Dataset
        60000 training and 10000 test images for the official files, ``X`` of shape
        ``(m, rows * cols)`` with pixels scaled from ``0..255`` to ``[0, 1]``,
        ``n_classes=10``, ``image_shape=(rows, cols)``.

    Raises
    ------
    DataError
        If files are missing (from ``data_dir``, or from the cache with
        ``download=False``), a download fails or is corrupt, or a file is not valid
        MNIST data.

    Notes
    -----
    Each download goes to a temporary file in the cache directory and is moved into
    place only after its md5 checksum matches, so the cache never holds a partial file.
    """
    if data_dir is not None:
        directory = Path(data_dir)
        if not directory.is_dir():
            raise DataError(f"no such directory: {directory} (given as the MNIST data directory)")
        found, missing = _find_mnist_files(directory)
        if missing:
            raise DataError(
                f"directory {directory} has no {', '.join(f'{n}[.gz]' for n in missing)}; "
                f"expected the four standard MNIST IDX files: {', '.join(_MNIST_FILES)} "
                "(each plain or .gz)"
            )
        return _mnist_from_files(found, hint="")

    unknown = sorted(set(checksums or {}) - set(MNIST_MD5))
    if unknown:
        raise ConfigError(
            f"checksums has unknown file names {unknown}; expected keys among {sorted(MNIST_MD5)}"
        )
    directory = Path(cache_dir) if cache_dir is not None else _default_mnist_cache()
    found, missing = _find_mnist_files(directory)
    if missing and not download:
        raise DataError(
            f"MNIST is not in the cache {directory} (missing {', '.join(missing)}) and "
            "downloading is off; allow downloads or pass --data-dir DIR with the four IDX files"
        )
    if missing:
        _make_cache_dir(directory)
        url = base_url if base_url is not None else MNIST_BASE_URL
        url = url if url.endswith("/") else url + "/"
        expected = {**MNIST_MD5, **(checksums or {})}
        for name in missing:
            filename = name + ".gz"
            target = directory / filename
            _download(url + filename, target, expected.get(filename), progress)
            found[name] = target
    return _mnist_from_files(found, hint=f"; delete it from {directory} to download it again")


def _default_mnist_cache() -> Path:
    """The MNIST cache directory chosen by the environment."""
    root = os.environ.get("DELTAFLOW_CACHE")
    if root:
        return Path(root).expanduser() / "mnist"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "deltaflow" / "mnist"


def _find_mnist_files(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """Locate the four MNIST files in a directory, plain preferred over ``.gz``."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in _MNIST_FILES:
        for candidate in (directory / name, directory / (name + ".gz")):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            missing.append(name)
    return found, missing


def _make_cache_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the cache directory {directory} ({exc}); set DELTAFLOW_CACHE "
            "to a writable directory or pass --data-dir DIR with the four IDX files"
        ) from exc


def _download(url: str, target: Path, md5: str | None, progress: ProgressCallback | None) -> None:
    """Download ``url`` to ``target`` atomically, checking its md5 when one is known."""
    try:
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
    except OSError as exc:
        raise DataError(f"cannot write to the cache directory {target.parent} ({exc})") from exc
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            digest = _fetch(url, out, target.name, progress)
        if md5 is not None and digest != md5.lower():
            raise DataError(
                f"the download of {url} is corrupt (md5 {digest}, expected {md5}); "
                "retry, or pass --data-dir DIR with the four IDX files"
            )
        os.replace(temp, target)
    except OSError as exc:
        raise DataError(f"cannot write {target} ({exc})") from exc
    finally:
        temp.unlink(missing_ok=True)


def _fetch(
    url: str, out: io.BufferedWriter, filename: str, progress: ProgressCallback | None
) -> str:
    """Stream ``url`` into ``out`` and return the md5 hex digest of what arrived."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        response = urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise _download_error(url, exc) from exc
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        if progress is not None:
            progress(filename, done, total)
        while True:
            try:
                chunk = response.read(_CHUNK_BYTES)
            except (http.client.HTTPException, OSError) as exc:
                raise _download_error(url, exc) from exc
            if not chunk:
                break
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(filename, done, total)
    if total is not None and done != total:
        raise _download_error(url, f"received {done:,} of {total:,} bytes")
    return digest.hexdigest()


def _download_error(url: str, cause: BaseException | str) -> DataError:
    if isinstance(cause, urllib.error.HTTPError):
        reason = f"HTTP {cause.code} {cause.reason}"
    elif isinstance(cause, urllib.error.URLError):
        reason = str(cause.reason)
    else:
        reason = str(cause) or type(cause).__name__
    return DataError(
        f"could not download MNIST from {url} ({reason}); check your connection or pass "
        "--data-dir DIR with the four IDX files"
    )


def _mnist_from_files(files: Mapping[str, Path], *, hint: str) -> Dataset:
    """Read and check the four MNIST files and build the dataset."""
    arrays = {}
    for name, path in files.items():
        try:
            arrays[name] = read_idx(path)
        except DataError as exc:
            raise DataError(f"{exc}{hint}") from exc
    X_train, y_train = _mnist_split(
        arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"], files, "train"
    )
    X_test, y_test = _mnist_split(
        arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"], files, "t10k"
    )
    if X_train.shape[1:] != X_test.shape[1:]:
        raise DataError(
            f"MNIST training images are {X_train.shape[1]}x{X_train.shape[2]} but test "
            f"images are {X_test.shape[1]}x{X_test.shape[2]}"
        )
    rows, cols = X_train.shape[1:]
    return Dataset(
        _pixels_to_unit(X_train),
        y_train,
        _pixels_to_unit(X_test),
        y_test,
        "mnist",
        10,
        (rows, cols),
    )


def _mnist_split(
    images: np.ndarray, labels: np.ndarray, files: Mapping[str, Path], split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Check one split's image and label arrays against each other."""
    images_path = files[f"{split}-images-idx3-ubyte"]
    labels_path = files[f"{split}-labels-idx1-ubyte"]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path} holds {images.dtype} data of shape {images.shape}; MNIST images "
            "are unsigned bytes of shape (n, rows, cols)"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(
            f"{labels_path} holds {labels.dtype} data of shape {labels.shape}; MNIST labels "
            "are unsigned bytes of shape (n,)"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels"
        )
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"{images_path} holds no pixels (shape {images.shape})")
    if labels.max() > 9:
        raise DataError(f"{labels_path} contains label {int(labels.max())}; MNIST labels are 0..9")
    return images, labels.astype(np.int64)


def _pixels_to_unit(images: np.ndarray) -> np.ndarray:
    """Flatten ``(n, rows, cols)`` uint8 images to ``(n, rows * cols)`` float32 in [0, 1]."""
    flat = images.reshape(images.shape[0], -1).astype(np.float32)
    flat /= 255.0
    return flat


def load_csv(
    path: str | os.PathLike[str],
    *,
    label_column: int | str = 0,
    header: bool | None = None,
) -> Dataset:
    """Load a CSV file with one integer label column and numeric feature columns.

    Values are not rescaled: pixel data in ``0..255`` stays in ``0..255``. Scale the
    features yourself if the network expects another range.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file, comma-separated, UTF-8; gzip-compressed files (recognised by their
        magic bytes) are accepted. Blank lines are skipped.
    label_column : int or str, default 0
        The label column: an index (negative counts from the end, so -1 is the last
        column) or, for a file with a header row, a column name.
    header : bool or None, default None
        Whether the first line is a header row. None detects it: the first line is a
        header if any of its fields is not a number.

    Returns
    -------
    Dataset
        All rows as the training split (no test split), ``X`` of shape ``(m, S_0)``
        float32, ``n_classes`` one more than the largest label, named after the file.

    Raises
    ------
    DataError
        If the file is missing, empty, not UTF-8 text or corrupt gzip; if a line has the
        wrong number of fields or a value that is not a finite number; if a label is not
        a non-negative integer; or if ``label_column`` names no column. Messages give the
        1-based line and column.
    """
    path = Path(path)
    lines = _read_text_lines(path)
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise DataError(f"{path} is empty; expected a label column and feature columns")

    first_fields = _split_csv_line(numbered[0][1])
    has_header = header if header is not None else not all(map(_is_number, first_fields))
    names = [field.strip() for field in first_fields] if has_header else None
    data = numbered[1:] if has_header else numbered
    if not data:
        raise DataError(f"{path} has a header row but no data rows")

    n_fields = len(first_fields)
    if n_fields < 2:
        raise DataError(
            f"{path} has {n_fields} column; expected a label column and at least one feature"
        )
    label_index = _label_index(label_column, names, n_fields, path)
    values = _parse_numbers(data, n_fields, path)

    line_numbers = np.fromiter((number for number, _ in data), dtype=np.int64, count=len(data))
    y = _csv_labels(values[:, label_index], line_numbers, label_index, path)
    with np.errstate(over="ignore"):
        X = np.delete(values, label_index, axis=1).astype(np.float32)
    if not np.isfinite(X).all():
        row, column = np.argwhere(~np.isfinite(X))[0]
        column = column + (column >= label_index)
        token = _split_csv_line(lines[line_numbers[row] - 1])[column].strip()
        raise DataError(
            f"{path}: line {line_numbers[row]}, column {column + 1}: {token!r} is not a "
            "finite float32 number; clean or impute it first"
        )
    name = path.name.removesuffix(".gz").removesuffix(".GZ")
    return Dataset(X, y, None, None, Path(name).stem, _n_classes([y], path), None)


def _read_text_lines(path: Path) -> list[str]:
    """Read a possibly gzip-compressed UTF-8 file and split it into lines."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except OSError as exc:
        raise DataError(f"could not read {path} ({exc})") from exc
    if content[:2] == _GZIP_MAGIC:
        try:
            content = _gunzip_capped(content, _MAX_TEXT_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is a corrupt or truncated gzip file ({exc})") from exc
        if len(content) > _MAX_TEXT_BYTES:
            raise DataError(
                f"{path} decompresses to more than {_MAX_TEXT_BYTES >> 20} MiB of text; "
                "split it, or convert it to an .npz file with arrays X and y"
            )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded); "
            "expected a comma-separated text file"
        ) from exc
    return [line.rstrip("\r") for line in text.split("\n")]


def _gunzip_capped(compressed: bytes, cap: int) -> bytes:
    """Decompress gzip data in chunks, stopping just past ``cap`` bytes.

    Reading chunk by chunk keeps a gzip bomb from filling memory (``GzipFile.read(n)``
    would allocate ``n`` bytes up front).
    """
    chunks, total = [], 0
    with gzip.GzipFile(fileobj=io.BytesIO(compressed)) as stream:
        while total <= cap:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    return b"".join(chunks)


def _split_csv_line(line: str) -> list[str]:
    """Split one CSV line into fields, honouring quotes only where there are any."""
    if '"' in line:
        return next(csv.reader([line]))
    return line.split(",")


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _label_index(
    label_column: int | str, names: list[str] | None, n_fields: int, path: Path
) -> int:
    """Resolve ``label_column`` to a non-negative column index."""
    if isinstance(label_column, str):
        if names is None:
            raise DataError(
                f"label_column {label_column!r} is a column name but {path} has no header "
                "row; pass the column's index instead"
            )
        matches = [index for index, name in enumerate(names) if name == label_column]
        if len(matches) != 1:
            shown = ", ".join(repr(name) for name in names[:8])
            more = ", ..." if len(names) > 8 else ""
            problem = "no column" if not matches else f"{len(matches)} columns"
            raise DataError(
                f"{path} has {problem} named {label_column!r}; its columns are {shown}{more}"
            )
        return matches[0]
    if isinstance(label_column, bool) or not isinstance(label_column, (int, np.integer)):
        raise ConfigError(f"label_column must be an int or a column name, got {label_column!r}")
    if not -n_fields <= label_column < n_fields:
        raise DataError(
            f"label_column {label_column} is out of range for {path}, which has {n_fields} "
            f"columns (valid: {-n_fields}..{n_fields - 1})"
        )
    return int(label_column) % n_fields


def _parse_numbers(data: list[tuple[int, str]], n_fields: int, path: Path) -> np.ndarray:
    """Parse the data lines into an ``(m, n_fields)`` array, int64 if possible else float64."""
    quoted = any('"' in line for _, line in data)
    if quoted:
        rows = [_split_csv_line(line) for _, line in data]
        counts = [len(row) for row in rows]
    else:
        counts = [line.count(",") + 1 for _, line in data]
    if any(count != n_fields for count in counts):
        index = next(i for i, count in enumerate(counts) if count != n_fields)
        raise DataError(
            f"{path}: line {data[index][0]} has {counts[index]} fields, expected {n_fields}"
        )
    if quoted:
        tokens = [field for row in rows for field in row]
    else:
        tokens = ",".join(line for _, line in data).split(",")
    for dtype in (np.int64, np.float64):
        try:
            return np.array(tokens, dtype=dtype).reshape(len(data), n_fields)
        except (ValueError, OverflowError):
            continue
    raise _first_bad_number(data, path)


def _first_bad_number(data: list[tuple[int, str]], path: Path) -> DataError:
    """Locate the first field that is not a number and describe it."""
    for number, line in data:
        for column, field in enumerate(_split_csv_line(line), start=1):
            if not _is_number(field):
                return DataError(
                    f"{path}: line {number}, column {column}: {field!r} is not a number"
                )
    return DataError(f"{path} contains a value that is not a number")


def _csv_labels(
    labels: np.ndarray, line_numbers: np.ndarray, label_index: int, path: Path
) -> np.ndarray:
    """Check that CSV labels are non-negative integers and return them as int64."""
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels)) | (np.abs(labels) >= 2**53)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"{path}: line {line_numbers[row]}, column {label_index + 1}: label "
                f"{float(labels[row]):g} is not an integer; labels must be class indices "
                "0, 1, 2, ..."
            )
    labels = labels.astype(np.int64)
    if (labels < 0).any():
        row = int(np.argmax(labels < 0))
        raise DataError(
            f"{path}: line {line_numbers[row]}, column {label_index + 1}: label "
            f"{labels[row]} is negative; labels must be class indices 0, 1, 2, ..."
        )
    return labels


def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """Load arrays ``X`` and ``y`` (and optionally ``X_test``, ``y_test``) from an NPZ file.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``numpy.savez`` or ``numpy.savez_compressed``. Pickled
        (object) arrays are refused. Values are not rescaled.

    Returns
    -------
    Dataset
        ``X`` of shape ``(m, S_0)`` as float32 and ``y`` of shape ``(m,)`` as int64, with a
        test split when the file has ``X_test`` and ``y_test``; ``n_classes`` is one more
        than the largest label, and the name is the file stem.

    Raises
    ------
    DataError
        If the file is missing or not an NPZ archive, lacks ``X`` or ``y``, holds object
        arrays, has arrays of the wrong shape or type, or ``X`` holds NaN or infinity.
    """
    path = Path(path)
    try:
        with _open_npz(path) as archive:
            arrays = {
                key: _npz_array(archive, key, path) for key in _NPZ_KEYS if key in archive.files
            }
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from exc

    for key in ("X", "y"):
        if key not in arrays:
            raise DataError(
                f"{path} has no array {key!r} (it has {sorted(arrays) or 'none of them'}); "
                "expected X of shape (m, S_0) and y of shape (m,), optionally X_test and y_test"
            )
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path} has only one of X_test and y_test; include both or neither")
    for key in ("X", "X_test"):
        if key in arrays:
            check_finite(arrays[key], f"{key} in {path}")
    try:
        dataset = Dataset(
            arrays["X"],
            arrays["y"],
            arrays.get("X_test"),
            arrays.get("y_test"),
            path.stem,
            None,
            None,
        )
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
    labels = [y for y in (dataset.y_train, dataset.y_test) if y is not None]
    return replace(dataset, n_classes=_n_classes(labels, path))


def _n_classes(labels: list[np.ndarray], path: Path) -> int:
    """One more than the largest label, refusing labels too large to be class indices."""
    top = max(int(y.max()) for y in labels)
    if top >= _MAX_CLASSES:
        raise DataError(
            f"{path} has label {top}, too large for a class index (at most "
            f"{_MAX_CLASSES - 1}: one output unit per class); labels must be 0, 1, 2, ..."
        )
    return top + 1


@contextlib.contextmanager
def _open_npz(path: Path) -> Iterator[np.lib.npyio.NpzFile]:
    """``np.load`` an NPZ archive, refusing a bare .npy file before numpy reads it.

    (numpy allocates the shape a .npy header declares before reading the data.) The
    file is opened here so that it is closed even when numpy fails to open the archive.
    """
    with open(path, "rb") as fh:
        if fh.read(6) == b"\x93NUMPY":
            raise DataError(
                f"{path} is a .npy file holding one array; expected an .npz file with "
                "arrays X and y"
            )
        fh.seek(0)
        with np.load(fh, allow_pickle=False) as archive:
            yield archive


def _check_npz_member(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> None:
    """Check the size an NPZ member's header declares against what the archive holds.

    numpy allocates the declared shape before reading, so a tiny file claiming a huge
    array must be refused first. The member's uncompressed size is itself bounded by its
    compressed size (deflate expands at most about 1032:1), which is bounded by the file.
    """
    zf = archive.zip
    assert zf is not None  # an open NpzFile always has its archive
    name = key if key in zf.namelist() else key + ".npy"
    info = zf.getinfo(name)
    limit = info.compress_size * (
        1 if info.compress_type == zipfile.ZIP_STORED else _MAX_DEFLATE_RATIO
    )
    if info.compress_size > os.path.getsize(path) or info.file_size > limit:
        raise DataError(
            f"array {key!r} in {path} claims {info.file_size:,} bytes, more than the archive "
            "can hold; the file is corrupt"
        )
    with zf.open(name) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise DataError(
                    f"array {key!r} in {path} uses .npy format version {version}; "
                    "save it with numpy.savez"
                )
        except (ValueError, EOFError, SyntaxError, TypeError) as exc:
            raise DataError(f"array {key!r} in {path} cannot be read ({exc})") from exc
        header_size = fh.tell()
    if dtype.hasobject:
        return  # refused by allow_pickle=False when read, with its own message
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size - header_size:
        raise DataError(
            f"array {key!r} in {path} declares shape {shape} ({declared:,} bytes) but holds "
            f"{max(info.file_size - header_size, 0):,} bytes; the file is truncated or corrupt"
        )


def _npz_array(archive: Mapping[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    """Read one array from an open NPZ archive and check its rank and element type."""
    if isinstance(archive, np.lib.npyio.NpzFile):
        _check_npz_member(archive, key, path)
    try:
        array = archive[key]
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise DataError(f"array {key!r} in {path} cannot be read ({exc})") from exc
        raise DataError(
            f"array {key!r} in {path} holds Python objects, which need pickle to load; "
            "save plain numeric arrays instead"
        ) from exc
    if not isinstance(array, np.ndarray):  # a member that is not a .npy array
        raise DataError(f"{key!r} in {path} is not a numpy array; save arrays with numpy.savez")
    expected_ndim = 2 if key.startswith("X") else 1
    if array.ndim != expected_ndim:
        shape = "(m, S_0)" if expected_ndim == 2 else "(m,)"
        raise DataError(
            f"array {key!r} in {path} has shape {array.shape}; expected {expected_ndim}-D "
            f"of shape {shape}"
        )
    if array.dtype.kind not in "biuf":
        raise DataError(
            f"array {key!r} in {path} has element type {array.dtype}; expected integers or floats"
        )
    return array


def load_dataset(
    source: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    label_column: int | str | None = None,
    seed: int = 0,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> Dataset:
    """Load a dataset by name or by file path.

    Parameters
    ----------
    source : str or os.PathLike
        ``"digits"``, ``"mnist"``, or a path to a ``.csv``, ``.csv.gz`` or ``.npz`` file.
    data_dir : str or os.PathLike, optional
        For ``"mnist"``: a directory with the four IDX files (see :func:`load_mnist`).
    label_column : int or str, optional
        For CSV files: the label column (see :func:`load_csv`); default the first column.
    seed : int, default 0
        For ``"digits"``: the seed of the train/test split.
    download : bool, default True
        For ``"mnist"``: whether files missing from the cache may be downloaded.
    progress : callable, optional
        For ``"mnist"``: the download progress callback (see :func:`load_mnist`).

    Returns
    -------
    Dataset
        The loaded dataset.

    Raises
    ------
    DataError
        If ``source`` is neither a known name nor a path with a known suffix, if the file
        does not exist, or if the loader fails.
    """
    if isinstance(source, str) and source.lower() in ("digits", "mnist"):
        if source.lower() == "digits":
            return load_digits(seed=seed)
        return load_mnist(data_dir, download=download, progress=progress)
    path = Path(source)
    suffix = path.name.lower()
    if not suffix.endswith((".csv", ".csv.gz", ".npz")):
        raise DataError(
            f"unknown data source {str(source)!r}; expected 'digits', 'mnist', or a path to "
            "a .csv, .csv.gz or .npz file"
        )
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    if suffix.endswith(".npz"):
        return load_npz(path)
    return load_csv(path, label_column=0 if label_column is None else label_column)


def load_features(path: str | os.PathLike[str]) -> np.ndarray:
    """Read inputs without labels, for prediction: a CSV of feature columns or an NPZ's ``X``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` (or gzipped CSV) whose every column is a feature, with an optional
        header row, or an ``.npz`` file holding an array ``X`` of shape ``(m, S_0)``.

    Returns
    -------
    ndarray of float32, shape (m, S_0)

    Raises
    ------
    DataError
        As :func:`load_csv` and :func:`load_npz` do, naming the file and line.
    """
    path = Path(path)
    if path.name.lower().endswith(".npz"):
        try:
            with _open_npz(path) as archive:
                if "X" not in archive.files:
                    raise DataError(f"{path} has no array 'X'; expected X of shape (m, S_0)")
                X = _npz_array(archive, "X", path)
        except FileNotFoundError:
            raise DataError(f"no such file: {path}") from None
        except DataError:
            raise
        except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            raise DataError(f"{path} is not a readable .npz file ({exc})") from exc
        X = _as_features(X, f"X in {path}")
        check_finite(X, f"X in {path}")
        return X
    lines = _read_text_lines(path)
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise DataError(f"{path} is empty; expected rows of feature values")
    first_fields = _split_csv_line(numbered[0][1])
    data = numbered if all(map(_is_number, first_fields)) else numbered[1:]
    if not data:
        raise DataError(f"{path} has a header row but no data rows")
    with np.errstate(over="ignore"):
        X = _parse_numbers(data, len(first_fields), path).astype(np.float32)
    check_finite(X, f"the features in {path}")
    return X


def pixel_divisor(X: np.ndarray) -> float:
    """255.0 when ``X`` looks like raw 8-bit pixels (whole numbers in 0..255, some above 1),
    else 1.0: the factor that puts image inputs in [0, 1] as the bundled loaders do."""
    if X.size == 0 or X.min() < 0 or X.max() <= 1 or X.max() > 255:
        return 1.0
    return 255.0 if bool(np.all(X == np.round(X))) else 1.0


def _as_features(X: np.ndarray, name: str) -> np.ndarray:
    """Return ``X`` as a 2-D float32 C-ordered array, copying only when needed."""
    array = np.asarray(X)
    if array.ndim != 2:
        raise DataError(f"{name} must be 2-D of shape (m, S_0), got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{name} must hold numbers, got element type {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(
            f"{name} is empty (shape {array.shape}); need at least one example and one feature"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def _as_labels(y: np.ndarray, name: str, *, allow_negative: bool = False) -> np.ndarray:
    """Return ``y`` as a 1-D int64 array after checking that it holds integer values."""
    array = np.asarray(y)
    if array.ndim != 1:
        raise DataError(f"{name} must be 1-D of shape (m,), got shape {array.shape}")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array)) | (np.abs(array) >= 2**53)
        if bad.any():
            index = int(np.argmax(bad))
            raise DataError(
                f"{name}[{index}] is {float(array[index]):g}, not an integer; labels must be "
                "class indices 0, 1, 2, ..."
            )
    elif array.dtype.kind not in "biu":
        raise DataError(f"{name} must hold integer class indices, got element type {array.dtype}")
    labels = array.astype(np.int64, copy=False)
    if not allow_negative and (labels < 0).any():
        index = int(np.argmax(labels < 0))
        raise DataError(
            f"{name}[{index}] is {labels[index]}, a negative label; labels must be class "
            "indices 0, 1, 2, ..."
        )
    return labels


def _check_rows(X: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> None:
    if X.shape[0] != y.shape[0]:
        raise DataError(
            f"{x_name} has {X.shape[0]} rows but {y_name} has {y.shape[0]} labels; "
            "each example needs exactly one label"
        )
