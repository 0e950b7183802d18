"""Pictures of training: learning curves, first-layer weights, confusion matrix, ``|delta|``.

An adapter: it draws numbers other modules computed and holds no mathematics beyond
reshaping a weight column into an image. matplotlib is optional (``pip install
'deltaflow[plot]'``) and imported only when a function here is called. Figures are drawn
on matplotlib's Agg canvas directly, without pyplot, so nothing global (such as the
backend of an interactive session) is changed.

Every function returns the :class:`matplotlib.figure.Figure` and, given a ``path``,
writes it atomically; the format follows the suffix (``.png``, ``.pdf`` or ``.svg``).
"""

from __future__ import annotations

import io as _io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deltaflow.errors import ConfigError, DataError
from deltaflow.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from deltaflow.network import Network
    from deltaflow.training.loop import History

__all__ = [
    "plot_confusion",
    "plot_delta_norms",
    "plot_first_layer",
    "plot_history",
    "require_matplotlib",
]

_FORMATS = ("png", "pdf", "svg")
INSTALL_HINT = "plotting needs matplotlib; install it with: pip install 'deltaflow[plot]'"


def require_matplotlib() -> None:
    """Raise :class:`ConfigError` with the install command if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


def _figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _write(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    if path is None:
        return fig
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt not in _FORMATS:
        raise ConfigError(
            f"cannot draw {path.name}: use a .png, .pdf or .svg file name, not .{fmt}"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"cannot write {path}: directory {parent} does not exist")
    buf = _io.BytesIO()
    fig.savefig(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())
    return fig


def plot_history(
    history: History, path: str | os.PathLike[str] | None = None, *, title: str | None = None
) -> Figure:
    """Learning curves: training and validation cost, and accuracy, per epoch.

    Parameters
    ----------
    history : History
        From :func:`deltaflow.train.fit`.
    path : str or path, optional
        Where to write the picture.
    title : str, optional
        A title over both panels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if len(history) == 0:
        raise DataError("the history is empty; train for at least one epoch before plotting")
    epochs = history.epoch
    has_acc = any(a is not None for a in history.accuracy)
    fig = _figure(11 if has_acc else 6, 4.2)
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    marker = "o" if len(epochs) <= 30 else None

    ax = axes[0]
    ax.plot(epochs, history.cost, marker=marker, ms=3, label="training (mean over the epoch)")
    if any(v is not None for v in history.val_cost):
        ax.plot(epochs, _nan(history.val_cost), marker=marker, ms=3, label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost C")
    ax.set_title("Cost")
    if history.best_epoch is not None:
        ax.axvline(history.best_epoch, color="grey", ls=":", label="lowest validation cost")
    if has_acc:
        ax = axes[1]
        ax.plot(epochs, _percent(history.accuracy), marker=marker, ms=3, label="training")
        if any(v is not None for v in history.val_accuracy):
            ax.plot(epochs, _percent(history.val_accuracy), marker=marker, ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("Accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(_integer_ticks())
    if title:
        fig.suptitle(title)
    return _write(fig, path)


def plot_first_layer(
    net: Network,
    path: str | os.PathLike[str] | None = None,
    *,
    image_shape: Sequence[int] | None = None,
    max_units: int = 100,
) -> Figure:
    """The first layer's weights as images: column ``j`` of ``Theta^(1)``, one per unit.

    Each image is the weights from every input pixel into hidden unit ``j``, drawn on
    its own symmetric scale (red positive, blue negative), so it shows the pattern the
    unit responds to.

    Parameters
    ----------
    net : Network
        ``Theta^(1)`` has shape ``(S[0], S[1])``.
    path : str or path, optional
    image_shape : (rows, cols), optional
        With ``rows * cols == S[0]``; by default the square one, if ``S[0]`` is square.
    max_units : int
        Draw at most this many units (the first ones).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    DataError
        If the inputs cannot be shown as images of ``image_shape``.
    """
    theta = np.asarray(net.weights[0])
    S0, S1 = theta.shape
    if image_shape is None:
        side = math.isqrt(S0)
        if side * side != S0:
            raise DataError(
                f"the input layer has {S0} units, not a square image; pass image_shape "
                "(rows, cols) or use image data such as digits or MNIST"
            )
        image_shape = (side, side)
    rows, cols = (int(v) for v in image_shape)
    if rows * cols != S0:
        raise DataError(
            f"image_shape {rows}x{cols} has {rows * cols} pixels but the input layer has {S0}"
        )
    n = min(S1, int(max_units))
    ncols = math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    fig = _figure(1.3 * ncols + 0.4, 1.3 * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for j, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if j >= n:
            continue
        image = theta[:, j].reshape(rows, cols)
        vmax = float(np.abs(image).max()) or 1.0
        ax.imshow(image, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(f"unit {j}", fontsize=8)
    shown = f"first {n} of {S1} units" if n < S1 else f"{S1} hidden units"
    fig.suptitle(
        rf"First-layer weights $\Theta^{{(1)}}_{{:,j}}$ as {rows}x{cols} images, {shown}"
        "\nred: positive, blue: negative; each image on its own scale"
    )
    return _write(fig, path)


def plot_confusion(
    y_true: Any,
    y_pred: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    n_classes: int | None = None,
    title: str = "Confusion matrix on the test set",
) -> Figure:
    """A confusion matrix: how many examples of each true class got each prediction.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (m,)
        Class indices, for instance ``y_test`` and ``net.predict(X_test)``.
    path : str or path, optional
    n_classes : int, optional
        Number of classes ``K``; by default one more than the largest label seen.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from sklearn.metrics import accuracy_score, confusion_matrix

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise DataError(
            f"y_true and y_pred must be non-empty class lists of the same length, got shapes "
            f"{y_true.shape} and {y_pred.shape}"
        )
    K = n_classes if n_classes is not None else int(max(y_true.max(), y_pred.max())) + 1
    counts = confusion_matrix(y_true, y_pred, labels=list(range(K)))
    accuracy = accuracy_score(y_true, y_pred)
    side = max(4.5, 0.5 * K + 2.5)
    fig = _figure(side + 1, side)
    ax = fig.subplots()
    im = ax.imshow(counts, cmap="Blues")
    fig.colorbar(im, ax=ax, label="examples", shrink=0.8)
    dark = counts.max() / 2
    for t in range(K):
        for p in range(K):
            if counts[t, p]:
                color = "white" if counts[t, p] > dark else "black"
                ax.text(p, t, str(counts[t, p]), ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(K))
    ax.set_yticks(range(K))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}\naccuracy {accuracy:.2%} on {y_true.size} examples")
    return _write(fig, path)


def plot_delta_norms(history: History, path: str | os.PathLike[str] | None = None) -> Figure:
    """Mean ``|delta^(l)|`` per layer over training, on a log scale.

    Layers whose line sits far below the output layer's learn slowly: in a deep sigmoid
    network each ``g'(z) <= 1/4`` factor of the recursion shrinks ``delta`` on its way
    back (the vanishing gradient).

    Parameters
    ----------
    history : History
        From ``fit(..., track_delta_norms=True)``.
    path : str or path, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    norms = np.asarray(history.delta_norms, dtype=float)
    if norms.size == 0:
        raise ConfigError(
            "this history has no per-layer delta norms; train with track_delta_norms=True "
            "(deltaflow train --plot-deltas)"
        )
    L = norms.shape[1]
    epochs = history.epoch[len(history.epoch) - norms.shape[0] :]  # a resumed run may add them late
    fig = _figure(7.5, 4.5)
    ax = fig.subplots()
    marker = "o" if norms.shape[0] <= 30 else None
    for l in range(1, L + 1):
        where = "output" if l == L else "hidden"
        ax.plot(
            epochs,
            norms[:, l - 1],
            marker=marker,
            ms=3,
            label=rf"layer {l} ({where}), $\delta^{{({l})}}$",
        )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"mean $|\delta^{(l)}|$ per example and unit (log scale)")
    ax.set_title(r"How much error signal reaches each layer: mean $|\delta^{(l)}|$")
    ax.grid(alpha=0.3, which="both")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.legend(fontsize=8, loc="best")
    return _write(fig, path)


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _percent(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else 100.0 * v for v in values]
