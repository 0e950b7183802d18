"""``deltaflow convert``: write a CSV, NPZ or IDX source as a directory of ``.npy`` files."""

from __future__ import annotations

import argparse
from typing import Any

from deltaflow.cli._common import label_column
from deltaflow.data.convert import convert


def register(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="write a CSV, NPZ or IDX source as a directory of .npy files (for --data DIR)",
        description=(
            "Read SOURCE a chunk of rows at a time and write the directory DIR holding "
            "X.npy and y.npy (or shards X-00000.npy, y-00000.npy, ... with --shard-rows), "
            "which 'deltaflow train --data DIR' reads through memory maps without loading "
            "it. The whole set is never held in memory; DIR appears only once complete."
        ),
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="a .csv/.csv.gz (see --label-column), an .npz (arrays "
        "X, y, optionally X_test, y_test) or an IDX file of inputs with --labels",
    )
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="the directory to write")
    p.add_argument("--labels", metavar="FILE", help="for an IDX source: the IDX file of labels")
    p.add_argument(
        "--label-column",
        metavar="COL",
        help="CSV label column: an index (negative counts from the end) or a header name; "
        "without it, the header column named label, class, target or y",
    )
    p.add_argument(
        "--shard-rows",
        type=int,
        metavar="N",
        help="write shards of at most N rows instead of one X.npy and y.npy",
    )
    p.add_argument(
        "--scale",
        type=float,
        metavar="D",
        help="divide the inputs by D and write them as float32 (255 for 8-bit pixels)",
    )
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = convert(
        args.source,
        args.output,
        labels=args.labels,
        label_column=label_column(args.label_column),
        shard_rows=args.shard_rows,
        scale=args.scale,
        force=args.force,
    )
    splits = ", ".join(f"{rows} {split}" for split, rows in result.rows.items())
    print(
        f"wrote {args.output}: {splits} rows of {result.n_features} features "
        f"({len(result.files)} files)"
    )
    return 0
