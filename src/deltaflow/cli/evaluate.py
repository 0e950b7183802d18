"""``deltaflow evaluate``: cost and accuracy of a saved model on held-out data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from deltaflow import io
from deltaflow.cli._common import (
    LOADER_DIVISORS,
    ModelInfo,
    add_data_options,
    check_data_options,
    data_fingerprint,
    describe_source,
    load_data,
    read_model_info,
    source_id,
    split_rows,
    stderr_console,
)
from deltaflow.data import Dataset, is_mapped
from deltaflow.errors import DataError
from deltaflow.training.loop import evaluate


def register(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="report a saved model's cost and accuracy on its held-out test rows",
        description=(
            "Load a model saved by 'deltaflow train --save' and report its cost and "
            "accuracy. The model file records its training source and the test rows "
            "held out from it: with no --data, evaluate scores those rows (the number "
            "train printed); given the training source, it scores the same held-out rows; "
            "given another source, its test split or all its rows. It says which rows it "
            "scored and how it scaled them."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="a .safetensors file saved by deltaflow")
    add_data_options(p, default=None)
    p.add_argument(
        "--all-rows",
        action="store_true",
        help="score every row of the source, training rows included (the result then "
        "overstates how the model does on new data)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="for a model file without a training record: seed of the digits split (0)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.seed is not None and args.seed < 0:
        raise DataError(f"--seed must be a non-negative whole number, got {args.seed}")
    net = io.load(args.model)
    info = read_model_info(args.model, net)
    split = info.split
    own_source = split is not None and (
        args.data is None or source_id(args.data) == split["source"]
    )
    if args.data is None:
        if split is None:
            args.data = "digits"
        else:
            args.data = split["source"]
            args.data_dir = args.data_dir or split.get("data_dir")
    if own_source and split is not None:
        args.label_column = args.label_column or split.get("label_column")
        args.delimiter = args.delimiter or split.get("delimiter")
        args.seed = split["seed"] if args.seed is None else args.seed
    args.seed = args.seed or 0
    check_data_options(args)
    err = stderr_console()
    data = load_data(args, err, class_names=info.class_names)
    if data.class_names is not None and info.class_names is None:
        raise DataError(
            f"{data.name} labels its rows by name ({', '.join(data.class_names[:5])}) but "
            f"{args.model} was trained on class indices; give labels 0..{net.sizes[-1] - 1}"
        )
    X, y, part = _rows(args, data, info, own_source)
    mapped = is_mapped(data.X_train)  # read in place: the rows are used as they are stored
    if mapped and info.scaling.kind != "none":
        hint = (
            f"write it scaled with 'deltaflow convert --scale {info.scaling.divisor:g}'"
            if info.scaling.shift is None
            else "scale it the same way first"
        )
        raise DataError(
            f"{args.model} {info.scaling.describe()}, but a directory of .npy files is read "
            f"in place, as stored; {hint}"
        )
    divided = args.data.lower() in LOADER_DIVISORS
    err.print(f"input scaling: the model {info.scaling.describe()}")
    if not divided and not mapped:
        suspicion = info.scaling.suspicion(X)
        if suspicion:
            err.print(f"[yellow]warning:[/] {escape(suspicion)}")
    if not mapped:
        X = info.scaling.apply(X, divided=divided and info.loader_scaled)
    cost, acc = evaluate(net, X, y)
    out = Console(highlight=False, soft_wrap=True)
    acc_text = f"accuracy {acc:.2%}, " if acc is not None else ""
    out.print(f"{escape(data.name)}: {acc_text}cost {cost:.4f} on {escape(part)}")
    return 0


def _rows(
    args: argparse.Namespace, data: Dataset, info: ModelInfo, own_source: bool
) -> tuple[np.ndarray, np.ndarray, str]:
    """The rows to score, and the words saying which they are."""
    split = info.split
    if own_source and split is not None:
        if data_fingerprint(data) != split["fingerprint"]:
            raise DataError(
                f"{args.data} is not the data {args.model} was trained on: its rows "
                "changed since; pass --all-rows to score all of them (training rows may "
                "be among them)"
            )
        rows = split_rows(data, split["test_fraction"] or 0.2, split["seed"], split["source"])
        if args.all_rows:
            X = np.concatenate([rows.X_train, rows.X_test])
            y = np.concatenate([rows.y_train, rows.y_test])
            return (
                X,
                y,
                (
                    f"all {X.shape[0]} rows, including the {rows.X_train.shape[0]} the model "
                    "was trained on (--all-rows)"
                ),
            )
        how = (
            "the source's own test split"
            if split["test_fraction"] is None
            else f"fraction {split['test_fraction']:g}, seed {split['seed']}"
        )
        return (
            rows.X_test,
            rows.y_test,
            (
                f"the {rows.X_test.shape[0]} test rows held out from {describe_source(split)} "
                f"at training ({how}; recorded in the model file)"
            ),
        )
    if data.X_test is not None and data.y_test is not None and not args.all_rows:
        what = (
            "not the source the model was trained on"
            if split is not None
            else "the model file does not record its training rows"
        )
        return data.X_test, data.y_test, f"its test split of {data.X_test.shape[0]} rows ({what})"
    X, y = data.X_train, data.y_train
    if data.X_test is not None and data.y_test is not None:
        X, y = np.concatenate([X, data.X_test]), np.concatenate([y, data.y_test])
    if split is None:
        return (
            X,
            y,
            (
                f"all {X.shape[0]} rows; the model file does not record which rows it was "
                "trained on, so these may include training rows"
            ),
        )
    return (
        X,
        y,
        (
            f"all {X.shape[0]} rows; not the source the model was trained on "
            f"({Path(split['source']).name})"
        ),
    )
