"""Convert a CSV, NPZ or IDX source into a data directory of ``.npy`` files, in chunks.

The source is read a chunk of rows at a time and each chunk is appended to the ``.npy``
files (see :class:`~deltaflow.data.npy.NpyWriter`), so memory holds one chunk, never the
whole set. The files are written into a temporary directory beside the target, which is
renamed into place only when every row has been read and checked: an error leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from deltaflow.data.csv import (
    _csv_labels,
    _is_number,
    _label_index,
    _named_label_index,
    _parse_numbers,
    _split_csv_line,
)
from deltaflow.data.dataset import _GZIP_MAGIC, _MAX_CLASSES
from deltaflow.data.idx import _IDX_DTYPES
from deltaflow.data.npy import NpyWriter
from deltaflow.errors import ConfigError, DataError

__all__ = ["ConvertResult", "convert"]

CHUNK_BYTES = 16 << 20  # about this much of X per chunk
Chunks = Iterator[tuple[str, np.ndarray, np.ndarray]]  # (split, X rows, y rows)


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert` wrote: rows per split, the row width and the files."""

    rows: dict[str, int]
    n_features: int
    files: tuple[str, ...]


def convert(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    label_column: int | str | None = None,
    shard_rows: int | None = None,
    scale: float | None = None,
    force: bool = False,
) -> ConvertResult:
    """Write ``source`` as a data directory ``out`` (``X.npy`` and ``y.npy``, or shards).

    Parameters
    ----------
    source : str or os.PathLike
        A ``.csv`` or ``.csv.gz`` file (one integer label column, numeric features;
        written as float32 and int64), an ``.npz`` file with arrays ``X`` and ``y``
        (optionally ``X_test``, ``y_test``; dtypes kept), or an IDX file of inputs (such
        as MNIST's ``train-images-idx3-ubyte``, gzipped or not; each item flattened to a
        row, dtype kept) with its labels in ``labels``.
    out : str or os.PathLike
        The directory to create.
    labels : str or os.PathLike, optional
        For an IDX source: the IDX file of its labels.
    label_column : int or str, optional
        For a CSV source: the label column (as :func:`~deltaflow.data.load_csv` takes it);
        without it, the header column named ``label``, ``class``, ``target`` or ``y``.
    shard_rows : int, optional
        Write shards ``X-00000.npy``, ``y-00000.npy``, ... of at most this many rows
        instead of one pair of files (a test split is always one pair).
    scale : float, optional
        Divide the inputs by this number (255 puts 8-bit pixels in [0, 1]); they are then
        written as float32.
    force : bool, default False
        Replace ``out`` if it exists.

    Raises
    ------
    DataError
        For an unreadable or inconsistent source (naming the file and the place in it),
        or an ``out`` that exists without ``force``.
    ConfigError
        For a bad ``shard_rows``, or ``labels`` given with a source that is not IDX.
    """
    source, target = Path(source), Path(out)
    if shard_rows is not None and (isinstance(shard_rows, bool) or shard_rows < 1):
        raise ConfigError(f"shard_rows must be a positive whole number, got {shard_rows!r}")
    if scale is not None and not 0 < scale < np.inf:
        raise ConfigError(f"scale must be a positive number, got {scale!r}")
    if target.exists() and not (force and target.is_dir()):
        hint = "pass --force to replace it" if target.is_dir() else "it is not a directory"
        raise DataError(f"{target} already exists; {hint}")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"cannot write {target}: directory {parent} does not exist")
    chunks = _chunks(source, labels, label_column)
    if scale is not None:
        chunks = ((split, X.astype(np.float32) / np.float32(scale), y) for split, X, y in chunks)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        result = _write(chunks, tmp, shard_rows)
        os.chmod(tmp, 0o777 & ~_umask())
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replace_dir(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, an existing ``target`` moved aside and deleted after."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _write(chunks: Chunks, directory: Path, shard_rows: int | None) -> ConvertResult:
    writers: dict[str, _SplitWriter] = {}
    try:
        for split, X, y in chunks:
            writer = writers.get(split)
            if writer is None:
                shards = shard_rows if split == "train" else None
                writer = writers[split] = _SplitWriter(directory, split, X, y, shards)
            writer.write(X, y)
        if "train" not in writers:
            raise DataError("the source holds no rows; nothing to convert")
        files = [f for w in writers.values() for f in w.close()]
    finally:
        for w in writers.values():
            w.abort()
    width = writers["train"].n_features
    return ConvertResult({k: w.rows for k, w in writers.items()}, width, tuple(files))


class _SplitWriter:
    """The ``.npy`` files of one split, as one pair or as shards of ``shard_rows``."""

    def __init__(
        self, directory: Path, split: str, X: np.ndarray, y: np.ndarray, shard_rows: int | None
    ) -> None:
        self.directory, self.split, self.shard_rows = directory, split, shard_rows
        self.x_dtype, self.y_dtype = X.dtype, y.dtype
        self.n_features, self.y_shape = X.shape[1], y.shape[1:]
        self.rows = 0
        self.files: list[str] = []
        self.pair: tuple[NpyWriter, NpyWriter] | None = None

    def _open(self) -> tuple[NpyWriter, NpyWriter]:
        if self.shard_rows is None:
            suffix = "" if self.split == "train" else "_test"
            names = (f"X{suffix}.npy", f"y{suffix}.npy")
        else:
            k = len(self.files) // 2
            names = (f"X-{k:05d}.npy", f"y-{k:05d}.npy")
        self.files += names
        return (
            NpyWriter(self.directory / names[0], self.x_dtype, (self.n_features,)),
            NpyWriter(self.directory / names[1], self.y_dtype, self.y_shape),
        )

    def write(self, X: np.ndarray, y: np.ndarray) -> None:
        if X.shape[1] != self.n_features:
            raise DataError(
                f"a chunk of the {self.split} rows has {X.shape[1]} features, earlier ones "
                f"{self.n_features}; every row needs the same columns"
            )
        while X.shape[0]:
            if self.pair is None:
                self.pair = self._open()
            room = X.shape[0] if self.shard_rows is None else self.shard_rows - self.pair[0].rows
            self.pair[0].write(X[:room])
            self.pair[1].write(y[:room])
            self.rows += min(room, X.shape[0])
            X, y = X[room:], y[room:]
            if self.shard_rows is not None and self.pair[0].rows == self.shard_rows:
                self._close_pair()

    def _close_pair(self) -> None:
        if self.pair is not None:
            for w in self.pair:
                w.close()
            self.pair = None

    def close(self) -> list[str]:
        self._close_pair()
        return self.files

    def abort(self) -> None:
        if self.pair is not None:
            for w in self.pair:
                w.abort()


# --------------------------------------------------------------------------- sources
def _chunks(source: Path, labels: Any, label_column: int | str | None) -> Chunks:
    """The reader for ``source``'s format, checked before any output is made."""
    name = source.name.lower()
    if not source.is_file():
        raise DataError(f"no such file: {source}")
    if labels is not None and name.endswith((".csv", ".csv.gz", ".npz")):
        raise ConfigError("--labels is for IDX sources; a CSV or NPZ file holds its own labels")
    if name.endswith((".csv", ".csv.gz")):
        return _csv_chunks(source, label_column)
    if name.endswith(".npz"):
        return _npz_chunks(source)
    if labels is None:
        raise DataError(
            f"{source} is not a .csv, .csv.gz or .npz file; for an IDX file of inputs "
            "give its labels with --labels FILE"
        )
    return _idx_chunks(source, Path(labels))


@contextlib.contextmanager
def _open_maybe_gzip(path: Path) -> Iterator[IO[bytes]]:
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream  # type: ignore[misc]


def _csv_chunks(path: Path, label_column: int | str | None) -> Chunks:
    try:
        with _open_maybe_gzip(path) as stream:
            text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
            yield from _csv_rows(path, _numbered_lines(path, text), label_column)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a corrupt or truncated gzip file ({exc})") from None
    except OSError as exc:
        raise DataError(f"could not read {path} ({exc})") from None


def _numbered_lines(path: Path, text: IO[str]) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        for number, line in enumerate(text, start=1):  # noqa: B007 (used in the error)
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line
    except UnicodeDecodeError:
        raise DataError(
            f"{path}: line {number + 1} is not UTF-8 text; expected a comma-separated text file"
        ) from None


def _csv_rows(
    path: Path, lines: Iterator[tuple[int, str]], label_column: int | str | None
) -> Chunks:
    first = next(lines, None)
    if first is None:
        raise DataError(f"{path} is empty; expected a label column and feature columns")
    fields = _split_csv_line(first[1])
    header = not all(map(_is_number, fields))
    n_fields = len(fields)
    if n_fields < 2:
        raise DataError(
            f"{path} has {n_fields} column; expected a label column and at least one feature"
        )
    names = [f.strip() for f in fields] if header else None
    if label_column is None:  # never guessed: a header column named like a label, or an error
        label = _named_label_index(names, first, path)
    else:
        label = _label_index(label_column, names, n_fields, path)
    per_chunk = max(1, CHUNK_BYTES // (4 * n_fields))
    pending = [] if header else [first]
    seen = False
    for item in lines:
        pending.append(item)
        if len(pending) == per_chunk:
            yield _csv_chunk(path, pending, n_fields, label)
            pending, seen = [], True
    if pending:
        yield _csv_chunk(path, pending, n_fields, label)
    elif not seen:
        raise DataError(f"{path} has a header row but no data rows")


def _csv_chunk(
    path: Path, data: list[tuple[int, str]], n_fields: int, label: int
) -> tuple[str, np.ndarray, np.ndarray]:
    values = _parse_numbers(data, n_fields, path)
    numbers = np.fromiter((n for n, _ in data), dtype=np.int64, count=len(data))
    y = _csv_labels(values[:, label], numbers, label, path)
    if y.max() >= _MAX_CLASSES:
        row = int(np.argmax(y >= _MAX_CLASSES))
        raise DataError(
            f"{path}: line {numbers[row]}: label {y[row]} is too large for a class index"
        )
    with np.errstate(over="ignore"):
        X = np.delete(values, label, axis=1).astype(np.float32)
    if not np.isfinite(X).all():
        row, column = np.argwhere(~np.isfinite(X))[0]
        column = column + (column >= label)
        raise DataError(
            f"{path}: line {numbers[row]}, column {column + 1}: not a finite float32 number; "
            "clean or impute it first"
        )
    return "train", X, y


def _npz_chunks(path: Path) -> Chunks:
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n.removesuffix(".npy"): n for n in archive.namelist()}
            for key in ("X", "y"):
                if key not in members:
                    raise DataError(
                        f"{path} has no array {key!r}; expected X of shape (m, S_0) and y of "
                        "shape (m,), optionally X_test and y_test"
                    )
            if ("X_test" in members) != ("y_test" in members):
                raise DataError(f"{path} has only one of X_test and y_test; include both")
            for split, suffix in (("train", ""), ("test", "_test")):
                if "X" + suffix in members:
                    yield from _npz_split(path, archive, members, split, suffix)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    except OSError as exc:
        raise DataError(f"could not read {path} ({exc})") from None


def _npz_split(
    path: Path, archive: zipfile.ZipFile, members: dict[str, str], split: str, suffix: str
) -> Chunks:
    with (
        archive.open(members["X" + suffix]) as xs,
        archive.open(members["y" + suffix]) as ys,
    ):
        x_shape, x_dtype = _npy_member_header(path, "X" + suffix, xs, 2)
        y_shape, y_dtype = _npy_member_header(path, "y" + suffix, ys, 1)
        if x_shape[0] != y_shape[0]:
            raise DataError(
                f"{path}: y{suffix} has {y_shape[0]} rows but X{suffix} has {x_shape[0]}; "
                "each example needs exactly one label"
            )
        per_chunk = max(1, CHUNK_BYTES // max(1, x_shape[1] * x_dtype.itemsize))
        for start in range(0, x_shape[0], per_chunk):
            n = min(per_chunk, x_shape[0] - start)
            X = _read_rows(xs, x_dtype, (n, x_shape[1]), path, "X" + suffix)
            y = _read_rows(ys, y_dtype, (n,), path, "y" + suffix)
            if X.dtype.kind == "f" and not np.isfinite(X).all():
                r, c = np.argwhere(~np.isfinite(X))[0]
                raise DataError(
                    f"{path}: X{suffix} row {start + r}, column {c} is NaN or infinite; "
                    "clean or impute it first"
                )
            yield split, X, y


def _npy_member_header(
    path: Path, key: str, stream: IO[bytes], ndim: int
) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(stream)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(stream)
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise DataError(f"array {key!r} in {path} cannot be read ({exc})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise DataError(f"array {key!r} in {path} holds {dtype}; expected integers or floats")
    if len(shape) != ndim or (ndim == 2 and 0 in shape):
        want = "(m, S_0)" if ndim == 2 else "(m,)"
        raise DataError(f"array {key!r} in {path} has shape {shape}; expected {want}")
    if fortran and ndim > 1:
        raise DataError(
            f"array {key!r} in {path} is in Fortran order; save it with numpy.savez after "
            "numpy.ascontiguousarray"
        )
    return shape, np.dtype(dtype)


def _read_rows(
    stream: IO[bytes], dtype: np.dtype, shape: tuple[int, ...], path: Path, key: str
) -> np.ndarray:
    out = np.empty(shape, dtype=dtype)
    view = memoryview(out.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    filled = 0
    while filled < len(view):
        count = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            raise DataError(f"{key} in {path} is truncated: it holds fewer rows than declared")
        filled += count
    return out.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else out


def _idx_chunks(images: Path, labels: Path) -> Chunks:
    if not labels.is_file():
        raise DataError(f"no such file: {labels}")
    try:
        with _open_maybe_gzip(images) as xs, _open_maybe_gzip(labels) as ys:
            x_shape, x_dtype = _idx_header(images, xs)
            y_shape, y_dtype = _idx_header(labels, ys)
            if len(y_shape) != 1:
                raise DataError(f"{labels} has shape {y_shape}; labels must be 1-D")
            if x_shape[0] != y_shape[0]:
                raise DataError(
                    f"{labels} has {y_shape[0]} labels but {images.name} has {x_shape[0]} "
                    "items; give the labels file that belongs to these inputs"
                )
            width = int(np.prod(x_shape[1:])) if len(x_shape) > 1 else 1
            if width == 0:
                raise DataError(f"{images} has items of shape {x_shape[1:]}, with no values")
            per_chunk = max(1, CHUNK_BYTES // (width * x_dtype.itemsize))
            for start in range(0, x_shape[0], per_chunk):
                n = min(per_chunk, x_shape[0] - start)
                X = _read_rows(xs, x_dtype, (n, width), images, "the data")
                y = _read_rows(ys, y_dtype, (n,), labels, "the data")
                yield "train", X, y
            extra_x, extra_y = xs.read(1), ys.read(1)
            if extra_x or extra_y:
                raise DataError(
                    f"{images if extra_x else labels} has data beyond what its header "
                    "declares; the file is corrupt or not an IDX file"
                )
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{images} or {labels} is a corrupt gzip file ({exc})") from None
    except OSError as exc:
        raise DataError(f"could not read {images} or {labels} ({exc})") from None


def _idx_header(path: Path, stream: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise DataError(f"{path} is not an IDX file (it does not start with bytes 00 00)")
    type_byte, ndim = magic[2], magic[3]
    if type_byte not in _IDX_DTYPES:
        raise DataError(f"{path} has unknown IDX element type 0x{type_byte:02X}")
    if not 1 <= ndim <= 4:
        raise DataError(f"{path} declares {ndim} dimensions; IDX files here have 1 to 4")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{path} is truncated inside its header")
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    return shape, _IDX_DTYPES[type_byte]
