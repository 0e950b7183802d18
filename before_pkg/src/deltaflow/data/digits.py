"""scikit-learn's bundled 8x8 handwritten digits."""

from __future__ import annotations

import numpy as np

from deltaflow.data.dataset import Dataset
from deltaflow.errors import ConfigError


def load_digits(*, test_size: float = 0.25, seed: int = 0) -> Dataset:
    """Load scikit-learn's bundled 8x8 handwritten digits.

    Parameters
    ----------
    test_size : float, default 0.25
        Fraction of the 1797 images held out as the test split, in ``[0, 1)``; 0 gives
        no test split.
    seed : int, default 0
        Seed of the stratified split; the same seed always gives the same split.

    Returns
    -------
    Dataset
        ``X`` of shape ``(m, 64)`` with pixels scaled from ``0..16`` to ``[0, 1]``,
        ``n_classes=10``, ``image_shape=(8, 8)``. Each class keeps its proportion in
        both splits.

    Raises
    ------
    ConfigError
        If ``test_size`` is outside ``[0, 1)``.
    """
    if not 0.0 <= test_size < 1.0:
        raise ConfigError(f"test_size must be in [0, 1), got {test_size}")
    from sklearn.datasets import load_digits as sklearn_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_load_digits()
    X = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    if test_size == 0:
        return Dataset(X, y, None, None, "digits", 10, (8, 8))
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=seed
    )
    return Dataset(X_train, y_train, X_test, y_test, "digits", 10, (8, 8))
