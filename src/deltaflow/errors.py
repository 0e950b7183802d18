"""The exceptions deltaflow raises, in one place.

Hierarchy::

    DeltaflowError                 every error deltaflow raises on purpose
    ├── ConfigError (ValueError)   a bad argument: sizes, names, hyper-parameters
    ├── DataError (ValueError)     unusable data: shapes, NaNs, labels, files, downloads
    ├── ModelFileError (ValueError) a model or checkpoint file that cannot be trusted
    ├── MissingDependencyError (ImportError) an optional package a feature needs is absent
    ├── DeviceError (RuntimeError) the device asked for is not there (no CUDA GPU)
    └── DivergenceError (ValueError, ArithmeticError)
                                   training produced a NaN or infinite cost

Each message names what was wrong and how to fix it, in one line, so that the CLI can
print it as it is. The ``ValueError`` bases keep scikit-learn-style callers working:
scikit-learn raises ValueError where its solver produces non-finite weights, so
``except ValueError`` catches a diverging fit in both libraries.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DeltaflowError",
    "DeviceError",
    "DivergenceError",
    "MissingDependencyError",
    "ModelFileError",
]


class DeltaflowError(Exception):
    """Base class of every error deltaflow raises on purpose."""


class ConfigError(DeltaflowError, ValueError):
    """An argument is out of range or names something unknown."""


class DataError(DeltaflowError, ValueError):
    """Data that cannot be used as given (shape, values, labels, file contents)."""


class ModelFileError(DeltaflowError, ValueError):
    """A model or checkpoint file that is missing, corrupt or inconsistent."""


class MissingDependencyError(DeltaflowError, ImportError):
    """An optional package that the feature asked for is not installed."""


class DeviceError(DeltaflowError, RuntimeError):
    """The device asked for (``device=\"cuda\"``) is not available on this machine."""


class DivergenceError(DeltaflowError, ValueError, ArithmeticError):
    """Training produced a NaN or infinite cost (or parameters)."""
