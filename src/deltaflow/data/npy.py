"""Directories of ``.npy`` files, read through memory maps: data bigger than memory.

A data directory holds either one pair of files::

    X.npy   inputs of shape (m, S_0)
    y.npy   targets: class indices of shape (m,) or rows of shape (m, S_L)

or shards, numbered from zero without gaps, each ``X`` shard with its ``y`` shard::

    X-00000.npy  y-00000.npy
    X-00001.npy  y-00001.npy
    ...

and optionally a test split ``X_test.npy`` with ``y_test.npy``. Nothing is read into
memory: every array is a read-only memory map (shards are joined by :class:`ShardedRows`),
so the operating system pages rows in as training gathers them. :func:`advise` tells the
kernel how those pages will be read.

Every problem is a :class:`~deltaflow.errors.DataError` whose one line names the file
and what is wrong with it.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deltaflow.errors import DataError

__all__ = [
    "NpyData",
    "NpyHeader",
    "NpyWriter",
    "RowSubset",
    "ShardedRows",
    "advise",
    "is_mapped",
    "open_npy",
    "open_npy_dir",
    "read_npy_header",
]

_MAGIC = b"\x93NUMPY"
_SHARD = re.compile(r"^(X|y)-(\d{5})\.npy$")
_SINGLE = ("X.npy", "y.npy")
_TEST = ("X_test.npy", "y_test.npy")
_FILES = (
    "X.npy and y.npy (optionally X_test.npy, y_test.npy), or shards X-00000.npy, y-00000.npy, ..."
)
_LAYOUT = "expected " + _FILES


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header declares: ``shape``, ``dtype`` and where the data starts."""

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy_header(path: str | os.PathLike[str]) -> NpyHeader:
    """Read and check the header of a ``.npy`` file without reading its data.

    Raises
    ------
    DataError
        If the file is missing or unreadable, is not a ``.npy`` file, holds Python
        objects, is stored in Fortran order, or is shorter than its header declares.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            start = fh.read(len(_MAGIC))
            if start != _MAGIC:
                raise DataError(
                    f"{path} is not a .npy file (it starts with {start[:6]!r}); "
                    "write it with numpy.save or deltaflow convert"
                )
            fh.seek(0)
            try:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise DataError(f"{path} uses .npy format version {version}; re-save it")
            except (ValueError, EOFError, SyntaxError, TypeError) as exc:
                raise DataError(f"{path} has a damaged .npy header ({exc})") from None
            offset = fh.tell()
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a .npy file") from None
    except OSError as exc:
        raise DataError(f"could not read {path} ({exc.strerror or exc})") from None
    header = NpyHeader(path, tuple(int(s) for s in shape), np.dtype(dtype), fortran, offset)
    if header.dtype.hasobject or header.dtype.kind not in "biuf":
        raise DataError(
            f"{path} holds elements of type {header.dtype}; expected integers or floats"
        )
    if fortran and len(header.shape) > 1:
        raise DataError(
            f"{path} is stored in Fortran (column) order; rows must be contiguous: "
            "re-save it with numpy.save(path, numpy.ascontiguousarray(X))"
        )
    if size - offset < header.nbytes:
        raise DataError(
            f"{path} declares shape {header.shape} ({header.nbytes:,} bytes) but holds "
            f"{size - offset:,} bytes of data; the file is truncated"
        )
    return header


def open_npy(path: str | os.PathLike[str], header: NpyHeader | None = None) -> np.ndarray:
    """A read-only memory map of a checked ``.npy`` file (see :func:`read_npy_header`)."""
    header = header or read_npy_header(path)
    if header.nbytes == 0:  # mmap cannot map zero bytes
        return np.zeros(header.shape, dtype=header.dtype)
    return np.memmap(header.path, header.dtype, "r", header.offset, header.shape)


class ShardedRows:
    """Several 2-D (or 1-D) arrays read as one, stacked along the rows, never copied whole.

    Supports what training needs: ``shape``, ``dtype``, ``len``, basic slicing of rows
    (a copy), ``take(indices, axis=0, out=...)`` and :func:`advise` on its parts.
    ``numpy.asarray`` of it reads every shard into one array.
    """

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        if not parts:
            raise ValueError("ShardedRows needs at least one array")
        tail = parts[0].shape[1:]
        if any(p.shape[1:] != tail or p.dtype != parts[0].dtype for p in parts):
            raise ValueError("every part must have the same dtype and row shape")
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [p.shape[0] for p in parts])
        self.shape = (int(self.starts[-1]), *tail)
        self.dtype = parts[0].dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ShardedRows({len(self.parts)} parts, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = np.concatenate(self.parts, axis=0)
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step == 1:
                return self._rows(start, max(start, stop))
        return self.take(np.arange(self.shape[0])[key])

    def _rows(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        for part, first in zip(self.parts, self.starts[:-1]):
            lo, hi = max(start - first, 0), min(stop - first, part.shape[0])
            if lo < hi:
                pieces.append(part[lo:hi])
        if not pieces:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        return np.concatenate(pieces, axis=0)

    def take(
        self, indices: Any, axis: int = 0, out: np.ndarray | None = None, mode: str = "raise"
    ) -> np.ndarray:
        """Rows ``indices`` (in that order) into ``out``, reading each shard once."""
        if axis != 0:
            raise ValueError("ShardedRows.take reads whole rows (axis=0)")
        idx = np.asarray(indices, dtype=np.intp)
        if out is None:
            out = np.empty((idx.shape[0], *self.shape[1:]), dtype=self.dtype)
        part_of = np.searchsorted(self.starts, idx, side="right") - 1
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        first, last = int(part_of.min(initial=0)), int(part_of.max(initial=-1))
        for p in range(first, last + 1):
            where = np.flatnonzero(part_of == p)
            if where.size == len(idx):  # the whole batch lies in one shard
                self.parts[p].take(idx - self.starts[p], axis=0, out=out, mode="clip")
            elif where.size:
                out[where] = self.parts[p].take(idx[where] - self.starts[p], axis=0)
        return out


class RowSubset:
    """Some rows of a memory-mapped array (or of :class:`ShardedRows`), read in place.

    Row ``i`` is row ``rows[i]`` of ``base``; like :class:`ShardedRows` it offers
    ``shape``, ``dtype``, ``take`` and slicing, and copies nothing until asked.
    """

    def __init__(self, base: Any, rows: Any) -> None:
        self.base = base
        self.rows = np.asarray(rows, dtype=np.intp)
        self.shape = (len(self.rows), *base.shape[1:])
        self.dtype = base.dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"RowSubset({self.shape[0]} of {self.base.shape[0]} rows, dtype={self.dtype})"

    @property
    def parts(self) -> list[Any]:
        """The arrays that identify the data: the base's files and the chosen rows."""
        return [*getattr(self.base, "parts", [self.base]), self.rows]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self.base.take(self.rows, axis=0)
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.base.take(self.rows[key], axis=0)

    def take(
        self, indices: Any, axis: int = 0, out: np.ndarray | None = None, mode: str = "raise"
    ) -> np.ndarray:
        if axis != 0:
            raise ValueError("RowSubset.take reads whole rows (axis=0)")
        return self.base.take(self.rows[indices], axis=0, out=out, mode="clip")


def is_mapped(array: Any) -> bool:
    """Whether ``array`` reads from files (a memory map or shards) rather than memory."""
    return isinstance(array, (np.memmap, ShardedRows, RowSubset)) or _mapping(array) is not None


def _mapping(array: Any) -> mmap.mmap | None:
    """The ``mmap`` an array's memory belongs to, if any."""
    base = array
    while base is not None:
        mm = getattr(base, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            return mm
        if isinstance(base, mmap.mmap):
            return base
        base = getattr(base, "base", None)
    return None


def advise(array: Any, advice: int, start: int = 0, stop: int | None = None) -> None:
    """Give the kernel ``madvise`` advice for rows ``start:stop`` of a memory-mapped array.

    ``advice`` is one of ``mmap.MADV_*`` (``MADV_RANDOM`` for scattered row reads,
    ``MADV_SEQUENTIAL``, ``MADV_WILLNEED`` to start reading rows ahead of their use).
    Advice is a hint: it does nothing on arrays in memory or where the platform lacks it.

    The C library's ``madvise`` is called through ctypes, which lets go of the GIL:
    ``MADV_WILLNEED`` starts the reads itself and can take milliseconds, during which
    ``mmap.madvise`` (used where ctypes finds no ``madvise``) would hold up every thread.
    """
    if isinstance(array, RowSubset):
        stop = array.shape[0] if stop is None else stop
        if stop > start:  # the base rows spanned (the rows are in file order where it matters)
            rows = array.rows[start:stop]
            advise(array.base, advice, int(rows.min()), int(rows.max()) + 1)
        return
    if isinstance(array, ShardedRows):
        stop = array.shape[0] if stop is None else stop
        for part, first in zip(array.parts, array.starts[:-1]):
            lo, hi = max(start - first, 0), min(stop - first, part.shape[0])
            if lo < hi:
                advise(part, advice, int(lo), int(hi))
        return
    mm = _mapping(array)
    if mm is None or not hasattr(mm, "madvise") or array.size == 0:
        return
    stop = array.shape[0] if stop is None else stop
    if stop <= start:
        return
    base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    row = array.strides[0] if array.ndim else array.itemsize
    begin = array.ctypes.data - base + start * row
    end = min(array.ctypes.data - base + stop * row, len(mm))
    aligned = begin - begin % mmap.PAGESIZE  # the mapping itself starts on a page
    if _libc_madvise is not None:
        # a refusal (non-zero) is ignored: a hint changes nothing that matters
        _libc_madvise(base + aligned, end - aligned, advice)
        return
    try:
        mm.madvise(advice, aligned, end - aligned)
    except (OSError, ValueError):
        pass


def _find_madvise() -> Any:
    """The C library's ``madvise(addr, length, advice)`` through ctypes, or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_libc_madvise = _find_madvise()


@dataclass(frozen=True)
class NpyData:
    """The arrays of a data directory, as read-only memory maps."""

    X: np.ndarray | ShardedRows
    y: np.ndarray | ShardedRows
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    files: tuple[Path, ...]


def open_npy_dir(path: str | os.PathLike[str]) -> NpyData:
    """Open a data directory of ``.npy`` files (see the module's docstring) without reading it.

    The headers are checked against each other: ``X`` must be 2-D and ``y`` 1-D or 2-D,
    each ``y`` must have as many rows as its ``X``, and all shards must share dtype and
    width.

    Raises
    ------
    DataError
        Naming the file: a missing ``y`` (or ``X``), a file that is not ``.npy``, a gap in
        the shard numbers, or mismatched row counts, dtypes or widths.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"no such directory: {root}; {_LAYOUT}")
    names = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    singles = [n for n in names if n in _SINGLE]
    shards = [n for n in names if _SHARD.match(n)]
    for name in names:
        if name not in _SINGLE + _TEST and not _SHARD.match(name):
            what = "is not a .npy file" if not name.endswith(".npy") else "has an unknown name"
            raise DataError(f"{root / name} {what}; a data directory holds only {_FILES}")
    if singles and shards:
        raise DataError(f"{root} holds both X.npy/y.npy and shards; keep one layout")
    if singles or not shards:
        pairs = [(root / "X.npy", root / "y.npy")]
    else:
        pairs = _shard_pairs(root, shards)
    X_parts, y_parts = _open_pairs(pairs)
    X = X_parts[0] if len(X_parts) == 1 else ShardedRows(X_parts)
    y = y_parts[0] if len(y_parts) == 1 else ShardedRows(y_parts)
    files = [f for pair in pairs for f in pair]
    X_test = y_test = None
    if any((root / n).exists() for n in _TEST):
        (X_test,), (y_test,) = _open_pairs([(root / _TEST[0], root / _TEST[1])])
        if X_test.shape[1] != X.shape[1]:
            raise DataError(
                f"{root / _TEST[0]} has {X_test.shape[1]} columns but {pairs[0][0]} has "
                f"{X.shape[1]}; both splits need the same columns"
            )
        files += [root / n for n in _TEST]
    return NpyData(X, y, X_test, y_test, tuple(files))


def _shard_pairs(root: Path, shards: list[str]) -> list[tuple[Path, Path]]:
    numbers: dict[str, set[int]] = {"X": set(), "y": set()}
    for name in shards:
        match = _SHARD.match(name)
        assert match is not None
        numbers[match[1]].add(int(match[2]))
    every = sorted(numbers["X"] | numbers["y"])
    for k in every:
        for kind, other in (("X", "y"), ("y", "X")):
            if k not in numbers[kind]:
                raise DataError(
                    f"{root / f'{other}-{k:05d}.npy'} has no matching {kind}-{k:05d}.npy; "
                    "every X shard needs its y shard"
                )
    for expected, k in enumerate(every):
        if k != expected:
            raise DataError(
                f"{root / f'X-{expected:05d}.npy'} is missing: shards are numbered from "
                f"00000 without gaps (found X-{k:05d}.npy next)"
            )
    return [(root / f"X-{k:05d}.npy", root / f"y-{k:05d}.npy") for k in every]


def _open_pairs(pairs: list[tuple[Path, Path]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Check the headers of ``(X, y)`` file pairs against each other and map them."""
    X_parts, y_parts = [], []
    first_x = first_y = None
    for x_path, y_path in pairs:
        for p, partner in ((x_path, y_path), (y_path, x_path)):
            if not p.exists():
                raise DataError(f"{p} is missing (beside {partner.name}); {_LAYOUT}")
        hx, hy = read_npy_header(x_path), read_npy_header(y_path)
        if len(hx.shape) != 2 or 0 in hx.shape:
            raise DataError(
                f"{x_path} has shape {hx.shape}; expected a non-empty 2-D array (m, S_0)"
            )
        if len(hy.shape) not in (1, 2):
            raise DataError(f"{y_path} has shape {hy.shape}; expected (m,) or (m, S_L)")
        if hy.shape[0] != hx.shape[0]:
            raise DataError(
                f"{y_path} has {hy.shape[0]} rows but {x_path.name} has {hx.shape[0]}; "
                "each example needs exactly one target"
            )
        if first_x is not None and first_y is not None:
            _same_layout(hx, first_x, "columns")
            _same_layout(hy, first_y, "target columns")
        else:
            first_x, first_y = hx, hy
        X_parts.append(open_npy(x_path, hx))
        y_parts.append(open_npy(y_path, hy))
    return X_parts, y_parts


def _same_layout(h: NpyHeader, first: NpyHeader, what: str) -> None:
    if h.dtype != first.dtype:
        raise DataError(
            f"{h.path} holds {h.dtype} but {first.path.name} holds {first.dtype}; "
            "every shard needs the same dtype"
        )
    if h.shape[1:] != first.shape[1:]:
        width = h.shape[1] if len(h.shape) > 1 else "no"
        first_width = first.shape[1] if len(first.shape) > 1 else "no"
        raise DataError(
            f"{h.path} has {width} {what} but {first.path.name} has {first_width}; "
            "every shard needs the same width"
        )


class NpyWriter:
    """Write a ``.npy`` file row chunk by row chunk, its row count known only at the end.

    The header is written first with room for any row count and rewritten by
    :meth:`close` with the rows actually written.
    """

    def __init__(self, path: str | os.PathLike[str], dtype: Any, row_shape: tuple[int, ...]):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self._fh = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._header_len = len(self._header(10**18))
        self._fh.write(self._header(0))

    def _header(self, rows: int) -> bytes:
        shape = (rows, *self.row_shape)
        text = repr(
            {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
             "shape": shape}
        )  # fmt: skip
        # magic (6) + version (2) + length (2) + text, padded to a multiple of 64 bytes
        width = getattr(self, "_header_len", 0) or -(-(10 + len(text) + 1) // 64) * 64
        body = text.ljust(width - 10 - 1) + "\n"
        return _MAGIC + b"\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")

    def write(self, rows: np.ndarray) -> None:
        """Append ``rows`` of shape ``(n, *row_shape)`` (cast to the file's dtype)."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise DataError(
                f"rows of shape {rows.shape[1:]} cannot go into {self.path.name}, whose rows "
                f"have shape {self.row_shape}"
            )
        self._fh.write(rows.data)
        self.rows += rows.shape[0]

    def close(self) -> None:
        self._fh.seek(0)
        self._fh.write(self._header(self.rows))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    def abort(self) -> None:
        self._fh.close()


def iter_chunks(array: Any, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, array[start:start + rows])`` over all rows, one chunk in memory at a time."""
    for start in range(0, array.shape[0], rows):
        yield start, np.asarray(array[start : start + rows])
