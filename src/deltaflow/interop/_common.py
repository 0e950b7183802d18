"""What the converters share: optional imports, the model and its facts, building a Network."""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from deltaflow import io
from deltaflow.engine.losses import get_loss
from deltaflow.errors import ConfigError, MissingDependencyError, ModelFileError
from deltaflow.network import Network

# the activation each cost puts on the output layer by default (the guess for a model
# that comes without deltaflow's metadata)
_COST_FOR_OUTPUT = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy"}


def require(module: str, extra: str) -> ModuleType:
    """``import module``, or one line saying what to install.

    Raises
    ------
    MissingDependencyError
        If the package is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"this needs the optional package {module!r}, which is not installed; "
            f"install it with: python3 -m pip install {extra}"
        ) from None


@dataclass
class ModelFacts:
    """A network and what travels with it: input scaling and class names."""

    net: Network
    input_divisor: float = 1.0
    class_names: list[Any] | None = None


def model_facts(
    model: Any, *, input_divisor: float | None = None, class_names: Any = None
) -> ModelFacts:
    """The network and its facts from a Network, a model file's path or a fitted estimator.

    A model file contributes the input scaling that ``deltaflow train --save`` stored
    with it and the classes a saved deltaflow estimator recorded; a fitted deltaflow
    estimator its ``classes_``. ``input_divisor`` and ``class_names`` override them.
    """
    if isinstance(model, Network):
        facts = ModelFacts(model)
    elif isinstance(model, (str, os.PathLike)):
        facts = _file_facts(Path(model))
    elif isinstance(getattr(model, "network_", None), Network):  # a deltaflow estimator
        classes = getattr(model, "classes_", None)
        facts = ModelFacts(model.network_, class_names=_plain_list(classes))
    else:
        raise ConfigError(
            f"expected a deltaflow Network, a model file path or a fitted deltaflow "
            f"estimator, got {type(model).__name__}"
        )
    if input_divisor is not None:
        facts.input_divisor = _check_divisor(input_divisor, "input_divisor")
    if class_names is not None:
        facts.class_names = _plain_list(class_names)
    return facts


def _file_facts(path: Path) -> ModelFacts:
    net = io.load(path)
    extra = io.load_extra(path)
    divisor = _check_divisor(extra.get("input_divisor", 1.0), f"{path}: its saved input_divisor")
    record = extra.get("sklearn")
    state = record.get("state") if isinstance(record, dict) else None
    classes = state.get("classes_") if isinstance(state, dict) else None
    return ModelFacts(net, divisor, _plain_list(classes))


def _check_divisor(value: Any, what: str) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if not ok or not 0 < float(value) < math.inf:
        raise ModelFileError(f"{what} {value!r} is not a positive number")
    return float(value)


def _plain_list(values: Any) -> list[Any] | None:
    """``values`` as a JSON-ready list (numpy scalars become Python ones), or None."""
    if values is None:
        return None
    out = np.asarray(values).tolist()
    return out if isinstance(out, list) else [out]


def build_network(
    layers: list[tuple[np.ndarray, np.ndarray, str]],
    dtype: np.dtype,
    cost: str | None,
    where: str,
    error: type[Exception] = ModelFileError,
) -> Network:
    """A Network whose layer ``l`` has ``Theta[l]``, ``b[l]`` and ``g^(l)`` from ``layers[l-1]``.

    The arrays are copied in bit for bit. ``cost=None`` picks the cost that matches the
    output activation (cross-entropy for softmax, binary cross-entropy for sigmoid,
    squared error otherwise).

    Raises
    ------
    ModelFileError, or ``error``
        If the shapes do not chain or the cost does not fit the output, naming ``where``.
    """
    sizes = [layers[0][0].shape[0]] + [theta.shape[1] for theta, _, _ in layers]
    for l, (theta, b, _) in enumerate(layers, start=1):
        if theta.ndim != 2 or theta.shape[0] != sizes[l - 1] or b.shape != (theta.shape[1],):
            raise error(
                f"{where}: layer {l} has weights of shape {theta.shape} and biases of shape "
                f"{b.shape}, which do not follow a layer of {sizes[l - 1]} units"
            )
    names = [g for _, _, g in layers]
    if cost is None:
        cost = _COST_FOR_OUTPUT.get(names[-1], "squared_error")
    try:
        get_loss(cost)
        net = Network(sizes, names, cost, dtype=dtype, seed=0)
    except ConfigError as exc:
        raise error(f"{where}: {exc}") from None
    for l, (theta, b, _) in enumerate(layers, start=1):
        net.weights[l - 1][...] = theta
        net.biases[l - 1][...] = b
    return net
