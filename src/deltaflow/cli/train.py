"""``deltaflow train``: train a network on a dataset and report test accuracy."""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deltaflow import io
from deltaflow.cli import _pictures
from deltaflow.cli._common import (
    add_data_options,
    add_scale_option,
    check_output,
    input_divisor,
    int_list,
    load_data,
    stderr_console,
)
from deltaflow.data import train_test_split_indices
from deltaflow.engine.activations import ACTIVATIONS
from deltaflow.engine.losses import LOSSES
from deltaflow.errors import ConfigError, DataError, DivergenceError, ModelFileError
from deltaflow.network import Network
from deltaflow.parallel import Communicator, world
from deltaflow.training import checkpoint
from deltaflow.training.loop import EpochRecord, evaluate
from deltaflow.training.optimizers import OPTIMIZERS, SCHEDULES

# Learning rates that train the bundled digits well in the default 30 epochs: the notes'
# sigmoid/squared-error network wants a large plain-SGD step (Nielsen uses 3.0 on MNIST).
DEFAULT_LR = {
    ("sgd", True): 3.0,
    ("sgd", False): 0.5,
    ("momentum", True): 0.3,
    ("momentum", False): 0.05,
    ("nesterov", True): 0.3,
    ("nesterov", False): 0.05,
    ("adam", True): 0.01,
    ("adam", False): 0.005,
}


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
    g.add_argument("--epochs", type=int, default=30, help="passes over the data (default 30)")
    g.add_argument("--batch-size", type=int, default=10, help="examples per step (default 10)")
    g.add_argument(
        "--optimizer", default="sgd", help=f"one of {', '.join(OPTIMIZERS)} (default sgd)"
    )
    g.add_argument(
        "--learning-rate",
        "--lr",
        type=float,
        default=None,
        help="alpha; default 3.0 for sgd with squared_error, 0.5 for sgd otherwise, "
        "0.3/0.05 for momentum and nesterov, 0.01/0.005 for adam",
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
        "--test-fraction",
        type=float,
        default=0.2,
        help="for CSV/NPZ data without a test set: fraction held out for testing (0.2)",
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
        "bit-identical to a run never interrupted",
    )
    _pictures.add_options(p)
    p.set_defaults(func=run)
    _DEFAULTS.update(vars(p.parse_args([])))


# The parser's defaults, to tell which options a --resume command line sets itself.
_DEFAULTS: dict[str, Any] = {}
# What a checkpoint stores of the command line: everything that decides the run.
_STORED = (
    "data", "data_dir", "label_column", "no_download", "layers", "activation", "cost",
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
    with warnings.catch_warnings():
        # a skipped damaged checkpoint is news for the user, not a traceback
        warnings.simplefilter("always", checkpoint.CheckpointWarning)
        warnings.showwarning = lambda message, *_, **__: console.print(
            f"[yellow]warning:[/] {escape(str(message))}"
        )
        return _run(args, console, comm)


def _run(args: argparse.Namespace, console: Console, comm: Communicator | None) -> int:
    root = comm is None or comm.is_root
    out = Console(highlight=False, quiet=not root)
    ckpt = _resume_args(args) if args.resume else None
    save_path = check_output(args.save, args.force, "model file") if args.save else None
    _pictures.check(args)
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
    if not 0.0 < args.test_fraction < 1.0:
        raise ConfigError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")

    data = load_data(args, console)
    X, y, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
    divisor = input_divisor(args.scale, X)
    if divisor != 1.0:
        console.print(f"inputs look like 8-bit pixels: dividing them by {divisor:g}")
        X = X / divisor
        X_test = X_test / divisor if X_test is not None else None
    if X_test is None:
        rng = np.random.default_rng(args.seed)
        tr, te = train_test_split_indices(X.shape[0], args.test_fraction, rng)
        X, y, X_test, y_test = X[tr], y[tr], X[te], y[te]
    assert y_test is not None  # a dataset with X_test has y_test (Dataset checks it)

    n_classes = data.n_classes or int(max(y.max(), y_test.max())) + 1
    if args.layers:
        sizes = int_list(args.layers, "--layers")
        if len(sizes) < 2:
            raise ConfigError("--layers needs at least an input and an output size, e.g. 64,10")
        if sizes[0] != X.shape[1]:
            raise DataError(
                f"--layers starts with {sizes[0]} inputs but the data has {X.shape[1]} features; "
                f"start the layers with {X.shape[1]}"
            )
    else:
        sizes = [X.shape[1], 30, n_classes]
    net = Network(
        sizes, activation_arg(args.activation), args.cost, dtype=args.dtype, seed=args.seed
    )
    lr = args.learning_rate
    if lr is None:
        lr = DEFAULT_LR.get((args.optimizer.lower(), net.loss.name == "squared_error"), 0.1)

    console.print(
        f"[bold]{data.name}[/]: {X.shape[0]} training and {X_test.shape[0]} test examples; "
        f"{net!r}, {args.optimizer} (alpha={lr:g}), batch {args.batch_size}"
    )
    if ckpt is not None:
        console.print(f"resuming from {escape(str(ckpt.path))} after epoch {ckpt.epoch}")
    if comm is not None:
        console.print(f"data-parallel over {comm.size} MPI ranks")
    t0 = time.perf_counter()
    extra = {"input_divisor": divisor, "data": data.name}
    try:
        # fit reports a diverging run itself (DivergenceError); numpy's overflow warnings
        # on the way there would only bury that message
        with (
            _EpochBar(console, args.epochs, ckpt.epoch if ckpt else 0) as bar,
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
        ):
            history = _fit(net, X, y, lr, args, bar, comm)
    except DivergenceError as exc:
        if save_path is None or not root:
            raise
        io.save(net, save_path, extra=extra)  # fit restored the epoch's finite start
        raise DivergenceError(
            f"{exc}; saved the last finite weights (from the start of that epoch) to {save_path}"
        ) from None
    seconds = time.perf_counter() - t0
    if not root:
        return 0  # every rank holds the same weights; rank 0 reports and saves them
    test_cost, test_acc = evaluate(net, X_test, y_test)
    stopped = " (stopped early)" if history.stopped_early else ""
    acc = f"test accuracy {test_acc:.2%}, " if test_acc is not None else ""
    out.print(
        f"{acc}test cost {test_cost:.4f} on {X_test.shape[0]} examples; "
        f"{len(history)} epochs in {seconds:.1f} s{stopped}"
    )
    if save_path is not None:
        io.save(net, save_path, extra=extra)
        out.print(f"saved model to {save_path}")
    _pictures.draw(args, net, history, data, X_test, y_test, out)
    return 0


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
    if not isinstance(stored, dict) or set(stored) != set(_STORED):
        raise ModelFileError(
            f"{ckpt.path} was not written by 'deltaflow train'; resume it with "
            "deltaflow.fit(..., resume=True) instead"
        )
    wrong = [key for key in _STORED if not _fits_option(key, stored[key])]
    if wrong:
        raise ModelFileError(f"{ckpt.path} stores unusable values for {', '.join(wrong)}")
    own = {"save", "force", "quiet", "checkpoint_dir", "resume", "func", "command"}
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
        if key != "save" or args.save is None:
            setattr(args, key, value)
    args.checkpoint_dir = args.resume
    return ckpt


def _fits_option(key: str, value: Any) -> bool:
    """Whether a stored value has the type the option ``key`` takes."""
    default = _DEFAULTS.get(key)
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if key == "learning_rate":
        return value is None or isinstance(value, (int, float))
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
