"""CSV files: one label column, every other column a numeric feature."""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from pathlib import Path

import numpy as np

from deltaflow.data.dataset import _GZIP_MAGIC, _MAX_TEXT_BYTES, Dataset, _n_classes
from deltaflow.errors import ConfigError, DataError


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
