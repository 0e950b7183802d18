"""NPZ files: arrays X and y, optionally X_test and y_test."""

from __future__ import annotations

import contextlib
import math
import os
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from deltaflow.data.dataset import _MAX_DEFLATE_RATIO, Dataset, _n_classes, check_finite
from deltaflow.errors import DataError

_NPZ_KEYS = ("X", "y", "X_test", "y_test")


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
