"""``deltaflow train``'s picture options: learning curves, weights, confusion, ``|delta|``.

Kept apart from ``train.py`` so that the training command only calls three functions:
:func:`add_options` when building the parser, :func:`check` before training (so a bad
path or a missing matplotlib fails before minutes of work), :func:`draw` after it.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape

from deltaflow.cli._common import check_output
from deltaflow.data import Dataset
from deltaflow.errors import ConfigError
from deltaflow.explain import delta_norm_table
from deltaflow.network import Network
from deltaflow.training.loop import History

_PATHS = ("plot", "plot_weights", "plot_confusion", "plot_deltas")


def add_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pictures (need matplotlib: pip install 'deltaflow[plot]')")
    g.add_argument(
        "--plot",
        metavar="PATH.png",
        help="draw the learning curves: training and validation cost and accuracy per epoch",
    )
    g.add_argument(
        "--plot-weights",
        metavar="PATH.png",
        help="draw the first layer's weights as one image per hidden unit (image data)",
    )
    g.add_argument(
        "--plot-confusion",
        metavar="PATH.png",
        help="draw the confusion matrix of the test set (classification)",
    )
    g.add_argument(
        "--plot-deltas",
        metavar="PATH.png",
        help="draw the mean |delta^(l)| of each layer per epoch (shows vanishing gradients)",
    )
    g.add_argument(
        "--delta-table",
        action="store_true",
        help="print the mean |delta^(l)| of each layer per epoch as a table",
    )


def wants_delta_norms(args: argparse.Namespace) -> bool:
    """Whether training must record the per-layer mean ``|delta|``."""
    return bool(args.plot_deltas or args.delta_table)


def check(args: argparse.Namespace) -> None:
    """Refuse unusable picture paths and a missing matplotlib before training starts."""
    paths = [getattr(args, key) for key in _PATHS if getattr(args, key)]
    if not paths:
        return
    from deltaflow.plots import require_matplotlib

    require_matplotlib()
    for path in paths:
        check_output(path, args.force, "picture")
    if len(set(paths)) < len(paths):
        raise ConfigError("two picture options name the same file; give each its own path")


def draw(
    args: argparse.Namespace,
    net: Network,
    history: History,
    data: Dataset,
    X_test: Any,
    y_test: Any,
    out: Console,
) -> None:
    """Draw the pictures asked for, and print the delta table if asked."""
    if args.delta_table:
        out.print(delta_norm_table(history), end="", soft_wrap=True, markup=False)
    if not any(getattr(args, key) for key in _PATHS):
        return
    from deltaflow import plots

    if args.plot:
        plots.plot_history(history, args.plot, title=f"{data.name}: {net!r}")
        out.print(f"wrote the learning curves to {escape(args.plot)}")
    if args.plot_weights:
        plots.plot_first_layer(net, args.plot_weights, image_shape=data.image_shape)
        out.print(f"wrote the first layer's weights to {escape(args.plot_weights)}")
    if args.plot_confusion:
        if not net.is_classifier:
            raise ConfigError("--plot-confusion needs a classifier (a softmax or sigmoid output)")
        plots.plot_confusion(
            y_test,
            net.predict(X_test),
            args.plot_confusion,
            n_classes=max(net.sizes[-1], 2),
            title=f"Confusion matrix, {data.name} test set",
        )
        out.print(f"wrote the confusion matrix to {escape(args.plot_confusion)}")
    if args.plot_deltas:
        plots.plot_delta_norms(history, args.plot_deltas)
        out.print(f"wrote the per-layer mean |delta| to {escape(args.plot_deltas)}")
