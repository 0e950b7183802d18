"""``deltaflow train``: train a network on a dataset and report test accuracy."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deltaflow import io
from deltaflow.cli import _pictures
from deltaflow.cli._common import (
    LOADER_DIVISORS,
    Split,
    add_data_options,
    add_scale_option,
    check_data_options,
    check_output,
    data_fingerprint,
    delimiter_of,
    int_list,
    load_data,
    source_id,
    split_rows,
    stderr_console,
)
from deltaflow.cli._rates import default_learning_rate, range_test, table_text
from deltaflow.data import Dataset, is_mapped
from deltaflow.data.scaling import Scaling, fit_scaling
from deltaflow.engine.activations import ACTIVATIONS
from deltaflow.engine.devices import get_device
from deltaflow.engine.losses import LOSSES
from deltaflow.errors import ConfigError, DataError, DivergenceError, ModelFileError
from deltaflow.network import Network
from deltaflow.parallel import Communicator, world
from deltaflow.training import checkpoint
from deltaflow.training.loop import EpochRecord, evaluate
from deltaflow.training.optimizers import OPTIMIZERS, SCHEDULES


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a network (default: the notes' network on the bundled digits)",
        description=(
            "Train a fully connected network by mini-batch gradient descent and report "
            "its accuracy on held-out test data. With no options it trains the notes' "
            "sigmoid network with the squared-error cost on scikit-learn's 8x8 digits."
        ),
    )
    add_data_options(p)
    add_network_options(p)
    g = p.add_argument_group("training")
    g.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="passes over the data (default 30; with --resume, a larger number extends the run)",
    )
    g.add_argument("--batch-size", type=int, default=10, help="examples per step (default 10)")
    g.add_argument(
        "--optimizer",
        default="sgd",
        help=f"one of {', '.join(OPTIMIZERS)}, lbfgs (full batch: each epoch is one "
        "L-BFGS iteration; default sgd)",
    )
    g.add_argument(
        "--learning-rate",
        "--lr",
        default=None,
        metavar="ALPHA",
        help="the step size alpha, or 'auto': a short learning-rate range test on a slice "
        "of the training data picks it (and says which). The default depends on the "
        f"optimizer and the network: {table_text()}",
    )
    g.add_argument("--momentum", type=float, default=0.9, help="for momentum/nesterov (0.9)")
    g.add_argument("--beta1", type=float, default=0.9, help="Adam's beta1 (0.9)")
    g.add_argument("--beta2", type=float, default=0.999, help="Adam's beta2 (0.999)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty (default 0)")
    g.add_argument(
        "--schedule",
        default="constant",
        help=f"learning-rate schedule: {', '.join(SCHEDULES)} (default constant)",
    )
    g.add_argument("--step-size", type=int, default=10, help="epochs per step of 'step' (10)")
    g.add_argument("--gamma", type=float, default=0.5, help="decay of step/exponential (0.5)")
    g.add_argument(
        "--validation-split",
        type=float,
        default=0.1,
        help="fraction of the training data held out to validate each epoch (default 0.1)",
    )
    g.add_argument(
        "--early-stopping",
        action="store_true",
        help="stop when the validation cost stops improving; keep the best epoch",
    )
    g.add_argument("--patience", type=int, default=5, help="epochs without improvement (5)")
    g.add_argument(
        "--device",
        default="cpu",
        metavar="{cpu,cuda}",
        help="where to train: cpu (default) or cuda (a GPU, with CuPy installed)",
    )
    g.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="for CSV/NPZ data without a test set: fraction held out for testing, drawn "
        "with --seed class by class and recorded in the model file (0.2)",
    )
    g.add_argument(
        "--threads", type=int, metavar="N", help="BLAS threads (default: the BLAS's own)"
    )
    add_scale_option(g)
    o = p.add_argument_group("output")
    o.add_argument("--save", metavar="PATH", help="save the trained model (.safetensors)")
    o.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing --save file or picture, and start over in a --checkpoint-dir "
        "that holds checkpoints (deleting them)",
    )
    o.add_argument(
        "--history",
        metavar="FILE",
        help="write the per-epoch record (cost, accuracy, validation, rate, seconds) to "
        "FILE.csv or FILE.json",
    )
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    c = p.add_argument_group("checkpoints")
    c.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="write a checkpoint to DIR every --checkpoint-every epochs and after the last "
        "(atomic; the newest two are kept)",
    )
    c.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        metavar="N",
        help="epochs between checkpoints (1)",
    )
    c.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run checkpointed in DIR from its newest valid checkpoint, with "
        "the data, network and training settings stored there; the result is "
        "bit-identical to a run never interrupted. With --epochs above the stored "
        "count it extends a finished run",
    )
    _pictures.add_options(p)
    p.set_defaults(func=run)
    _DEFAULTS.update(vars(p.parse_args([])))


# The parser's defaults, to tell which options a --resume command line sets itself.
_DEFAULTS: dict[str, Any] = {}
# What a checkpoint stores of the command line: everything that decides the run.
_STORED = (
    "data", "data_dir", "label_column", "delimiter", "no_download", "layers", "activation", "cost",
    "dtype", "seed", "epochs", "batch_size", "optimizer", "learning_rate", "momentum",
    "beta1", "beta2", "weight_decay", "schedule", "step_size", "gamma", "validation_split",
    "early_stopping", "patience", "test_fraction", "scale", "checkpoint_every", "save",
)  # fmt: skip


def add_network_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network")
    g.add_argument(
        "--layers",
        metavar="S0,...,SL",
        help="layer sizes, input first, e.g. 64,32,10 (default: inputs,30,classes)",
    )
    g.add_argument(
        "--activation",
        default="sigmoid",
        help=f"one name for every layer or one per layer, comma-separated: "
        f"{', '.join(sorted(ACTIVATIONS))} (default sigmoid)",
    )
    g.add_argument(
        "--cost",
        default="squared_error",
        help=f"{', '.join(sorted(LOSSES))} (default squared_error)",
    )
    g.add_argument("--dtype", default="float64", help="float32 or float64 (default float64)")
    g.add_argument("--seed", type=int, default=0, help="seed for everything random (default 0)")


def activation_arg(text: str) -> str | list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    return names[0] if len(names) == 1 else names


def run(args: argparse.Namespace) -> int:
    # under mpiexec: train data-parallel, rank 0 alone printing and writing files
    comm = world()
    console = stderr_console(args.quiet or (comm is not None and not comm.is_root))
    # warnings (a damaged checkpoint skipped) are news for the user: one line each,
    # once, shown with --quiet too (by rank 0 alone under mpiexec)
    warner = stderr_console(comm is not None and not comm.is_root)
    seen: set[str] = set()

    def show(message: Any, *_: Any, **__: Any) -> None:
        text = str(message)
        if text not in seen:
            seen.add(text)
            warner.print(f"[yellow]warning:[/] {escape(text)}")

    with warnings.catch_warnings():
        warnings.simplefilter("always", checkpoint.CheckpointWarning)
        warnings.showwarning = show
        return _run(args, console, show, comm)


def _run(args: argparse.Namespace, console: Console, warn: Any, comm: Communicator | None) -> int:
    root = comm is None or comm.is_root
    out = Console(highlight=False, soft_wrap=True, quiet=not root)
    get_device(args.device)  # no GPU, no CuPy: one line and nothing written
    ckpt = _resume_args(args) if args.resume else None
    if args.epochs is None:
        args.epochs = 30
    checked = _check_options(args)
    if args.checkpoint_dir and ckpt is None:
        existing = checkpoint.list_checkpoints(args.checkpoint_dir)
        if existing and not args.force:
            raise DataError(
                f"{args.checkpoint_dir} already holds checkpoints (newest "
                f"{existing[0][1].name}); pass --resume {args.checkpoint_dir} to continue that "
                "run, or --force to delete them and start over"
            )
        if existing and root:
            checkpoint.clear_checkpoints(args.checkpoint_dir)
        if existing and comm is not None:
            comm.barrier()  # no rank starts before they are gone

    data = load_data(args, console)
    split = split_rows(data, args.test_fraction, args.seed, source_id(args.data))
    n_classes = data.n_classes or int(max(split.y_train.max(), split.y_test.max())) + 1
    present = np.unique(split.y_train)
    if present.size < 2:
        raise DataError(
            f"{data.name} has a single class ({_class_name(data, int(present[0]))}) in its "
            "training rows; a classifier needs at least two (is --label-column right?)"
        )
    y, y_test = split.y_train, split.y_test
    X: Any
    X_test: Any
    if is_mapped(data.X_train):  # a .npy directory is read in place, as it is stored
        scaling = _mapped_scaling(args.scale)
        X, X_test = split.X_train, split.X_test
    else:
        loader = LOADER_DIVISORS.get(args.data.lower())
        scaling = fit_scaling(args.scale, split.X_train, loader_divisor=loader)
        X = scaling.apply(split.X_train, divided=loader is not None)
        X_test = scaling.apply(split.X_test, divided=loader is not None)

    sizes = checked.sizes or [X.shape[1], 30, n_classes]
    if sizes[0] != X.shape[1]:
        raise DataError(
            f"--layers starts with {sizes[0]} inputs but the data has {X.shape[1]} features; "
            f"start the layers with {X.shape[1]}"
        )
    net = Network(sizes, checked.activation, args.cost, dtype=args.dtype, seed=args.seed).to(
        args.device
    )
    lr = checked.learning_rate
    if lr is None:
        lr = args.learning_rate = default_learning_rate(args.optimizer, net)
    elif lr == "auto":
        lr, _ = range_test(
            net, X, y, optimizer=args.optimizer, batch_size=args.batch_size, seed=args.seed
        )
        lr = args.learning_rate = float(f"{lr:.3g}")
        console.print(
            f"--lr auto: a range test on {min(X.shape[0], 1000)} rows picked alpha={lr:g}"
        )
    assert not isinstance(lr, str)  # 'auto' was replaced by the rate it picked

    console.print(
        f"[bold]{escape(data.name)}[/]: {X.shape[0]} training and {X_test.shape[0]} test "
        f"examples; the model {scaling.describe()}"
    )
    console.print(
        f"{net!r}, "
        + (
            "lbfgs, full batch"
            if args.optimizer.lower() == "lbfgs"
            else f"{args.optimizer} (alpha={lr:g}), batch {args.batch_size}"
        )
    )
    if ckpt is not None:
        console.print(f"resuming from {escape(str(ckpt.path))} after epoch {ckpt.epoch}")
    # what the saved model keeps; rank 0 alone saves, and reads the data through for it
    extra = _model_extra(args, data, split, scaling) if root else {}
    if comm is not None:
        console.print(f"data-parallel over {comm.size} MPI ranks")
    t0 = time.perf_counter()
    try:
        # fit reports a diverging run itself (DivergenceError); numpy's overflow warnings
        # on the way there would only bury that message
        with (
            _EpochBar(console, args.epochs, ckpt.epoch if ckpt else 0) as bar,
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
            _threads(args.threads),
        ):
            history = _fit(net, X, y, lr, args, bar, comm)
    except DivergenceError as exc:
        if checked.save is None or not root:
            raise
        io.save(net, checked.save, extra=extra)  # fit restored the epoch's finite start
        raise DivergenceError(
            f"{exc}; saved the last finite weights (from the start of that epoch) to {checked.save}"
        ) from None
    seconds = time.perf_counter() - t0
    if not root:
        return 0  # every rank holds the same weights; rank 0 reports and saves them
    test_cost, test_acc = evaluate(net, X_test, y_test)
    stopped = " (stopped early)" if history.stopped_early else ""
    ran = len(history) - (ckpt.epoch if ckpt else 0)
    epochs = f"{ran} epochs" if ckpt is None else f"{ran} epochs here, {len(history)} in all"
    acc = f"test accuracy {test_acc:.2%}, " if test_acc is not None else ""
    out.print(
        f"{acc}test cost {test_cost:.4f} on {X_test.shape[0]} held-out examples; "
        f"{epochs} in {seconds:.1f} s{stopped}"
    )
    note = _did_not_learn(history, y)
    if note:
        warn(note)
    if checked.save is not None:
        io.save(net, checked.save, extra=extra)
        out.print(f"saved model to {checked.save}")
    if checked.history is not None:
        _write_history(history, checked.history)
        out.print(f"wrote the per-epoch history to {checked.history}")
    _pictures.draw(args, net, history, data, X_test, y_test, out)
    return 0


def _mapped_scaling(scale: str) -> Scaling:
    """A directory of .npy files is trained on as stored: it cannot be rescaled in place."""
    if scale not in ("auto", "none"):
        raise ConfigError(
            f"--scale {scale} cannot rescale a directory of .npy files, which is read in "
            "place; write it scaled with 'deltaflow convert --scale 255' (or scale it "
            "yourself), then train with --scale none"
        )
    return Scaling("none")


def _class_name(data: Dataset, index: int) -> str:
    return repr(data.class_names[index]) if data.class_names else str(index)


def _model_extra(
    args: argparse.Namespace, data: Dataset, split: Split, scaling: Scaling
) -> dict[str, Any]:
    """What the model file keeps beside the parameters: how to scale inputs, the class
    names, and which rows of which source were held out."""
    record = {
        "source": source_id(args.data),
        "fingerprint": data_fingerprint(data),
        "seed": int(args.seed),
        "test_fraction": split.test_fraction,
        "label_column": args.label_column,
        "delimiter": delimiter_of(args),
        "data_dir": str(Path(args.data_dir).resolve()) if args.data_dir else None,
        "n_train": int(split.X_train.shape[0]),
        "n_test": int(split.X_test.shape[0]),
    }
    extra: dict[str, Any] = {
        "input_divisor": scaling.divisor,  # what deltaflow 0.1 reads
        "scale": scaling.to_json(),
        "data": data.name,
        "split": record,
    }
    if data.class_names is not None:
        extra["class_names"] = list(data.class_names)
    return extra


def _did_not_learn(history: Any, y: np.ndarray) -> str | None:
    """A warning when training ended near chance or its cost did not fall."""
    if not len(history):
        return None
    chance = float(np.bincount(y).max() / y.size)
    acc = history.accuracy[-1]
    advice = "try --lr auto, or another --lr"
    if acc is not None and acc < chance + 0.05:
        return (
            f"training did not learn: training accuracy {acc:.1%} is within 5 points of "
            f"chance ({chance:.1%}); {advice}"
        )
    if len(history) > 1 and not history.cost[-1] < history.cost[0]:
        return (
            f"training did not learn: the cost went from {history.cost[0]:.4g} to "
            f"{history.cost[-1]:.4g}; {advice}"
        )
    return None


def _write_history(history: Any, path: Path) -> None:
    record = history.as_dict()
    if path.suffix.lower() == ".json":
        io.atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode())
        return
    keys = ["epoch", "cost", "accuracy", "val_cost", "val_accuracy", "learning_rate", "seconds"]
    lines = [",".join(keys)]
    for row in zip(*(record[k] for k in keys)):
        lines.append(",".join("" if v is None else f"{v:.10g}" for v in row))
    io.atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Let the BLAS use ``n`` threads meanwhile (``--threads``)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


@dataclass
class _Checked:
    """The options that needed parsing, parsed."""

    sizes: list[int] | None
    activation: str | list[str]
    learning_rate: float | str | None
    save: Path | None
    history: Path | None


def _check_options(args: argparse.Namespace) -> _Checked:
    """Every option's range, name, combination and path, before any work."""
    ints = {
        "--epochs": args.epochs,
        "--batch-size": args.batch_size,
        "--patience": args.patience,
        "--step-size": args.step_size,
        "--checkpoint-every": args.checkpoint_every,
    }
    for name, value in ints.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be a non-negative whole number, got {args.seed}")
    args.optimizer = args.optimizer.lower()
    if args.optimizer not in (*OPTIMIZERS, "lbfgs"):
        raise ConfigError(
            f"--optimizer must be one of {', '.join(OPTIMIZERS)}, lbfgs; got {args.optimizer!r}"
        )
    if args.optimizer == "lbfgs" and (args.checkpoint_dir or args.resume):
        raise ConfigError(
            "--optimizer lbfgs runs without checkpoints; leave out --checkpoint-dir and --resume"
        )
    if args.optimizer == "lbfgs" and _pictures.wants_delta_norms(args):
        raise ConfigError(
            "--optimizer lbfgs records no per-layer delta norms; leave out --plot-deltas "
            "and --delta-table"
        )
    if args.optimizer == "lbfgs" and str(args.learning_rate).lower() == "auto":
        raise ConfigError(
            "--lr auto picks a step size, but lbfgs finds each step by a line search; "
            "leave --lr out"
        )
    if args.schedule.lower() not in SCHEDULES:
        raise ConfigError(
            f"--schedule must be one of {', '.join(SCHEDULES)}; got {args.schedule!r}"
        )
    unit = {"--momentum": args.momentum, "--beta1": args.beta1, "--beta2": args.beta2}
    for name, value in unit.items():
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {value}")
    if not (0.0 <= args.weight_decay < math.inf):
        raise ConfigError(f"--weight-decay must be a non-negative number, got {args.weight_decay}")
    if not (0.0 < args.gamma < math.inf):
        raise ConfigError(f"--gamma must be positive, got {args.gamma}")
    if not 0.0 <= args.validation_split < 1.0:
        raise ConfigError(f"--validation-split must be in [0, 1), got {args.validation_split}")
    if args.early_stopping and args.validation_split == 0:
        raise ConfigError("--early-stopping needs validation data; give --validation-split > 0")
    if not 0.0 < args.test_fraction < 1.0:
        raise ConfigError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    if args.dtype not in ("float32", "float64"):
        raise ConfigError(f"--dtype must be float32 or float64, got {args.dtype!r}")
    rate = _learning_rate(args.learning_rate)
    sizes = None
    if args.layers:
        sizes = int_list(args.layers, "--layers")
        if len(sizes) < 2 or min(sizes) < 1:
            raise ConfigError(
                f"--layers needs at least an input and an output size, each at least 1, "
                f"e.g. 64,10; got {args.layers}"
            )
    activation = activation_arg(args.activation)
    L = len(sizes) - 1 if sizes else 2
    Network([2] * (L + 1), activation, args.cost, dtype=args.dtype)  # names and pairing
    check_data_options(args)
    if Path(args.data).is_dir():
        _mapped_scaling(args.scale)  # a directory is read in place: it cannot be rescaled
    _pictures.check(args)
    save = check_output(args.save, args.force, "model file") if args.save else None
    history = None
    if args.history:
        history = check_output(args.history, args.force, "history file")
        if history.suffix.lower() not in (".csv", ".json"):
            raise ConfigError(f"--history must name a .csv or .json file, got {args.history}")
    return _Checked(sizes, activation, rate, save, history)


def _learning_rate(value: Any) -> float | str | None:
    if value is None or value == "auto":
        return value
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = math.nan
    if not 0.0 < rate < math.inf:
        raise ConfigError(f"--lr must be a positive number or 'auto', got {value!r}")
    return rate


def _fit(
    net: Network,
    X: Any,
    y: Any,
    lr: float,
    args: argparse.Namespace,
    bar: Any,
    comm: Communicator | None,
) -> Any:
    stored = {key: getattr(args, key) for key in _STORED}
    for key in ("data_dir", "save"):  # a resumed run may start elsewhere
        if stored[key] is not None:
            stored[key] = str(Path(stored[key]).resolve())
    if stored["data"].lower() not in ("digits", "mnist"):
        stored["data"] = str(Path(stored["data"]).resolve())
    return net.fit(
        X,
        y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=lr,
        optimizer=args.optimizer,
        momentum=args.momentum,
        beta1=args.beta1,
        beta2=args.beta2,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        step_size=args.step_size,
        gamma=args.gamma,
        validation_split=args.validation_split,
        early_stopping=args.early_stopping,
        patience=args.patience,
        callbacks=[bar.update],
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        resume=bool(args.resume),
        checkpoint_extra={"cli": stored},
        track_delta_norms=_pictures.wants_delta_norms(args),
        comm=comm,
    )


def _resume_args(args: argparse.Namespace) -> checkpoint.Checkpoint:
    """Fill ``args`` from the checkpoint in ``--resume DIR``; refuse conflicting options."""
    if args.checkpoint_dir and Path(args.checkpoint_dir).resolve() != Path(args.resume).resolve():
        raise ConfigError(
            f"--resume {args.resume} writes its checkpoints there; drop --checkpoint-dir"
        )
    ckpt = checkpoint.load_latest(args.resume)
    if ckpt is None:
        raise ModelFileError(
            f"no checkpoint in {args.resume}; start the run with --checkpoint-dir "
            f"{args.resume} (and your options) instead"
        )
    stored = ckpt.extra.get("cli")
    if isinstance(stored, dict):
        stored = {"delimiter": None, **stored}  # runs checkpointed before --delimiter
    if not isinstance(stored, dict) or set(stored) != set(_STORED):
        raise ModelFileError(
            f"{ckpt.path} was not written by 'deltaflow train'; resume it with "
            "deltaflow.fit(..., resume=True) instead"
        )
    wrong = [key for key in _STORED if not _fits_option(key, stored[key])]
    if wrong:
        raise ModelFileError(f"{ckpt.path} stores unusable values for {', '.join(wrong)}")
    own = {"save", "force", "quiet", "checkpoint_dir", "resume", "func", "command", "epochs"}
    if args.learning_rate not in (None, "auto"):
        args.learning_rate = _learning_rate(args.learning_rate)
    if args.epochs is not None and args.epochs < stored["epochs"]:
        raise ConfigError(
            f"the run in {args.resume} has {stored['epochs']} epochs; --epochs can extend "
            "it, not shorten it"
        )
    clashes = [
        f"--{key.replace('_', '-')}"
        for key in _STORED
        if key not in own
        and getattr(args, key) != _DEFAULTS.get(key)
        and getattr(args, key) != stored[key]
    ]
    if clashes:
        raise ConfigError(
            f"--resume continues with the settings stored in {ckpt.path}; drop {', '.join(clashes)}"
        )
    for key, value in stored.items():
        if (key != "save" or args.save is None) and (key != "epochs" or args.epochs is None):
            setattr(args, key, value)
    args.checkpoint_dir = args.resume
    return ckpt


def _fits_option(key: str, value: Any) -> bool:
    """Whether a stored value has the type the option ``key`` takes."""
    default = _DEFAULTS.get(key)
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if key == "learning_rate":
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    if key == "epochs":
        return isinstance(value, int) and value >= 1
    if default is None or isinstance(default, str):
        return isinstance(value, str) or (default is None and value is None)
    return isinstance(value, type(default)) or (
        isinstance(default, float) and isinstance(value, int)
    )


class _EpochBar:
    """A rich progress bar fed by ``fit``'s per-epoch callback."""

    def __init__(self, console: Console, epochs: int, done: int = 0) -> None:
        self.progress = Progress(
            TextColumn("epoch"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("train", total=epochs, completed=done, stats="")

    def __enter__(self) -> _EpochBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, rec: EpochRecord) -> None:
        stats = f"cost {rec.cost:.4f}"
        if rec.accuracy is not None:
            stats += f"  acc {rec.accuracy:.2%}"
        if rec.val_accuracy is not None:
            stats += f"  val acc {rec.val_accuracy:.2%}"
        elif rec.val_cost is not None:
            stats += f"  val cost {rec.val_cost:.4f}"
        self.progress.update(self.task, completed=rec.epoch, stats=stats)
