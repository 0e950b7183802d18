"""``deltaflow predict``: run a saved model on new inputs, CSV out."""

from __future__ import annotations

import argparse
import io as _io
import sys
from typing import Any

import numpy as np

from deltaflow import io
from deltaflow.cli._common import check_output, saved_divisor
from deltaflow.data import load_features


def register(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="predict with a saved model: CSV or NPZ in, CSV out",
        description=(
            "Run a saved model on the rows of INPUT (a CSV of feature columns, header row "
            "allowed, or an NPZ file with an array X) and write CSV: the predicted class "
            "and the output activations a_j^(L) for a classifier, the outputs for regression."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="a .safetensors file saved by deltaflow")
    p.add_argument("input", metavar="INPUT", help="a .csv (features only) or .npz (array X)")
    p.add_argument("--output", "-o", metavar="PATH", help="write the CSV here (default: stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --output file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = check_output(args.output, args.force, "output file") if args.output else None
    net = io.load(args.model)
    X = load_features(args.input) / saved_divisor(args.model)
    a = net.forward(X)
    S_L = a.shape[1]
    buf = _io.StringIO()
    if net.is_classifier:
        pred = net.predict(X)
        header = ["prediction"] + [f"a{j}" for j in range(S_L)]
        table = np.column_stack([pred, a])
        fmt = ["%d"] + ["%.9g"] * S_L
    else:
        header = [f"y{j}" for j in range(S_L)]
        table, fmt = a, ["%.9g"] * S_L
    np.savetxt(buf, table, fmt=fmt, delimiter=",", header=",".join(header), comments="")
    if target is None:
        sys.stdout.write(buf.getvalue())
    else:
        io.atomic_write_bytes(target, buf.getvalue().encode())
    return 0
