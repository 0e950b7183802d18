"""Options and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from deltaflow.data import Dataset, load_dataset, pixel_divisor
from deltaflow.errors import ConfigError, DataError, ModelFileError
from deltaflow.io import load_extra

DATA_HELP = (
    "'digits' (scikit-learn's bundled 8x8 digits, the default), 'mnist' (the standard "
    "IDX files from --data-dir, or downloaded once into a cache), a path to a .csv "
    "(label column first unless --label-column) or .npz (arrays X, y) file, or a directory "
    "of .npy files (X.npy and y.npy, or shards; see 'deltaflow convert'), read in place"
)


def add_data_options(p: argparse.ArgumentParser, *, default: str | None = "digits") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default=default, metavar="SOURCE", help=DATA_HELP)
    g.add_argument(
        "--data-dir",
        metavar="DIR",
        help="directory holding the four MNIST IDX files (gzipped or not), for --data mnist",
    )
    g.add_argument(
        "--label-column",
        metavar="COL",
        help="CSV label column: an index (negative counts from the end) or a header name",
    )
    g.add_argument(
        "--no-download",
        action="store_true",
        help="for --data mnist without --data-dir: fail instead of downloading",
    )


def label_column(value: str | None) -> int | str:
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return value


def load_data(args: argparse.Namespace, console: Console | None = None) -> Dataset:
    """The dataset named by the data options, with a download bar when one is needed."""
    progress = None
    if console is not None and args.data == "mnist" and args.data_dir is None:
        progress = _download_printer(console)
    return load_dataset(
        args.data,
        data_dir=args.data_dir,
        label_column=label_column(args.label_column),
        seed=getattr(args, "seed", 0) or 0,
        download=not args.no_download,
        progress=progress,
    )


def _download_printer(console: Console) -> Any:
    state: dict[str, int] = {}

    def progress(name: str, done: int, total: int | None) -> None:
        step = done * 10 // total if total else done // 1_000_000
        if state.get(name) != step:
            state[name] = step
            size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
            console.print(f"downloading {name}: {size}", highlight=False)

    return progress


def int_list(text: str, name: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(
            f"{name} must be whole numbers separated by commas, e.g. 64,32,10; got {text!r}"
        ) from None
    if not values:
        raise ConfigError(f"{name} is empty; give sizes such as 64,32,10")
    return values


def check_output(path: str | os.PathLike[str], force: bool, what: str) -> Path:
    """Refuse to overwrite an existing file without --force, and check the directory."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{what} path {p} is a directory; give a file name")
    if p.exists() and not force:
        raise DataError(f"{what} {p} already exists; pass --force to overwrite it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"cannot write {what} {p}: directory {parent} does not exist")
    return p


def stderr_console(quiet: bool = False) -> Console:
    return Console(file=sys.stderr, quiet=quiet, highlight=False)


def add_scale_option(g: Any) -> None:
    g.add_argument(
        "--scale",
        default="auto",
        choices=["auto", "none", "255"],
        help="input scaling: 'auto' divides by 255 when the inputs are whole numbers in "
        "0..255 (raw pixels), as the bundled loaders do; 'none' leaves them; '255' always "
        "divides (default auto)",
    )


def saved_divisor(model: str | os.PathLike[str]) -> float:
    """The input scaling that ``train --save`` stored with a model (1 when none)."""
    value = load_extra(model).get("input_divisor", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ModelFileError(
            f"{model}: its saved input_divisor {value!r} is not a positive number; "
            "re-save the model with deltaflow train --save"
        )
    return float(value)


def input_divisor(scale: str, X: np.ndarray) -> float:
    """The number the inputs are divided by, following --scale."""
    if scale == "none":
        return 1.0
    if scale == "255":
        return 255.0
    return pixel_divisor(X)
