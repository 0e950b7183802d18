"""Options and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from deltaflow.data import Dataset, RowSubset, is_mapped, load_dataset
from deltaflow.data.csv import describe_delimiter, parse_delimiter
from deltaflow.data.dataset import fingerprint, stratified_split_indices
from deltaflow.data.scaling import SCALES, Scaling
from deltaflow.errors import ConfigError, DataError, ModelFileError
from deltaflow.io import load_extra
from deltaflow.network import Network

DATA_HELP = (
    "'digits' (scikit-learn's bundled 8x8 digits, the default), 'mnist' (the standard "
    "IDX files from --data-dir, or downloaded once into a cache), a path to a .csv "
    "(see --label-column) or .npz (arrays X, y) file, or a directory of .npy files "
    "(X.npy and y.npy, or shards; see 'deltaflow convert'), read in place"
)
# What the bundled loaders divide raw pixels by: raw inputs given to a model trained on
# them (predict, or evaluate on a file) are divided by the same number.
LOADER_DIVISORS = {"digits": 16.0, "mnist": 255.0}


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
        help="CSV label column: an index (0 the first, -1 the last) or a header name; "
        "default: the header column named label, class, target or y (any case). Labels "
        "may be class indices 0, 1, ... or names (stored with the model)",
    )
    g.add_argument(
        "--delimiter",
        metavar="SEP",
        help="CSV field separator: one character, or comma, semicolon, tab, whitespace "
        "(default: sniffed from the first lines)",
    )
    g.add_argument(
        "--no-download",
        action="store_true",
        help="for --data mnist without --data-dir: fail instead of downloading",
    )


def label_column(value: str | None) -> int | str | None:
    """``--label-column`` as an index or a name; None when it was not given."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value


def delimiter_of(args: argparse.Namespace) -> str | None:
    """``--delimiter`` as the separator character (None: sniff it)."""
    text = getattr(args, "delimiter", None)
    return None if text is None else parse_delimiter(text)


def source_id(data: str, data_dir: str | None = None) -> str:
    """How a source is recorded: a bundled source's name, or a file's absolute path."""
    if data.lower() in LOADER_DIVISORS:
        return data.lower()
    return str(Path(data).resolve())


def check_data_options(args: argparse.Namespace) -> None:
    """The data options' own checks, before anything is loaded or printed."""
    delimiter_of(args)
    if args.data is None:
        return
    if args.data.lower() in LOADER_DIVISORS:
        if args.data_dir is not None and not Path(args.data_dir).is_dir():
            raise DataError(f"--data-dir {args.data_dir} is not a directory")
        return
    if args.data_dir is not None:
        raise ConfigError("--data-dir is for --data mnist; drop it for a file")
    if not Path(args.data).exists():
        if not args.data.lower().endswith((".csv", ".csv.gz", ".npz")):
            raise DataError(
                f"unknown data source {args.data!r}; expected 'digits', 'mnist', or a path "
                "to a .csv, .csv.gz or .npz file or to a directory of .npy files"
            )
        raise DataError(f"no such file: {args.data}")


def load_data(
    args: argparse.Namespace,
    console: Console | None = None,
    *,
    class_names: list[str] | None = None,
) -> Dataset:
    """The dataset named by the data options, with a download bar when one is needed."""
    progress = None
    if console is not None and args.data == "mnist" and args.data_dir is None:
        progress = _download_printer(console)
    return load_dataset(
        args.data,
        data_dir=args.data_dir,
        label_column=label_column(args.label_column),
        delimiter=delimiter_of(args),
        class_names=class_names,
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


def data_fingerprint(data: Dataset) -> str:
    """A hash of every row of a loaded source, both splits."""
    arrays = [data.X_train, data.y_train]
    if data.X_test is not None and data.y_test is not None:
        arrays += [data.X_test, data.y_test]
    return fingerprint(*arrays)


@dataclass(frozen=True)
class Split:
    """A source's rows divided into the training rows and the held-out test rows."""

    X_train: Any  # an array, or a RowSubset of a memory-mapped one
    y_train: np.ndarray
    X_test: Any
    y_test: np.ndarray
    test_fraction: float | None  # None: the source's own fixed test split


def split_rows(data: Dataset, test_fraction: float, seed: int, source: str) -> Split:
    """The source's own test split, or a stratified seeded one of ``test_fraction``."""
    if data.X_test is not None and data.y_test is not None:
        fraction = 0.25 if source == "digits" else None  # the digits loader's seeded split
        return Split(data.X_train, data.y_train, data.X_test, data.y_test, fraction)
    train, test = stratified_split_indices(data.y_train, test_fraction, seed)
    X, y = data.X_train, data.y_train
    if is_mapped(X):  # a .npy directory: both splits read in place, in file order
        train, test = np.sort(train), np.sort(test)
        return Split(RowSubset(X, train), y[train], RowSubset(X, test), y[test], test_fraction)
    return Split(X[train], y[train], X[test], y[test], test_fraction)


@dataclass(frozen=True)
class ModelInfo:
    """What ``train --save`` stored beside a model's parameters."""

    scaling: Scaling
    class_names: list[str] | None
    split: dict[str, Any] | None  # the training source and its held-out rows
    loader_scaled: bool  # the divisor is the bundled source's own


def read_model_info(path: str | os.PathLike[str], net: Network) -> ModelInfo:
    """The stored scaling, class names and split record (older files: what they have).

    Raises
    ------
    ModelFileError
        If a stored value is malformed.
    """
    extra = load_extra(path)
    if "scale" in extra:
        try:
            scaling = Scaling.from_json(extra["scale"], net.sizes[0], str(path))
        except DataError as exc:
            raise ModelFileError(str(exc)) from None
    else:
        divisor = _old_divisor(extra.get("input_divisor", 1.0), path)
        scaling = Scaling("pixels" if divisor != 1.0 else "none", divisor)
    names = extra.get("class_names")
    if names is not None and (
        not isinstance(names, list)
        or len(names) != net.sizes[-1]
        or not all(isinstance(n, str) for n in names)
    ):
        raise ModelFileError(f"{path}: its stored class names do not fit its output layer")
    split = extra.get("split")
    if split is not None and not _valid_split(split):
        raise ModelFileError(f"{path}: its stored training split is malformed")
    loader = isinstance(split, dict) and split.get("source") in LOADER_DIVISORS
    return ModelInfo(scaling, names, split, loader)


def _old_divisor(value: Any, model: str | os.PathLike[str]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ModelFileError(
            f"{model}: its saved input_divisor {value!r} is not a positive number; "
            "re-save the model with deltaflow train --save"
        )
    return float(value)


def _valid_split(split: Any) -> bool:
    if not isinstance(split, dict):
        return False
    kinds = {
        "source": str,
        "fingerprint": str,
        "seed": int,
        "n_train": int,
        "n_test": int,
    }
    if not all(isinstance(split.get(k), t) for k, t in kinds.items()):
        return False
    fraction = split.get("test_fraction")
    if fraction is not None and not (isinstance(fraction, float) and 0 < fraction < 1):
        return False
    optional = ("label_column", "delimiter", "data_dir")
    return all(split.get(k) is None or isinstance(split.get(k), str) for k in optional)


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
    return Console(file=sys.stderr, quiet=quiet, highlight=False, soft_wrap=True)


def add_scale_option(g: Any) -> None:
    g.add_argument(
        "--scale",
        default="auto",
        choices=SCALES,
        help="input scaling, stored with the model and applied by evaluate and predict: "
        "'pixels' divides by 255; 'standard' subtracts each column's training mean and "
        "divides by its deviation; 'minmax' maps each column's training range to [0, 1]; "
        "'none' leaves the inputs; 'auto' (default) is 'pixels' for evident 8-bit images "
        "(whole numbers up to 255, some above 127, at least 64 columns) and 'standard' "
        "for other files. The bundled digits and MNIST come scaled to [0, 1] by their "
        "loaders (divided by 16 and 255); a model trained on them divides raw inputs alike",
    )


def describe_source(split: dict[str, Any]) -> str:
    """A split record's source for messages."""
    source = split["source"]
    text = source if source in LOADER_DIVISORS else Path(source).name
    if split.get("label_column") is not None:
        text += f" (label column {split['label_column']})"
    if split.get("delimiter") is not None:
        text += f" (delimiter {describe_delimiter(split['delimiter'])})"
    return text
