"""Training checkpoints: everything needed to continue a run bit for bit.

A checkpoint is one safetensors file ``checkpoint-EEEEEE.safetensors`` (``E`` the number
of epochs completed) in a checkpoint directory. It holds

* tensors ``theta.l`` and ``b.l`` (``Theta^(l)`` of shape ``(S[l-1], S[l])`` and
  ``b^(l)`` of shape ``(S[l],)``), exactly as in a model file;
* the optimizer's arrays ``opt.KEY.i`` (momentum velocities, Adam's moments), from
  :meth:`~deltaflow.optimizers.Optimizer.state_dict`;
* ``order``, the training examples' current permutation (``fit`` shuffles it in place
  every epoch, so the next epoch's order depends on it), and ``split``, the permutation
  that drew the validation rows;
* with early stopping, the best epoch's parameters ``best.theta.l`` and ``best.b.l``;
* JSON metadata: the architecture, the epoch, the optimizer's scalars (its step count),
  the random generator's ``bit_generator.state``, the history, the full configuration,
  the loop's bookkeeping, a fingerprint of the training data, the caller's ``extra``
  facts, and a SHA-256 ``checksum`` over every tensor's bytes and every metadata entry.

Files are written with :func:`deltaflow.io.atomic_write_bytes` (temporary file in the
same directory, flush, fsync, rename), and older checkpoints are deleted only after the
new one is in place, keeping the newest :data:`KEEP`. On resume the newest checkpoint
that passes every check is used; a corrupt or truncated newer one is skipped with a
:class:`CheckpointWarning` saying so. Nothing is unpickled and no size in a file is
trusted before it has been checked against the file itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from safetensors.numpy import save as st_save

from deltaflow.errors import ConfigError, ModelFileError
from deltaflow.io import atomic_write_bytes, read_safetensors
from deltaflow.network import Network

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "KEEP",
    "Checkpoint",
    "CheckpointWarning",
    "clear_checkpoints",
    "data_fingerprint",
    "list_checkpoints",
    "load_latest",
    "read_checkpoint",
    "restore",
    "restore_history",
    "save_run",
    "start_run",
    "stored_split",
    "write_checkpoint",
]

FORMAT = "deltaflow-checkpoint"
FORMAT_VERSION = 1
KEEP = 2
"""How many checkpoints a directory keeps: the newest and the one before it."""

H = TypeVar("H")
_NAME = re.compile(r"^checkpoint-(\d{6,})\.safetensors$")
_TEMP = re.compile(r"^\.checkpoint-\d{6,}\.safetensors\..*\.tmp$")
_META_KEYS = (
    "format",
    "format_version",
    "sizes",
    "activations",
    "cost",
    "dtype",
    "epoch",
    "optimizer",
    "rng",
    "history",
    "config",
    "state",
    "extra",
)


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (corrupt or truncated) and an older one used instead."""


@dataclass
class Checkpoint:
    """The state of a training run after ``epoch`` epochs.

    Attributes
    ----------
    epoch : int
        Epochs completed.
    sizes, activations, cost, dtype
        The architecture, as :class:`~deltaflow.network.Network` takes it.
    weights, biases : list of ndarray
        ``Theta^(l)`` of shape ``(S[l-1], S[l])`` and ``b^(l)`` of shape ``(S[l],)`` at
        index ``l-1``.
    optimizer : dict
        What :meth:`Optimizer.state_dict` returned (arrays and scalars), plus ``name``.
    rng_state : dict
        ``Generator.bit_generator.state`` after the epoch.
    order : ndarray of int64, shape (m,)
        The permutation of the training rows that the next epoch shuffles.
    split : ndarray of int64 or None
        The permutation that drew the validation rows (None without a split).
    history : dict
        :meth:`History.as_dict` so far.
    config : dict
        The training settings, compared on resume.
    state : dict
        Loop bookkeeping: best validation cost, epochs waited, finished, data fingerprint.
    best_params : list of ndarray or None
        With early stopping, the best epoch's weights then biases.
    extra : dict
        The caller's JSON-serialisable facts (the CLI stores its arguments here).
    path : Path or None
        The file it was read from.
    """

    epoch: int
    sizes: list[int]
    activations: list[str]
    cost: str
    dtype: str
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    optimizer: dict[str, Any]
    rng_state: dict[str, Any]
    order: np.ndarray
    split: np.ndarray | None = None
    history: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    best_params: list[np.ndarray] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def network(self) -> Network:
        """A :class:`Network` holding this checkpoint's parameters (copies)."""
        net = Network(self.sizes, self.activations, self.cost, dtype=self.dtype, seed=0)
        net.set_params(self.weights, self.biases)
        return net


# ------------------------------------------------------------------------ names, listing
def checkpoint_path(directory: str | os.PathLike[str], epoch: int) -> Path:
    """``directory / checkpoint-EEEEEE.safetensors``."""
    return Path(directory) / f"checkpoint-{epoch:06d}.safetensors"


def list_checkpoints(directory: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every checkpoint file in ``directory``, newest first.

    A missing directory has none.
    """
    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise ModelFileError(
            f"cannot list checkpoint directory {directory}: {exc.strerror or exc}"
        ) from None
    found = []
    for name in names:
        match = _NAME.match(name)
        if match:
            found.append((int(match.group(1)), directory / name))
    return sorted(found, reverse=True)


def clear_checkpoints(directory: str | os.PathLike[str]) -> int:
    """Delete every checkpoint (and stale temporary file) in ``directory``; return how many.

    Only deltaflow's own file names are touched.
    """
    directory = Path(directory)
    removed = 0
    for _, path in list_checkpoints(directory):
        path.unlink(missing_ok=True)
        removed += 1
    _remove_stale_temps(directory)
    return removed


def _remove_stale_temps(directory: Path) -> None:
    """Temporary files of a write that was killed before its rename."""
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            if _TEMP.match(name):
                with contextlib.suppress(OSError):
                    (directory / name).unlink()


# ------------------------------------------------------------------------------ writing
def write_checkpoint(
    directory: str | os.PathLike[str], ckpt: Checkpoint, *, keep: int = KEEP
) -> Path:
    """Write ``ckpt`` atomically into ``directory`` and keep only the newest ``keep``.

    The older checkpoints are deleted only after the new file has been renamed into
    place and the directory fsynced, so a kill at any moment leaves at least the last
    complete checkpoint.

    Returns
    -------
    Path
        The new checkpoint file.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(
            f"cannot create checkpoint directory {directory}: {exc.strerror or exc}"
        ) from None
    _remove_stale_temps(directory)
    tensors, metadata = _encode(ckpt)
    metadata["checksum"] = _checksum(tensors, metadata)
    path = checkpoint_path(directory, ckpt.epoch)
    atomic_write_bytes(path, st_save(tensors, metadata=metadata))
    for _, old in list_checkpoints(directory)[max(keep, 1) :]:
        with contextlib.suppress(OSError):
            old.unlink()
    return path


def _encode(ckpt: Checkpoint) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    tensors: dict[str, np.ndarray] = {}
    for l, (w, b) in enumerate(zip(ckpt.weights, ckpt.biases), start=1):
        tensors[f"theta.{l}"] = np.ascontiguousarray(w)
        tensors[f"b.{l}"] = np.ascontiguousarray(b)
    if ckpt.best_params is not None:
        L = len(ckpt.weights)
        for l in range(1, L + 1):
            tensors[f"best.theta.{l}"] = np.ascontiguousarray(ckpt.best_params[l - 1])
            tensors[f"best.b.{l}"] = np.ascontiguousarray(ckpt.best_params[L + l - 1])
    tensors["order"] = np.ascontiguousarray(ckpt.order, dtype=np.int64)
    if ckpt.split is not None:
        tensors["split"] = np.ascontiguousarray(ckpt.split, dtype=np.int64)

    # Optimizer state: arrays become tensors, everything else JSON; the layout records
    # which key is which so that load_state_dict gets back what state_dict gave.
    scalars: dict[str, Any] = {}
    arrays: dict[str, int | None] = {}
    for key, value in ckpt.optimizer.items():
        if isinstance(value, np.ndarray):
            tensors[f"opt.{key}"] = np.ascontiguousarray(value)
            arrays[key] = None
        elif (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, np.ndarray) for v in value)
        ):
            for i, v in enumerate(value):
                tensors[f"opt.{key}.{i}"] = np.ascontiguousarray(v)
            arrays[key] = len(value)
        else:
            scalars[key] = value
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "sizes": json.dumps(ckpt.sizes),
        "activations": json.dumps(ckpt.activations),
        "cost": json.dumps(ckpt.cost),
        "dtype": json.dumps(ckpt.dtype),
        "epoch": json.dumps(ckpt.epoch),
        "optimizer": json.dumps({"scalars": scalars, "arrays": arrays}),
        "rng": json.dumps(ckpt.rng_state),
        "history": json.dumps(ckpt.history),
        "config": json.dumps(ckpt.config),
        "state": json.dumps(ckpt.state),
        "extra": json.dumps(ckpt.extra),
    }
    return tensors, metadata


def _checksum(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> str:
    """SHA-256 over every tensor (name, dtype, shape, bytes) and metadata entry, sorted.

    Each field is length-prefixed so that no two different contents hash the same
    sequence of bytes.
    """
    h = hashlib.sha256()

    def put(data: bytes) -> None:
        h.update(struct.pack("<Q", len(data)))
        h.update(data)

    for name in sorted(tensors):
        t = tensors[name]
        put(name.encode())
        put(t.dtype.str.encode())
        put(json.dumps(list(t.shape)).encode())
        put(np.ascontiguousarray(t).tobytes())
    for key in sorted(metadata):
        if key != "checksum":
            put(key.encode())
            put(metadata[key].encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------ reading
def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify one checkpoint file.

    Raises
    ------
    ModelFileError
        For a missing, truncated or corrupt file (the checksum does not match), or one
        whose metadata and tensors disagree; the message says what is wrong.
    """
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a deltaflow checkpoint")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise ModelFileError(
            f"{path} has checkpoint format version {metadata.get('format_version')!r}; "
            f"this deltaflow reads version {FORMAT_VERSION}"
        )
    stored = metadata.get("checksum")
    if stored is None:
        raise ModelFileError(f"checkpoint {path} has no checksum; it is incomplete")
    if _checksum(tensors, metadata) != stored:
        raise ModelFileError(f"checkpoint {path} is corrupt: its checksum does not match")
    missing = [k for k in _META_KEYS if k not in metadata]
    if missing:
        raise ModelFileError(f"checkpoint {path} lacks metadata {missing}")
    meta = {k: _json(metadata, k, path) for k in _META_KEYS[2:]}
    return _decode(tensors, meta, path)


def _json(metadata: Mapping[str, str], key: str, path: Path) -> Any:
    try:
        return json.loads(metadata[key])
    except (ValueError, RecursionError):
        raise ModelFileError(f"checkpoint {path}: metadata {key!r} is not valid JSON") from None


def _decode(tensors: dict[str, np.ndarray], meta: dict[str, Any], path: Path) -> Checkpoint:
    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"checkpoint {path}: {what}")

    sizes, acts, cost, dtype, epoch = (
        meta["sizes"],
        meta["activations"],
        meta["cost"],
        meta["dtype"],
        meta["epoch"],
    )
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)
    ):
        raise bad("metadata 'sizes' must be a list of at least two positive integers")
    L = len(sizes) - 1
    if not isinstance(acts, list) or len(acts) != L or not all(isinstance(a, str) for a in acts):
        raise bad(f"metadata 'activations' must list {L} names, one per layer")
    if not isinstance(cost, str):
        raise bad("metadata 'cost' must be a name")
    if dtype not in ("float32", "float64"):
        raise bad(f"metadata 'dtype' is {dtype!r}; expected 'float32' or 'float64'")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise bad(f"metadata 'epoch' is {epoch!r}; expected a positive whole number")
    for key in ("rng", "history", "config", "state", "extra", "optimizer"):
        if not isinstance(meta[key], dict):
            raise bad(f"metadata {key!r} must be a JSON object")
    state, history = meta["state"], meta["history"]
    if not (
        isinstance(state.get("best_cost"), (int, float))
        and isinstance(state.get("waited"), int)
        and isinstance(state.get("finished"), bool)
        and isinstance(state.get("data"), str)
    ):
        raise bad("metadata 'state' must hold best_cost, waited, finished and data")
    if not all(
        isinstance(v, list) and len(v) in (0, epoch)
        for v in history.values()
        if not isinstance(v, (bool, int, type(None)))
    ):
        raise bad("metadata 'history' must hold one entry per epoch")
    np_dtype = np.dtype(dtype)

    used: set[str] = set()

    def take(name: str, shape: tuple[int, ...] | None, dt: np.dtype) -> np.ndarray:
        if name not in tensors:
            raise bad(f"tensor {name} is missing")
        t = tensors[name]
        if shape is not None and t.shape != shape:
            raise bad(f"tensor {name} has shape {t.shape} but sizes {sizes} need {shape}")
        if t.dtype != dt:
            raise bad(f"tensor {name} is {t.dtype} but should be {dt}")
        used.add(name)
        return np.array(t, dtype=dt, order="C", copy=True)

    weights = [take(f"theta.{l}", (sizes[l - 1], sizes[l]), np_dtype) for l in range(1, L + 1)]
    biases = [take(f"b.{l}", (sizes[l],), np_dtype) for l in range(1, L + 1)]
    best = None
    if "best.theta.1" in tensors:
        best = [
            take(f"best.theta.{l}", (sizes[l - 1], sizes[l]), np_dtype) for l in range(1, L + 1)
        ] + [take(f"best.b.{l}", (sizes[l],), np_dtype) for l in range(1, L + 1)]
    order = take("order", None, np.dtype(np.int64))
    split = take("split", None, np.dtype(np.int64)) if "split" in tensors else None
    for name, perm in (("order", order), ("split", split)):
        if perm is not None and (perm.ndim != 1 or perm.size == 0):
            raise bad(f"tensor {name} must be a non-empty list of row indices")

    layout = meta["optimizer"]
    scalars, arrays = layout.get("scalars"), layout.get("arrays")
    if not isinstance(scalars, dict) or not isinstance(arrays, dict):
        raise bad("metadata 'optimizer' must hold 'scalars' and 'arrays' objects")
    optimizer: dict[str, Any] = dict(scalars)
    for key, count in arrays.items():
        if count is None:
            optimizer[key] = take(f"opt.{key}", None, np_dtype)
        elif count == 2 * L and not isinstance(count, bool):
            # one array per parameter, weights then biases, shaped like them
            shapes = [w.shape for w in weights] + [b.shape for b in biases]
            optimizer[key] = [take(f"opt.{key}.{i}", shapes[i], np_dtype) for i in range(count)]
        else:
            raise bad(f"optimizer entry {key!r} has a bad array count {count!r}")
    unexpected = sorted(set(tensors) - used)
    if unexpected:
        raise bad(f"unexpected tensors {unexpected[:5]}")
    return Checkpoint(
        epoch=epoch,
        sizes=sizes,
        activations=acts,
        cost=cost,
        dtype=dtype,
        weights=weights,
        biases=biases,
        optimizer=optimizer,
        rng_state=meta["rng"],
        order=order,
        split=split,
        history=meta["history"],
        config=meta["config"],
        state=meta["state"],
        best_params=best,
        extra=meta["extra"],
        path=path,
    )


def load_latest(directory: str | os.PathLike[str]) -> Checkpoint | None:
    """The newest valid checkpoint in ``directory``, or None if it holds none.

    A newer checkpoint that fails its checks (truncated, corrupt: the checksum does not
    match) is skipped with a :class:`CheckpointWarning` naming it and the reason.

    Raises
    ------
    ModelFileError
        If the directory holds checkpoints but none of them is valid.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ModelFileError(f"checkpoint directory {directory} is a file, not a directory")
    failures: list[str] = []
    for _, path in list_checkpoints(directory):
        try:
            ckpt = read_checkpoint(path)
        except ModelFileError as exc:
            failures.append(str(exc))
            continue
        for reason in failures:
            warnings.warn(
                f"skipped a damaged checkpoint ({reason}); resuming from {path.name} "
                f"(epoch {ckpt.epoch}) instead",
                CheckpointWarning,
                stacklevel=2,
            )
        return ckpt
    if failures:
        raise ModelFileError(
            f"no valid checkpoint in {directory}: "
            + "; ".join(failures)
            + "; delete them to start again"
        )
    return None


def data_fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of the training arrays (shapes, dtypes and bytes).

    Stored in a checkpoint so that resuming on different data is refused.
    """
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.data.cast("B"))
    return h.hexdigest()


# ------------------------------------------------------------- the fit loop's side of it
def start_run(
    directory: str | os.PathLike[str],
    resume: bool,
    net: Network,
    config: dict[str, Any],
) -> Checkpoint | None:
    """The checkpoint ``fit`` continues from, after checking it belongs to this run.

    Parameters
    ----------
    resume : bool
        False: ``directory`` must hold no checkpoint (a new run never overwrites an old
        one). True: continue from the newest valid checkpoint, or start afresh if there
        is none.
    config : dict
        ``fit``'s settings; a checkpoint made with other settings is refused.

    Raises
    ------
    ConfigError
        If a new run would overwrite checkpoints, or the checkpoint was made by another
        architecture or other settings (the message lists what differs).
    ModelFileError
        If the directory holds checkpoints and none is valid.
    """
    directory = Path(directory)
    if not resume:
        existing = list_checkpoints(directory)
        if existing:
            raise ConfigError(
                f"{directory} already holds checkpoints (newest {existing[0][1].name}); "
                "pass resume=True to continue that run, or use an empty directory"
            )
        return None
    ckpt = load_latest(directory)
    if ckpt is None:
        return None
    mine = [net.sizes, net.activation_names, net.loss.name, net.dtype.name]
    theirs = [ckpt.sizes, ckpt.activations, ckpt.cost, ckpt.dtype]
    if mine != theirs:
        raise ConfigError(
            f"checkpoint {ckpt.path} is for sizes {ckpt.sizes}, activations "
            f"{ckpt.activations}, cost {ckpt.cost}, {ckpt.dtype}; this network has "
            f"{net.sizes}, {net.activation_names}, {net.loss.name}, {net.dtype.name}"
        )
    config = json.loads(json.dumps(config))
    diffs = [
        f"{key}={ckpt.config.get(key)!r} (now {value!r})"
        for key, value in config.items()
        if ckpt.config.get(key) != value
    ]
    if diffs:
        raise ConfigError(
            f"checkpoint {ckpt.path} was made with other settings: {', '.join(diffs)}; "
            "pass the same settings to resume it, or use an empty directory"
        )
    return ckpt


def check_data(ckpt: Checkpoint, fingerprint: str) -> None:
    """Refuse to resume on other data than the checkpointed run's.

    Raises
    ------
    ConfigError
        If the fingerprint of the training (and validation) arrays differs.
    """
    if ckpt.state.get("data") != fingerprint:
        raise ConfigError(
            f"checkpoint {ckpt.path} was made on other training data; resume with the "
            "same X and Y (and validation data), or use an empty directory"
        )


def stored_split(ckpt: Checkpoint, m: int) -> np.ndarray:
    """The permutation of ``m`` rows that drew the checkpointed run's validation split.

    Raises
    ------
    ModelFileError
        If the checkpoint has none, or not a permutation of ``m`` rows.
    """
    if ckpt.split is None or not _is_permutation(ckpt.split, m):
        raise ModelFileError(
            f"checkpoint {ckpt.path} has no validation split of {m} rows; resume with the "
            "same data and validation_split"
        )
    return ckpt.split


def _is_permutation(p: np.ndarray, m: int) -> bool:
    return p.shape == (m,) and bool(np.array_equal(np.sort(p), np.arange(m)))


def restore(
    ckpt: Checkpoint,
    params: list[np.ndarray],
    optimizer: Any,
    rng: np.random.Generator,
    order: np.ndarray,
) -> None:
    """Put a checkpoint's state back, in place: parameters, optimizer, generator, order.

    ``params`` are the weights then the biases, as ``fit`` holds them.

    Raises
    ------
    ModelFileError
        If the order or the generator state does not fit this run.
    """
    if not _is_permutation(ckpt.order, order.shape[0]):
        raise ModelFileError(
            f"checkpoint {ckpt.path}: 'order' is not a permutation of {order.shape[0]} rows"
        )
    try:
        rng.bit_generator.state = ckpt.rng_state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ModelFileError(
            f"checkpoint {ckpt.path}: cannot restore the random generator ({exc})"
        ) from None
    for p, saved in zip(params, ckpt.weights + ckpt.biases):
        p[...] = saved
    try:
        optimizer.load_state_dict(dict(ckpt.optimizer))
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(
            f"checkpoint {ckpt.path}: cannot restore the optimizer state ({exc})"
        ) from None
    order[...] = ckpt.order


def restore_history(ckpt: Checkpoint, history_type: Callable[..., H]) -> H:
    """The checkpoint's history as ``history_type`` (``deltaflow.train.History``).

    Raises
    ------
    ModelFileError
        If its fields are not the ones ``history_type`` has.
    """
    expected = set(history_type().as_dict())  # type: ignore[attr-defined]
    if set(ckpt.history) != expected:
        raise ModelFileError(
            f"checkpoint {ckpt.path}: its history has fields {sorted(ckpt.history)}, "
            f"expected {sorted(expected)}"
        )
    return history_type(**ckpt.history)


def save_run(
    directory: str | os.PathLike[str],
    *,
    epoch: int,
    net: Network,
    optimizer: Any,
    rng: np.random.Generator,
    order: np.ndarray,
    split: np.ndarray | None,
    history: dict[str, Any],
    config: dict[str, Any],
    state: dict[str, Any],
    best_params: list[np.ndarray] | None,
    extra: dict[str, Any] | None,
) -> Path:
    """Write the state of a ``fit`` run after ``epoch`` epochs (see :func:`write_checkpoint`)."""
    return write_checkpoint(
        directory,
        Checkpoint(
            epoch=epoch,
            sizes=list(net.sizes),
            activations=net.activation_names,
            cost=net.loss.name,
            dtype=net.dtype.name,
            weights=net.weights,
            biases=net.biases,
            optimizer=optimizer.state_dict(),
            rng_state=dict(rng.bit_generator.state),
            order=order,
            split=split,
            history=history,
            config=config,
            state=state,
            best_params=best_params,
            extra=dict(extra or {}),
        ),
    )
