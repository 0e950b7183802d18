"""``deltaflow predict``: run a saved model on new inputs, CSV out."""

from __future__ import annotations

import argparse
import io as _io
import sys
from typing import Any

import numpy as np
from rich.markup import escape

from deltaflow import io
from deltaflow.cli._common import check_output, read_model_info, stderr_console
from deltaflow.data import load_features
from deltaflow.data.csv import parse_delimiter


def register(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="predict with a saved model: CSV or NPZ in, CSV out",
        description=(
            "Run a saved model on the rows of INPUT (a CSV of feature columns, header row "
            "allowed, delimiter sniffed; or an NPZ file with an array X) and write CSV: the "
            "predicted class (its name, when the model was trained on named labels) and "
            "the output activations a_j^(L) for a classifier, the outputs for regression. "
            "Give the features raw, as in the training data: the model applies the input "
            "scaling stored with it (divide by 255, standardise or min-max, as train chose) "
            "and says on stderr which; inputs that look already scaled (all within [0, 1] "
            "for a model that divides by 255, or far from the training data once scaled) "
            "draw a warning."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="a .safetensors file saved by deltaflow")
    p.add_argument("input", metavar="INPUT", help="a .csv (features only) or .npz (array X)")
    p.add_argument("--output", "-o", metavar="PATH", help="write the CSV here (default: stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --output file")
    p.add_argument(
        "--delimiter", metavar="SEP", help="the input CSV's separator (default: sniffed)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    delimiter = parse_delimiter(args.delimiter) if args.delimiter is not None else None
    target = check_output(args.output, args.force, "output file") if args.output else None
    net = io.load(args.model)
    info = read_model_info(args.model, net)
    raw = load_features(args.input, delimiter=delimiter)
    err = stderr_console()
    err.print(f"input scaling: the model {info.scaling.describe()}")
    suspicion = info.scaling.suspicion(raw)
    if suspicion:
        err.print(f"[yellow]warning:[/] {escape(suspicion)}")
    X = info.scaling.apply(raw)
    a = net.forward(X)
    S_L = a.shape[1]
    buf = _io.StringIO()
    if net.is_classifier:
        pred = net.predict(X)
        header = ["prediction"] + [f"a{j}" for j in range(S_L)]
        if info.class_names is not None:
            names = np.array([_csv_field(n) for n in info.class_names], dtype=object)
            table = np.column_stack([names[pred], a.astype(object)])
            fmt = ["%s"] + ["%.9g"] * S_L
        else:
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


def _csv_field(name: str) -> str:
    """A class name as one CSV field (quoted when it holds a comma or a quote)."""
    if any(c in name for c in ',"\n'):
        return '"' + name.replace('"', '""') + '"'
    return name
