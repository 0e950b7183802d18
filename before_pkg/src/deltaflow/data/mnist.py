"""MNIST: the four IDX files from a directory, or downloaded once into a cache."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from deltaflow.data.dataset import _CHUNK_BYTES, Dataset
from deltaflow.data.idx import read_idx
from deltaflow.errors import ConfigError, DataError

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
