"""deltaflow's MLPClassifier against scikit-learn's, same settings, on MNIST.

Trains both estimators on the 5,000 MNIST training images of ``mnist-5k`` (a CSV with
the label in the last column, pixels 0..255 scaled here to [0, 1]) and tests them on the
official 10,000 t10k images (IDX files), all read with deltaflow's loaders from the
shared data folder. The two libraries run interleaved, alternating which goes first,
``--repeats`` times, and the script prints every run and the medians: on a machine
shared with other jobs, single timings are noise.

Usage::

    python3 benchmarks/sklearn_compare.py                  # scikit-learn's defaults
    python3 benchmarks/sklearn_compare.py --repeats 5 --blas-threads 1
    python3 benchmarks/sklearn_compare.py --data-dir /path/to/shared/data

The data folder defaults to ``$DELTAFLOW_SHARED_DATA`` or ``../shared/data`` beside the
repository.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

from deltaflow.data import load_csv, read_idx
from deltaflow.estimators import MLPClassifier


def default_data_dir() -> Path:
    env = os.environ.get("DELTAFLOW_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def load_mnist_5k(data_dir: Path) -> tuple[np.ndarray, ...]:
    """``X_train, y_train, X_test, y_test`` with pixels in [0, 1] (float32)."""
    train = load_csv(data_dir / "mnist-5k" / "mnist_5k.csv.gz", label_column=-1)
    images = read_idx(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz")
    X_test = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255)
    return train.X_train / np.float32(255), train.y_train, X_test, labels.astype(np.int64)


def run_once(cls: Any, settings: dict[str, Any], data: tuple[np.ndarray, ...]) -> dict[str, Any]:
    X_train, y_train, X_test, y_test = data
    clf = cls(**settings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    return {
        "accuracy": float(clf.score(X_test, y_test)),
        "seconds": seconds,
        "epochs": int(clf.n_iter_),
        "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--repeats", type=int, default=3, help="runs of each library")
    parser.add_argument("--hidden", type=int, nargs="+", default=[100], help="hidden sizes")
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--learning-rate-init", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0, help="random_state of the first run")
    parser.add_argument(
        "--blas-threads", type=int, default=None, help="limit BLAS threads (threadpoolctl)"
    )
    args = parser.parse_args(argv)

    if not (args.data_dir / "mnist-5k").is_dir():
        print(f"no MNIST data in {args.data_dir}; pass --data-dir", file=sys.stderr)
        return 2
    data = load_mnist_5k(args.data_dir)
    print(
        f"MNIST: {data[0].shape[0]} training images (mnist-5k), {data[2].shape[0]} test "
        f"images (t10k); hidden {tuple(args.hidden)}, adam, max_iter {args.max_iter}, "
        f"learning_rate_init {args.learning_rate_init}, BLAS threads "
        f"{args.blas_threads or 'default'}"
    )
    limit: Any = contextlib.nullcontext()
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(limits=args.blas_threads)
    libraries = {"deltaflow": MLPClassifier, "scikit-learn": SklearnMLPClassifier}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in libraries}
    with limit:
        for repeat in range(args.repeats):
            settings = dict(
                hidden_layer_sizes=tuple(args.hidden),
                max_iter=args.max_iter,
                learning_rate_init=args.learning_rate_init,
                random_state=args.seed + repeat,
            )
            order = list(libraries) if repeat % 2 == 0 else list(libraries)[::-1]
            for name in order:
                result = run_once(libraries[name], settings, data)
                runs[name].append(result)
                print(
                    f"run {repeat + 1} {name:>12}: test accuracy {result['accuracy']:.2%}, "
                    f"{result['epochs']} epochs in {result['seconds']:.2f} s"
                    + ("" if result["converged"] else " (max_iter reached)")
                )
    print("median over runs:")
    for name, results in runs.items():
        accuracy = statistics.median(r["accuracy"] for r in results)
        seconds = statistics.median(r["seconds"] for r in results)
        per_epoch = statistics.median(r["seconds"] / r["epochs"] for r in results)
        print(
            f"  {name:>12}: test accuracy {accuracy:.2%}, fit {seconds:.2f} s "
            f"({per_epoch * 1000:.0f} ms per epoch)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
