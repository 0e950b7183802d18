"""The Dataset container and the checks and splits every reader shares."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from deltaflow.data.npy import is_mapped
from deltaflow.errors import ConfigError, DataError

# A label is a class index and each class gets an output unit: a file's labels must not
# be allowed to ask for an absurd output layer (a label of 2**62 would).
_MAX_CLASSES = 1 << 20


_CHUNK_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_TEXT_BYTES = 1 << 30  # a gzipped CSV may decompress to at most 1 GiB
# Deflate cannot expand data by more than about 1032:1, so a gzip file of n bytes
# cannot decompress to more than this many times n bytes.
_MAX_DEFLATE_RATIO = 1032


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled classification dataset with a training split and an optional test split.

    The arrays are checked and converted on construction: features become float32 in C
    order (features read from files, as :func:`~deltaflow.data.npy.open_npy_dir` gives
    them, stay where they are), labels become int64. Instances compare by identity
    (arrays have no single truth value).

    Parameters
    ----------
    X_train : numpy.ndarray
        Training inputs of shape ``(m, S_0)``: one row per example.
    y_train : numpy.ndarray
        Training labels of shape ``(m,)``, integer class indices ``>= 0``.
    X_test : numpy.ndarray or None
        Test inputs of shape ``(m_test, S_0)``, or None when the source has no split.
    y_test : numpy.ndarray or None
        Test labels of shape ``(m_test,)``; None exactly when ``X_test`` is None.
    name : str
        A short name for messages and model files, such as ``"mnist"`` or a file stem.
    n_classes : int or None
        Number of classes ``K``; every label lies in ``0 .. K - 1``. None if unknown.
    image_shape : tuple of (int, int) or None
        ``(rows, cols)`` when each row of ``X`` is an image flattened row-major, so that
        ``rows * cols == S_0``; None for non-image data.
    class_names : tuple of str or None, default None
        The classes' names in index order when the source names them (a CSV whose labels
        are words); None when the labels are the class indices themselves.

    Raises
    ------
    DataError
        If shapes disagree, labels are not non-negative integers, a label is not below
        ``n_classes``, or ``image_shape`` does not match ``S_0``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    name: str
    n_classes: int | None
    image_shape: tuple[int, int] | None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        X_train = _as_features(self.X_train, "X_train")
        y_train = _as_labels(self.y_train, "y_train")
        _check_rows(X_train, y_train, "X_train", "y_train")
        object.__setattr__(self, "X_train", X_train)
        object.__setattr__(self, "y_train", y_train)

        if (self.X_test is None) != (self.y_test is None):
            raise DataError("X_test and y_test must both be given or both be None")
        if self.X_test is not None and self.y_test is not None:
            X_test = _as_features(self.X_test, "X_test")
            y_test = _as_labels(self.y_test, "y_test")
            _check_rows(X_test, y_test, "X_test", "y_test")
            if X_test.shape[1] != X_train.shape[1]:
                raise DataError(
                    f"X_test has {X_test.shape[1]} features but X_train has "
                    f"{X_train.shape[1]}; both splits need the same columns"
                )
            object.__setattr__(self, "X_test", X_test)
            object.__setattr__(self, "y_test", y_test)

        if self.n_classes is not None:
            self._check_n_classes(self.n_classes)
        if self.class_names is not None and len(self.class_names) != self.n_classes:
            raise DataError(
                f"{len(self.class_names)} class names for {self.n_classes} classes; give one "
                "name per class"
            )
        if self.image_shape is not None:
            rows, cols = self.image_shape
            if rows * cols != X_train.shape[1]:
                raise DataError(
                    f"image_shape {self.image_shape} has {rows * cols} pixels but the "
                    f"data has {X_train.shape[1]} features"
                )

    def _check_n_classes(self, n_classes: int) -> None:
        if n_classes < 1:
            raise DataError(f"n_classes must be at least 1, got {n_classes}")
        for labels, label_name in ((self.y_train, "y_train"), (self.y_test, "y_test")):
            if labels is not None and labels.size and labels.max() >= n_classes:
                raise DataError(
                    f"{label_name} contains label {int(labels.max())} but n_classes is "
                    f"{n_classes}; labels must lie in 0..{n_classes - 1}"
                )

    @property
    def n_features(self) -> int:
        """Number of input features ``S_0`` (the width of the input layer)."""
        return int(self.X_train.shape[1])


def check_finite(X: np.ndarray, name: str) -> None:
    """Raise if an array holds NaN or infinite values.

    Parameters
    ----------
    X : numpy.ndarray
        The array to check, usually a design matrix of shape ``(m, S_0)``.
    name : str
        How to call the array in the message, such as ``"X"`` or ``"X_test"``.

    Raises
    ------
    DataError
        If any entry is NaN or infinite. The message gives the first offending row and
        column (or index, for a 1-D array).
    """
    X = np.asarray(X)
    if X.dtype.kind not in "fc" or np.isfinite(X).all():
        return
    first = tuple(int(i) for i in np.argwhere(~np.isfinite(X))[0])
    if len(first) == 2:
        where = f"row {first[0]}, column {first[1]}"
    elif len(first) == 1:
        where = f"index {first[0]}"
    else:
        where = f"index {first}"
    raise DataError(
        f"{name} contains NaN or infinite values (first at {where}); clean or impute them first"
    )


def one_hot(y: np.ndarray, n_classes: int, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    """Encode class indices as one-hot target rows.

    Parameters
    ----------
    y : numpy.ndarray
        Labels of shape ``(m,)``, integer class indices.
    n_classes : int
        Number of classes ``K``, the width of the output layer ``S_L``.
    dtype : numpy dtype, default numpy.float64
        Element type of the result.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(m, K)`` whose row ``i`` is 1 in column ``y[i]`` and 0 elsewhere.

    Raises
    ------
    ConfigError
        If ``n_classes`` is not a positive integer.
    DataError
        If ``y`` is not 1-D and integer-valued, or a label lies outside ``0 .. K - 1``.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise ConfigError(f"n_classes must be a positive integer, got {n_classes!r}")
    if n_classes < 1:
        raise ConfigError(f"n_classes must be a positive integer, got {n_classes}")
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise DataError(f"labels must be 1-D of shape (m,), got shape {labels.shape}")
    labels = _as_labels(labels, "labels", allow_negative=True)
    outside = (labels < 0) | (labels >= n_classes)
    if outside.any():
        bad = int(labels[np.argmax(outside)])
        raise DataError(
            f"label {bad} is outside 0..{n_classes - 1} (n_classes={n_classes}); check that "
            "the output layer has one unit per class and that labels start at 0"
        )
    encoded = np.zeros((labels.shape[0], int(n_classes)), dtype=dtype)
    encoded[np.arange(labels.shape[0]), labels] = 1
    return encoded


def train_test_split_indices(
    m: int, test_fraction: float, rng: np.random.Generator | int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(m)`` at random into training and held-out indices.

    Parameters
    ----------
    m : int
        Number of examples.
    test_fraction : float
        Fraction of the examples to hold out, in ``[0, 1)``. A positive fraction holds
        out at least one example and keeps at least one for training.
    rng : numpy.random.Generator or int or None
        Source of randomness; an int or None seeds a new ``numpy.random.default_rng``.

    Returns
    -------
    train_idx : numpy.ndarray
        Indices of the training examples, shape ``(m - m_test,)``, in shuffled order.
    test_idx : numpy.ndarray
        Indices of the held-out examples, shape ``(m_test,)``, in shuffled order.

    Raises
    ------
    ConfigError
        If ``m`` is negative, ``test_fraction`` is outside ``[0, 1)``, or a positive
        fraction is asked of fewer than two examples.
    """
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 0:
        raise ConfigError(f"m must be a non-negative integer, got {m!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
    m_test = 0
    if test_fraction > 0:
        if m < 2:
            raise ConfigError(f"cannot hold out a fraction of {m} example(s); need at least 2")
        m_test = min(max(1, round(m * test_fraction)), m - 1)
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    order = generator.permutation(int(m))
    return order[m_test:], order[:m_test]


def stratified_split_indices(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split the rows of a labelled set into training and held-out rows, class by class.

    Each class with at least two rows gives ``round(n_c * test_fraction)`` of them (at
    least one, and never all) to the held-out part, drawn with ``seed``; the result is
    the same for the same labels, fraction and seed on every machine.

    Parameters
    ----------
    y : numpy.ndarray
        Class indices of shape ``(m,)``.
    test_fraction : float
        In ``(0, 1)``.
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    train_idx, test_idx : numpy.ndarray
        Sorted row indices of the two parts.

    Raises
    ------
    ConfigError
        If ``test_fraction`` is outside ``(0, 1)``.
    DataError
        If no class has two rows to split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        if rows.size < 2:
            continue
        n_test = min(max(1, round(rows.size * test_fraction)), rows.size - 1)
        held.append(rng.permutation(rows)[:n_test])
    if not held:
        raise DataError(
            f"cannot hold out test rows from {y.size} example(s): no class has two rows"
        )
    test = np.sort(np.concatenate(held))
    mask = np.ones(y.size, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), test


def fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of arrays' shapes, dtypes and bytes: the same rows, the same text.

    Arrays read from files (memory maps, shards, their row subsets) are hashed in chunks
    of rows, never copied whole; the hash is the one of the same rows in memory.
    """
    h = hashlib.blake2b(digest_size=16)
    for array in arrays:
        if is_mapped(array) and len(array.shape) > 0:
            h.update(f"{np.dtype(array.dtype).str}{tuple(array.shape)}".encode())
            row_bytes = math.prod(array.shape[1:]) * np.dtype(array.dtype).itemsize
            step = max(1, _CHUNK_BYTES // max(1, row_bytes))
            for start in range(0, array.shape[0], step):
                chunk = np.ascontiguousarray(array[start : start + step])
                h.update(chunk.data.cast("B"))
            continue
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.data.cast("B"))
    return h.hexdigest()


def pixel_divisor(X: np.ndarray) -> float:
    """255.0 when ``X`` looks like raw 8-bit pixels (whole numbers in 0..255, some above 1),
    else 1.0: the factor that puts image inputs in [0, 1] as the bundled loaders do."""
    if X.size == 0 or X.min() < 0 or X.max() <= 1 or X.max() > 255:
        return 1.0
    return 255.0 if bool(np.all(X == np.round(X))) else 1.0


def _as_features(X: np.ndarray, name: str) -> np.ndarray:
    """Return ``X`` as a 2-D float32 C-ordered array, copying only when needed.

    Arrays read from files (memory maps, shards) are checked and kept as they are:
    training converts them a batch at a time.
    """
    array = X if is_mapped(X) else np.asarray(X)
    if array.ndim != 2:
        raise DataError(f"{name} must be 2-D of shape (m, S_0), got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{name} must hold numbers, got element type {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(
            f"{name} is empty (shape {array.shape}); need at least one example and one feature"
        )
    if is_mapped(array):
        return array
    return np.ascontiguousarray(array, dtype=np.float32)


def _as_labels(y: np.ndarray, name: str, *, allow_negative: bool = False) -> np.ndarray:
    """Return ``y`` as a 1-D int64 array after checking that it holds integer values."""
    array = np.asarray(y)
    if array.ndim != 1:
        raise DataError(f"{name} must be 1-D of shape (m,), got shape {array.shape}")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array)) | (np.abs(array) >= 2**53)
        if bad.any():
            index = int(np.argmax(bad))
            raise DataError(
                f"{name}[{index}] is {float(array[index]):g}, not an integer; labels must be "
                "class indices 0, 1, 2, ..."
            )
    elif array.dtype.kind not in "biu":
        raise DataError(f"{name} must hold integer class indices, got element type {array.dtype}")
    labels = array.astype(np.int64, copy=False)
    if not allow_negative and (labels < 0).any():
        index = int(np.argmax(labels < 0))
        raise DataError(
            f"{name}[{index}] is {labels[index]}, a negative label; labels must be class "
            "indices 0, 1, 2, ..."
        )
    return labels


def _check_rows(X: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> None:
    if X.shape[0] != y.shape[0]:
        raise DataError(
            f"{x_name} has {X.shape[0]} rows but {y_name} has {y.shape[0]} labels; "
            "each example needs exactly one label"
        )


def _n_classes(labels: list[np.ndarray], path: Path) -> int:
    """One more than the largest label, refusing labels too large to be class indices."""
    top = max(int(y.max()) for y in labels)
    if top >= _MAX_CLASSES:
        raise DataError(
            f"{path} has label {top}, too large for a class index (at most "
            f"{_MAX_CLASSES - 1}: one output unit per class); labels must be 0, 1, 2, ..."
        )
    return top + 1
