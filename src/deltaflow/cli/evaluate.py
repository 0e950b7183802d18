"""``deltaflow evaluate``: cost and accuracy of a saved model on a dataset."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from deltaflow import io
from deltaflow.cli._common import add_data_options, load_data, saved_divisor, stderr_console
from deltaflow.data import is_mapped
from deltaflow.errors import DataError
from deltaflow.training.loop import evaluate


def register(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="report a saved model's cost and accuracy on a dataset",
        description=(
            "Load a model saved by 'deltaflow train --save' and report its cost and "
            "accuracy on the dataset's test split (or on all of it when it has none)."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="a .safetensors file saved by deltaflow")
    add_data_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the digits train/test split (0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    net = io.load(args.model)
    data = load_data(args, stderr_console())
    if data.X_test is not None:
        X, y, part = data.X_test, data.y_test, "test split"
    else:
        X, y, part = data.X_train, data.y_train, "all rows"
    divisor = saved_divisor(args.model)
    if is_mapped(X) and divisor != 1.0:
        raise DataError(
            f"{args.model} divides its inputs by {divisor:g} but a directory of .npy files is "
            f"read in place; write it scaled with 'deltaflow convert --scale {divisor:g}' and "
            "train on that"
        )
    if divisor != 1.0:
        X = X / divisor
    cost, acc = evaluate(net, X, y)
    out = Console(highlight=False)
    acc_text = f"accuracy {acc:.2%}, " if acc is not None else ""
    out.print(f"{data.name} ({part}, {X.shape[0]} examples): {acc_text}cost {cost:.4f}")
    return 0
