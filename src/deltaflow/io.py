"""Model files: safetensors tensors plus JSON metadata, written atomically, no pickle.

Layout of a model file (a standard safetensors file):

* tensors ``theta.1 .. theta.L`` (``Theta^(l)``, shape ``(S[l-1], S[l])``) and
  ``b.1 .. b.L`` (shape ``(S[l],)``), in the network's dtype;
* string metadata ``format = "deltaflow"``, ``format_version``, and JSON-encoded
  ``sizes``, ``activations``, ``cost``, ``dtype``.

Loading reads the header itself first and checks it against what a deltaflow model must
be before any tensor is decoded, so a hostile file can neither run code (there is no
pickle anywhere) nor make deltaflow allocate what its header claims.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from deltaflow.errors import ModelFileError
from deltaflow.network import Network

__all__ = [
    "FORMAT_VERSION",
    "atomic_write_bytes",
    "load",
    "load_extra",
    "read_safetensors",
    "save",
]

FORMAT_VERSION = 1
_MAX_HEADER = 16 * 1024 * 1024  # a deltaflow header is a few hundred bytes
_ST_DTYPES = {"F32": np.float32, "F64": np.float64}
_UMASK = os.umask(0o022)  # read the process umask (there is no getter) ...
os.umask(_UMASK)  # ... and put it back


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the new one.

    The bytes go to a temporary file in the same directory, are flushed and fsynced,
    and the temporary file is renamed over ``path`` (atomic on POSIX and Windows).
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp makes the file private (0600); give it the mode open() would have.
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def save(
    net: Network, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None
) -> None:
    """Save ``net`` to ``path`` (conventionally ``*.safetensors``), atomically.

    The round trip through :func:`load` is bit-exact.

    Parameters
    ----------
    extra : dict, optional
        JSON-serialisable facts to keep beside the model (the CLI stores how inputs
        were scaled); read back with :func:`load_extra`.
    """
    if net.device != "cpu":  # the file holds host arrays, the same bytes from any device
        net = net.copy().to("cpu")
    tensors: dict[str, np.ndarray] = {}
    for l in range(1, net.L + 1):
        tensors[f"theta.{l}"] = np.ascontiguousarray(net.weights[l - 1])
        tensors[f"b.{l}"] = np.ascontiguousarray(net.biases[l - 1])
    metadata = {
        "format": "deltaflow",
        "format_version": str(FORMAT_VERSION),
        "sizes": json.dumps(net.sizes),
        "activations": json.dumps(net.activation_names),
        "cost": json.dumps(net.loss.name),
        "dtype": json.dumps(net.dtype.name),
        "extra": json.dumps(extra or {}),
    }
    atomic_write_bytes(path, st_save(tensors, metadata=metadata))


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file with every size checked: ``(tensors, metadata)``.

    Raises
    ------
    ModelFileError
        For a missing, unreadable, truncated or malformed file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"no such model file: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a directory, not a model file") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    what = f"{path} is not a deltaflow model file"
    if len(data) < 8:
        raise ModelFileError(f"{what} (only {len(data)} bytes; truncated or empty)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise ModelFileError(f"{what} (header length {n} does not fit the file; truncated?)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: deep nesting
        raise ModelFileError(f"{what} (its header is not valid JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{what} (its header is not a JSON object)")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError(f"{what} (its metadata is not a table of strings)")
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, TypeError, OverflowError, KeyError) as exc:
        raise ModelFileError(f"{what} (corrupt tensor data: {exc})") from None
    return tensors, metadata


def _meta_json(metadata: dict[str, str], key: str, path: Path) -> Any:
    if key not in metadata:
        raise ModelFileError(f"{path} has no {key!r} in its metadata; not a deltaflow model")
    try:
        return json.loads(metadata[key])
    except (ValueError, RecursionError):
        raise ModelFileError(f"{path}: metadata {key!r} is not valid JSON") from None


def load(path: str | os.PathLike[str]) -> Network:
    """Load a model saved by :func:`save`.

    Every tensor is checked against the metadata (count, names, shapes, dtype) and the
    activations and cost must be known names.

    Raises
    ------
    ModelFileError
        For a missing, truncated, corrupt or inconsistent file, saying what disagrees.
    """
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != "deltaflow":
        raise ModelFileError(f"{path} is a safetensors file but not a deltaflow model")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise ModelFileError(
            f"{path} has model format version {version!r}; this deltaflow reads version "
            f"{FORMAT_VERSION}: upgrade deltaflow or re-save the model"
        )
    sizes = _meta_json(metadata, "sizes", path)
    acts = _meta_json(metadata, "activations", path)
    cost = _meta_json(metadata, "cost", path)
    dtype = _meta_json(metadata, "dtype", path)
    if (
        not isinstance(sizes, list)
        or not 2 <= len(sizes) <= 10_000
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)
    ):
        raise ModelFileError(f"{path}: metadata 'sizes' must be a list of positive integers")
    if not isinstance(acts, list) or not all(isinstance(a, str) for a in acts):
        raise ModelFileError(f"{path}: metadata 'activations' must be a list of names")
    L = len(sizes) - 1
    if len(acts) != L:
        raise ModelFileError(f"{path}: metadata lists {len(acts)} activations for {L} layers")
    if not isinstance(cost, str) or dtype not in ("float32", "float64"):
        raise ModelFileError(f"{path}: metadata 'cost' or 'dtype' is malformed")
    expected = {f"theta.{l}" for l in range(1, L + 1)} | {f"b.{l}" for l in range(1, L + 1)}
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ModelFileError(
            f"{path}: tensors do not match {L} layers (missing {missing}, unexpected {extra})"
        )
    # Shapes first: the tensors are in memory already, so once they match, the sizes
    # in the metadata are no bigger than the file (a tiny file claiming huge layers
    # must not make the Network below allocate them).
    for l in range(1, L + 1):
        for name, shape in ((f"theta.{l}", (sizes[l - 1], sizes[l])), (f"b.{l}", (sizes[l],))):
            t = tensors[name]
            if t.shape != shape:
                raise ModelFileError(
                    f"{path}: tensor {name} has shape {t.shape} but sizes {sizes} need {shape}"
                )
            if t.dtype != np.dtype(dtype):
                raise ModelFileError(
                    f"{path}: tensor {name} is {t.dtype} but the metadata says {dtype}"
                )
    try:
        net = Network(sizes, acts, cost, dtype=dtype, seed=0)
    except ValueError as exc:  # ConfigError: unknown activation or cost name
        raise ModelFileError(f"{path}: {exc}") from None
    net.set_params(
        [tensors[f"theta.{l}"] for l in range(1, L + 1)],
        [tensors[f"b.{l}"] for l in range(1, L + 1)],
    )
    return net


def load_extra(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``extra`` dictionary saved with a model (empty if none).

    Raises
    ------
    ModelFileError
        As :func:`load` does for an unreadable file.
    """
    _, metadata = read_safetensors(path)
    if "extra" not in metadata:
        return {}
    extra = _meta_json(metadata, "extra", Path(path))
    if not isinstance(extra, dict):
        raise ModelFileError(f"{path}: metadata 'extra' is not a JSON object")
    return extra
