"""The IDX file format of MNIST."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

import numpy as np

from deltaflow.data.dataset import _CHUNK_BYTES, _GZIP_MAGIC, _MAX_DEFLATE_RATIO
from deltaflow.errors import DataError

# IDX element type byte -> numpy dtype (IDX stores multi-byte values big-endian).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


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
