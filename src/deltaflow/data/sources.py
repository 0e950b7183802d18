"""Loading a dataset by name or path, and features for prediction."""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from deltaflow.data.csv import (
    _has_header,
    _parse_numbers,
    _read_text_lines,
    _split_line,
    load_csv,
    sniff_delimiter,
)
from deltaflow.data.dataset import Dataset, _as_features, _n_classes, check_finite
from deltaflow.data.digits import load_digits
from deltaflow.data.mnist import ProgressCallback, load_mnist
from deltaflow.data.npy import open_npy_dir
from deltaflow.data.npz import _npz_array, _open_npz, load_npz
from deltaflow.errors import DataError


def load_dataset(
    source: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    label_column: int | str | None = 0,
    delimiter: str | None = None,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> Dataset:
    """Load a dataset by name or by file path.

    Parameters
    ----------
    source : str or os.PathLike
        ``"digits"``, ``"mnist"``, a path to a ``.csv``, ``.csv.gz`` or ``.npz`` file, or
        a directory of ``.npy`` files (see :func:`~deltaflow.data.npy.open_npy_dir`),
        whose inputs stay on disk as memory maps.
    data_dir : str or os.PathLike, optional
        For ``"mnist"``: a directory with the four IDX files (see :func:`load_mnist`).
    label_column : int, str or None, default 0
        For CSV files: the label column (see :func:`load_csv`; None: the header column
        named ``label``, ``class``, ``target`` or ``y``, else an error).
    delimiter : str, optional
        For CSV files: the field separator (default: sniffed; see :func:`load_csv`).
    class_names : sequence of str, optional
        For CSV files whose labels are names: the classes in index order.
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
    if path.is_dir():
        return _load_npy_dir(path)
    suffix = path.name.lower()
    if not suffix.endswith((".csv", ".csv.gz", ".npz")):
        raise DataError(
            f"unknown data source {str(source)!r}; expected 'digits', 'mnist', or a path to "
            "a .csv, .csv.gz or .npz file or to a directory of .npy files"
        )
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    if suffix.endswith(".npz"):
        return load_npz(path)
    return load_csv(path, label_column=label_column, delimiter=delimiter, class_names=class_names)


def _load_npy_dir(path: Path) -> Dataset:
    """A directory of ``.npy`` files (:func:`open_npy_dir`), its inputs left on disk."""
    npy = open_npy_dir(path)
    try:
        dataset = Dataset(npy.X, npy.y, npy.X_test, npy.y_test, path.name, None, None)  # type: ignore[arg-type]
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    labels = [y for y in (dataset.y_train, dataset.y_test) if y is not None]
    return replace(dataset, n_classes=_n_classes(labels, path))


def load_features(path: str | os.PathLike[str], *, delimiter: str | None = None) -> np.ndarray:
    """Read inputs without labels, for prediction: a CSV of feature columns or an NPZ's ``X``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` (or gzipped CSV) whose every column is a feature, with an optional
        header row, or an ``.npz`` file holding an array ``X`` of shape ``(m, S_0)``.
    delimiter : str, optional
        For a CSV: the field separator (default: sniffed, as :func:`load_csv` does).

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
    delimiter = sniff_delimiter(numbered, path) if delimiter is None else delimiter
    first_fields = _split_line(numbered[0][1], delimiter)
    data = numbered[1:] if _has_header(numbered, delimiter) else numbered
    if not data:
        raise DataError(f"{path} has a header row but no data rows")
    with np.errstate(over="ignore"):
        X = _parse_numbers(data, len(first_fields), path, delimiter).astype(np.float32)
    check_finite(X, f"the features in {path}")
    return X
