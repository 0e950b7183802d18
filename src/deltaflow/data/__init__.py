"""Datasets and the readers that load them, one module per format.

Every loader returns a :class:`Dataset`: a design matrix ``X`` of shape ``(m, S_0)``
(one row per example, one column per input unit, float32, C order) and a label vector
``y`` of shape ``(m,)`` (int64 class indices ``0 .. n_classes - 1``), for a training
split and, where the source has one, a test split.

Sources
-------
``digits`` (:mod:`.digits`)
    scikit-learn's bundled 8x8 handwritten digits (1797 images), scaled to ``[0, 1]``.
``mnist`` (:mod:`.mnist`, :mod:`.idx`)
    The MNIST IDX files, from a directory or downloaded once into a cache.
CSV files (:mod:`.csv`)
    One integer label column, every other column a numeric feature.
NPZ files (:mod:`.npz`)
    Arrays ``X`` and ``y``, optionally ``X_test`` and ``y_test``.
Directories of ``.npy`` files (:mod:`.npy`, written by :mod:`.convert`)
    ``X.npy`` and ``y.npy`` or numbered shards, read through memory maps, never loaded.

Every problem with the data raises :class:`~deltaflow.errors.DataError` with a message
that names the file, the place in it and what to do about it.
"""

from __future__ import annotations

from deltaflow.data.csv import load_csv
from deltaflow.data.dataset import (
    Dataset,
    check_finite,
    one_hot,
    pixel_divisor,
    train_test_split_indices,
)
from deltaflow.data.digits import load_digits
from deltaflow.data.idx import read_idx
from deltaflow.data.mnist import MNIST_BASE_URL, MNIST_MD5, load_mnist
from deltaflow.data.npy import RowSubset, ShardedRows, is_mapped, open_npy_dir
from deltaflow.data.npz import load_npz
from deltaflow.data.sources import load_dataset, load_features

__all__ = [
    "MNIST_BASE_URL",
    "MNIST_MD5",
    "Dataset",
    "RowSubset",
    "ShardedRows",
    "check_finite",
    "is_mapped",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_features",
    "load_mnist",
    "load_npz",
    "one_hot",
    "open_npy_dir",
    "pixel_divisor",
    "read_idx",
    "train_test_split_indices",
]
