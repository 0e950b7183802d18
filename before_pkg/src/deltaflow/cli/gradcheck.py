"""``deltaflow gradcheck``: the dynamic programme against finite differences."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from rich.console import Console

from deltaflow.cli._common import int_list
from deltaflow.cli.train import activation_arg
from deltaflow.errors import ConfigError
from deltaflow.gradcheck import gradcheck
from deltaflow.network import Network


def register(sub: Any) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="check backpropagation's gradients against finite differences",
        description=(
            "Build a small random network and batch, compute dC/dTheta and dC/db with the "
            "backward dynamic programme and with central finite differences in float64, "
            "and print the largest relative error per layer. Exit status 1 if any layer "
            "exceeds --tol."
        ),
    )
    p.add_argument("--layers", default="4,5,3", help="layer sizes (default 4,5,3)")
    p.add_argument("--activation", default="sigmoid", help="one name or one per layer")
    p.add_argument("--cost", default="squared_error", help="the cost (default squared_error)")
    p.add_argument("--examples", type=int, default=8, help="rows in the random batch (8)")
    p.add_argument("--eps", type=float, default=1e-6, help="finite-difference step (1e-6)")
    p.add_argument("--tol", type=float, default=1e-6, help="largest accepted error (1e-6)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sizes = int_list(args.layers, "--layers")
    net = Network(sizes, activation_arg(args.activation), args.cost, seed=args.seed)
    if args.examples < 1:
        raise ConfigError(f"--examples must be at least 1, got {args.examples}")
    rng = np.random.default_rng(args.seed + 1)
    X = rng.standard_normal((args.examples, sizes[0]))
    if net.loss.name == "binary_cross_entropy":  # independent 0/1 targets per unit
        Y: np.ndarray = rng.integers(0, 2, size=(args.examples, sizes[-1])).astype(float)
    elif net.is_classifier:  # class indices
        Y = rng.integers(0, max(sizes[-1], 2), size=args.examples)
    else:  # real-valued targets
        Y = rng.standard_normal((args.examples, sizes[-1]))
    result = gradcheck(net, X, Y, eps=args.eps)
    out = Console(highlight=False)
    out.print(f"{net!r}, {args.examples} examples, eps={args.eps:g}")
    out.print(str(result))
    verdict = "PASS" if result.ok(args.tol) else "FAIL"
    out.print(f"{verdict}: largest relative error {result.max_error:.3e} (tolerance {args.tol:g})")
    return 0 if result.ok(args.tol) else 1
