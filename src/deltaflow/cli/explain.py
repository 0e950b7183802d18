"""``deltaflow explain``: one training step walked through the derivation, with numbers."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from deltaflow import io
from deltaflow.cli._common import (
    LOADER_DIVISORS,
    add_data_options,
    check_output,
    int_list,
    load_data,
    read_model_info,
)
from deltaflow.cli.train import activation_arg
from deltaflow.data import Dataset, pixel_divisor
from deltaflow.data.scaling import Scaling
from deltaflow.errors import ConfigError, DataError
from deltaflow.explain import FORMATS, render, trace_step
from deltaflow.network import Network


def register(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="walk one training step through the derivation, with the actual numbers",
        description=(
            "Trace one step of gradient descent on one example through the derivation's "
            "stages: the forward sweep (z and a per layer), the cost, the base case "
            "delta^(L), each step of the recursion with the entries it reuses, every "
            "dC/dTheta_kj = a_k delta_j beside its finite difference, the update, and the "
            "multiply-adds of the dynamic programme against enumerating every path. "
            "Default: the notes' shape, 2-3-2 with sigmoid and the squared-error cost, "
            "seeded random weights and example."
        ),
    )
    g = p.add_argument_group("network (not with --model)")
    g.add_argument("--layers", metavar="S0,...,SL", help="layer sizes (default 2,3,2)")
    g.add_argument("--activation", help="one name or one per layer (default sigmoid)")
    g.add_argument("--cost", help="squared_error, cross_entropy, ... (default squared_error)")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights and example (0)")
    g.add_argument("--model", metavar="FILE", help="explain a saved .safetensors model instead")
    p.add_argument(
        "--row",
        type=int,
        metavar="N",
        help="explain training example N of --data instead of a random one",
    )
    add_data_options(p)
    s = p.add_argument_group("step and output")
    s.add_argument(
        "--learning-rate", "--lr", type=float, default=0.5, help="alpha of the update (0.5)"
    )
    s.add_argument("--eps", type=float, default=1e-6, help="finite-difference step (1e-6)")
    s.add_argument(
        "--format", default="text", choices=FORMATS, help="text (default), markdown or latex"
    )
    s.add_argument("--digits", type=int, default=4, help="significant digits shown (4)")
    s.add_argument(
        "--max-entries",
        type=int,
        default=40,
        help="abbreviate vectors, matrices and gradient tables longer than this (40)",
    )
    s.add_argument("--output", "-o", metavar="PATH", help="write here instead of stdout")
    s.add_argument("--force", action="store_true", help="overwrite an existing --output file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = check_output(args.output, args.force, "output file") if args.output else None
    data = load_data(args) if args.row is not None else None
    net, scaling = _network(args, data)
    if data is not None:
        divided = args.data.lower() in LOADER_DIVISORS
        x, y = _data_row(data, args.row, scaling, divided)
    else:
        x, y = _random_example(net, args.seed)
    trace = trace_step(net, x, y, learning_rate=args.learning_rate, eps=args.eps)
    text = render(trace, args.format, digits=args.digits, max_entries=args.max_entries)
    if target is None:
        sys.stdout.write(text)
    else:
        io.atomic_write_bytes(target, text.encode())
    return 0


def _network(args: argparse.Namespace, data: Dataset | None) -> tuple[Network, Scaling | None]:
    """The network to explain, and the input scaling a saved model was trained with."""
    if args.model:
        given = [f"--{n}" for n in ("layers", "activation", "cost") if getattr(args, n)]
        if given:
            raise ConfigError(
                f"{', '.join(given)} describe a new network; leave them out with --model"
            )
        net = io.load(args.model)
        return net, read_model_info(args.model, net).scaling
    if args.layers:
        sizes = int_list(args.layers, "--layers")
        if data is not None and sizes[0] != data.n_features:
            raise DataError(
                f"--layers starts with {sizes[0]} inputs but the data has {data.n_features} "
                f"features; start the layers with {data.n_features}"
            )
    elif data is not None:  # the notes' shape, fitted to the data: inputs, 3, classes
        sizes = [data.n_features, 3, data.n_classes or int(data.y_train.max()) + 1]
    else:
        sizes = [2, 3, 2]
    activation = activation_arg(args.activation or "sigmoid")
    return Network(sizes, activation, args.cost or "squared_error", seed=args.seed), None


def _data_row(
    data: Dataset, row: int, scaling: Scaling | None, divided: bool
) -> tuple[np.ndarray, Any]:
    X, y = data.X_train, data.y_train
    if not 0 <= row < X.shape[0]:
        raise DataError(f"--row {row} is outside the training data's rows 0..{X.shape[0] - 1}")
    if scaling is None:  # a new network: scale raw pixels as the loaders do
        return X[row] / pixel_divisor(X), int(y[row])
    return scaling.apply(X[row : row + 1], divided=divided)[0], int(y[row])


def _random_example(net: Network, seed: int) -> tuple[np.ndarray, Any]:
    """A seeded example with short numbers: inputs in [0, 1] to two decimals."""
    rng = np.random.default_rng(seed + 1)
    S0, SL = net.sizes[0], net.sizes[-1]
    x = np.round(rng.uniform(0.0, 1.0, S0), 2)
    if net.loss.name == "binary_cross_entropy":
        return x, rng.integers(0, 2, size=SL).astype(float)
    if net.is_classifier:
        return x, int(rng.integers(0, max(SL, 2)))
    return x, np.round(rng.uniform(-1.0, 1.0, SL), 2)
