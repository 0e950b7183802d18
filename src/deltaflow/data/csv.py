"""CSV files: one label column, every other column a numeric feature."""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deltaflow.data.dataset import _GZIP_MAGIC, _MAX_TEXT_BYTES, Dataset, _n_classes
from deltaflow.errors import ConfigError, DataError

# Header names taken as the label column when none is given (compared in any case).
LABEL_NAMES = ("label", "class", "target", "y")
# What --delimiter accepts besides a single character, and what sniffing tries, in order.
DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "whitespace": " "}
_SNIFF_LINES = 20
# A delimiter of " " means: split on runs of spaces and tabs.
WHITESPACE = " "


def load_csv(
    path: str | os.PathLike[str],
    *,
    label_column: int | str | None = 0,
    header: bool | None = None,
    delimiter: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Dataset:
    """Load a CSV file with one label column and numeric feature columns.

    Values are not rescaled: pixel data in ``0..255`` stays in ``0..255``. Scale the
    features yourself if the network expects another range.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file, UTF-8; gzip-compressed files (recognised by their magic bytes) are
        accepted. Blank lines are skipped.
    label_column : int, str or None, default 0
        The label column: an index (negative counts from the end, so -1 is the last
        column) or, for a file with a header row, a column name. None takes the header
        column named ``label``, ``class``, ``target`` or ``y`` (in any case) and refuses a
        file without one, showing its first row.
    header : bool or None, default None
        Whether the first line is a header row. None detects it: the first line is a
        header if one of its fields is not a number where the second line has a number
        (or, in a one-line file, if any field is not a number).
    delimiter : str or None, default None
        The field separator: one character, or ``" "`` for runs of whitespace. None
        sniffs it from the first lines: comma, semicolon, tab, then whitespace.
    class_names : sequence of str, optional
        The classes' names in index order, for labels written as names: each label must be
        one of them. Without it, labels that are not all numbers become classes named after
        them, in sorted order.

    Returns
    -------
    Dataset
        All rows as the training split (no test split), ``X`` of shape ``(m, S_0)``
        float32, named after the file. Numeric labels are class indices and
        ``n_classes`` is one more than the largest; named labels set ``class_names``.

    Raises
    ------
    DataError
        If the file is missing, empty, not UTF-8 text or corrupt gzip; if a line has the
        wrong number of fields or a feature that is not a finite number; if a numeric
        label is not a non-negative integer or a named label is not in ``class_names``;
        or if ``label_column`` names no column. Messages give the 1-based line and column.
    """
    path = Path(path)
    lines = _read_text_lines(path)
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise DataError(f"{path} is empty; expected a label column and feature columns")
    delimiter = sniff_delimiter(numbered, path) if delimiter is None else delimiter

    first_fields = _split_line(numbered[0][1], delimiter)
    has_header = header if header is not None else _has_header(numbered, delimiter)
    names = [field.strip() for field in first_fields] if has_header else None
    data = numbered[1:] if has_header else numbered
    if not data:
        raise DataError(f"{path} has a header row but no data rows")

    n_fields = len(first_fields)
    if n_fields < 2:
        hint = (
            "" if delimiter != "," else "; if its fields are separated otherwise, pass --delimiter"
        )
        raise DataError(
            f"{path} has {n_fields} column; expected a label column and at least one feature{hint}"
        )
    if label_column is None:
        label_index = _named_label_index(names, numbered[0], path)
    else:
        label_index = _label_index(label_column, names, n_fields, path)
    line_numbers = np.fromiter((number for number, _ in data), dtype=np.int64, count=len(data))
    values = None if class_names is not None else _try_numbers(data, n_fields, delimiter, path)
    if values is not None:
        y = _csv_labels(values[:, label_index], line_numbers, label_index, path)
        features = np.delete(values, label_index, axis=1)
        names_out: tuple[str, ...] | None = None
    else:
        tokens, features = _split_label(data, n_fields, delimiter, label_index, path)
        y, names_out = _named_labels(tokens, class_names, line_numbers, label_index, path)
    with np.errstate(over="ignore"):
        X = features.astype(np.float32)
    if not np.isfinite(X).all():
        row, column = np.argwhere(~np.isfinite(X))[0]
        column = column + (column >= label_index)
        token = _split_line(lines[line_numbers[row] - 1], delimiter)[column].strip()
        raise DataError(
            f"{path}: line {line_numbers[row]}, column {column + 1}: {token!r} is not a "
            "finite float32 number; clean or impute it first"
        )
    name = path.name.removesuffix(".gz").removesuffix(".GZ")
    n_classes = len(names_out) if names_out is not None else _n_classes([y], path)
    return Dataset(X, y, None, None, Path(name).stem, n_classes, None, names_out)


def parse_delimiter(text: str) -> str:
    """The separator ``--delimiter`` names: one character, a name, or ``\\t``.

    Raises
    ------
    ConfigError
        For anything else.
    """
    value = DELIMITER_NAMES.get(text.lower(), "\t" if text == "\\t" else text)
    if len(value) != 1 or value in '"\r\n' or value.isalnum() or value in ".-+":
        raise ConfigError(
            f"--delimiter must be one character such as ',' or ';', or one of "
            f"{', '.join(DELIMITER_NAMES)}; got {text!r}"
        )
    return value


def describe_delimiter(delimiter: str) -> str:
    """A delimiter's name for messages."""
    names = {value: name for name, value in DELIMITER_NAMES.items()}
    return names.get(delimiter, repr(delimiter))


def sniff_delimiter(numbered: list[tuple[int, str]], path: Path) -> str:
    """The separator of the first lines: the first of comma, semicolon and tab that
    splits each of them into the same number (at least two) of fields, else whitespace
    when that does, else comma."""
    sample = [line for _, line in numbered[:_SNIFF_LINES]]
    for candidate in (",", ";", "\t", WHITESPACE):
        counts = {len(_split_line(line, candidate)) for line in sample}
        if len(counts) == 1 and counts.pop() >= 2:
            return candidate
    return ","


def _split_line(line: str, delimiter: str = ",") -> list[str]:
    """Split one line into fields, honouring quotes only where there are any."""
    if delimiter == WHITESPACE:
        if '"' not in line:
            return line.split()
        return next(csv.reader([" ".join(line.split())], delimiter=" "))
    if '"' in line:
        return next(csv.reader([line], delimiter=delimiter))
    return line.split(delimiter)


def _split_csv_line(line: str) -> list[str]:
    """Split one comma-separated line into fields (quotes honoured)."""
    return _split_line(line, ",")


def _has_header(numbered: list[tuple[int, str]], delimiter: str) -> bool:
    """Whether the first line is a header: it has a field that is not a number where
    the second line has a number (a one-line file: any field that is not a number)."""
    first = [_is_number(f) for f in _split_line(numbered[0][1], delimiter)]
    if len(numbered) < 2:
        return not all(first)
    second = [_is_number(f) for f in _split_line(numbered[1][1], delimiter)]
    if len(second) != len(first):
        return not all(first)
    return any(s and not f for f, s in zip(first, second)) or not any(first)


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _named_label_index(names: list[str] | None, first: tuple[int, str], path: Path) -> int:
    """The header column named like a label, or an error showing the first row."""
    if names is not None:
        matches = [i for i, name in enumerate(names) if name.lower() in LABEL_NAMES]
        if len(matches) == 1:
            return matches[0]
    shown = first[1] if len(first[1]) <= 120 else first[1][:117] + "..."
    what = "header" if names is not None else "first row"
    named = " or ".join(repr(n) for n in LABEL_NAMES)
    raise DataError(
        f"which column of {path} holds the labels? Its {what} is {shown!r}; pass "
        f"--label-column with an index (0 the first, -1 the last) or a header name, or name "
        f"the column {named}"
    )


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


def _try_numbers(
    data: list[tuple[int, str]], n_fields: int, delimiter: str, path: Path
) -> np.ndarray | None:
    """Every field as a number (int64 if possible, else float64), or None if one is not."""
    try:
        return _parse_numbers(data, n_fields, path, delimiter)
    except _NotANumber:
        return None


class _NotANumber(DataError):
    pass


def _parse_numbers(
    data: list[tuple[int, str]], n_fields: int, path: Path, delimiter: str = ","
) -> np.ndarray:
    """Parse the data lines into an ``(m, n_fields)`` array, int64 if possible else float64."""
    quoted = any('"' in line for _, line in data)
    if quoted or delimiter == WHITESPACE:
        rows = [_split_line(line, delimiter) for _, line in data]
        counts = [len(row) for row in rows]
    else:
        counts = [line.count(delimiter) + 1 for _, line in data]
    _check_counts(counts, data, n_fields, path)
    if quoted or delimiter == WHITESPACE:
        tokens = [field for row in rows for field in row]
    else:
        tokens = delimiter.join(line for _, line in data).split(delimiter)
    for dtype in (np.int64, np.float64):
        try:
            return np.array(tokens, dtype=dtype).reshape(len(data), n_fields)
        except (ValueError, OverflowError):
            continue
    raise _first_bad_number(data, path, delimiter)


def _check_counts(
    counts: list[int], data: list[tuple[int, str]], n_fields: int, path: Path
) -> None:
    if any(count != n_fields for count in counts):
        index = next(i for i, count in enumerate(counts) if count != n_fields)
        raise DataError(
            f"{path}: line {data[index][0]} has {counts[index]} fields, expected {n_fields}"
        )


def _split_label(
    data: list[tuple[int, str]], n_fields: int, delimiter: str, label_index: int, path: Path
) -> tuple[list[str], np.ndarray]:
    """The label column's fields as text, and the feature columns parsed as numbers."""
    rows = [_split_line(line, delimiter) for _, line in data]
    _check_counts([len(row) for row in rows], data, n_fields, path)
    labels = [row.pop(label_index).strip() for row in rows]
    tokens = [field for row in rows for field in row]
    for dtype in (np.int64, np.float64):
        try:
            return labels, np.array(tokens, dtype=dtype).reshape(len(data), n_fields - 1)
        except (ValueError, OverflowError):
            continue
    for (number, _), row in zip(data, rows):
        for index, field in enumerate(row):
            if not _is_number(field):
                column = index + 1 + (index >= label_index)
                raise DataError(
                    f"{path}: line {number}, column {column}: {field!r} is not a number"
                )
    raise DataError(f"{path} contains a value that is not a number")  # pragma: no cover


def _named_labels(
    tokens: list[str],
    class_names: Sequence[str] | None,
    line_numbers: np.ndarray,
    label_index: int,
    path: Path,
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Class indices for labels given as text: numbers stay class indices unless
    ``class_names`` is given; names index ``class_names`` (default: the sorted names)."""
    if class_names is None and all(map(_is_number, tokens)):
        values = np.array(tokens, dtype=np.float64)
        return _csv_labels(values, line_numbers, label_index, path), None
    names = tuple(class_names) if class_names is not None else tuple(sorted(set(tokens)))
    index = {name: i for i, name in enumerate(names)}
    y = np.fromiter((index.get(t, -1) for t in tokens), dtype=np.int64, count=len(tokens))
    if (y < 0).any():
        row = int(np.argmax(y < 0))
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise DataError(
            f"{path}: line {line_numbers[row]}, column {label_index + 1}: label "
            f"{tokens[row]!r} is not one of the model's classes ({shown})"
        )
    return y, names


def _first_bad_number(data: list[tuple[int, str]], path: Path, delimiter: str = ",") -> DataError:
    """Locate the first field that is not a number and describe it."""
    for number, line in data:
        for column, field in enumerate(_split_line(line, delimiter), start=1):
            if not _is_number(field):
                return _NotANumber(
                    f"{path}: line {number}, column {column}: {field!r} is not a number"
                )
    return _NotANumber(f"{path} contains a value that is not a number")
