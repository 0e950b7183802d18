"""Time to accuracy on real MNIST images: deltaflow against PyTorch, same start, same batches.

Both train the same network from the same initial weights (PyTorch's layers are copies
of deltaflow's), with plain SGD, the same learning rate and the same order of examples
in every epoch (fit's seeded shuffle, replayed for PyTorch), on the 5,000 MNIST
training images of ``mnist-5k/mnist_5k.csv.gz`` (label in the last column, pixels
divided by 255). After every epoch both are scored on the 10,000 official test images
(``mnist/t10k-*``); scoring is not timed. Their accuracy curves therefore agree up to
rounding, and the question is only how long each takes to reach the target.

    python3 benchmarks/time_to_accuracy.py                      # both networks
    python3 benchmarks/time_to_accuracy.py --arch 784-30-10 --target 0.88 --threads 2

It prints a table per network, writes ``time_to_accuracy.json`` and, with matplotlib,
``time_to_accuracy.png`` (test accuracy against training seconds). The data directory
is ``../shared/data`` beside the repository, or ``--data-dir``, or
``$DELTAFLOW_SHARED_DATA``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deltaflow import Network
from deltaflow.bench import blas_libraries, machine_info, torch_model
from deltaflow.data import load_csv, read_idx


@dataclass(frozen=True)
class Setup:
    name: str
    sizes: tuple[int, ...]
    activation: str
    cost: str
    batch: int
    learning_rate: float
    epochs: int
    target: float


SETUPS = {
    "784-30-10": Setup("784-30-10", (784, 30, 10), "sigmoid", "squared_error", 10, 3.0, 30, 0.88),
    "784-256-256-10": Setup(
        "784-256-256-10", (784, 256, 256, 10), "relu", "cross_entropy", 32, 0.1, 20, 0.92
    ),
}


def default_data_dir() -> Path:
    env = os.environ.get("DELTAFLOW_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def load(data_dir: Path, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train = load_csv(data_dir / "mnist-5k" / "mnist_5k.csv.gz", label_column=-1)
    X = (train.X_train / 255.0).astype(dtype)
    images = read_idx(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz")
    X_test = (images.reshape(images.shape[0], -1) / 255.0).astype(dtype)
    y_test = read_idx(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return X, train.y_train, X_test, y_test


Curve = list[tuple[float, float]]


def run_deltaflow(net: Network, s: Setup, X: Any, y: Any, Xt: Any, yt: Any, seed: int) -> Curve:
    """(cumulative training seconds, test accuracy) after each epoch."""
    curve: Curve = []
    spent = [0.0]

    def score(rec: Any) -> None:
        spent[0] += rec.seconds  # the epoch's own time, measured by fit
        curve.append((spent[0], float((net.predict(Xt) == yt).mean())))

    net.fit(
        X, y, epochs=s.epochs, batch_size=s.batch, learning_rate=s.learning_rate,
        seed=seed, callbacks=[score],
    )  # fmt: skip
    return curve


def run_torch(start: Network, s: Setup, X: Any, y: Any, Xt: Any, yt: Any, seed: int) -> Curve:
    """The same training in PyTorch eager, replaying fit's order of examples."""
    import torch

    model = torch_model(start)
    opt = torch.optim.SGD(model.parameters(), lr=s.learning_rate)
    Xtr, labels = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    Y = torch.nn.functional.one_hot(labels, s.sizes[-1]).to(Xtr.dtype)
    Xte = torch.from_numpy(Xt)
    rng = np.random.default_rng(seed)  # fit's shuffle: one generator, one order, shuffled
    order = np.arange(X.shape[0])
    curve: Curve = []
    spent = 0.0
    for _ in range(s.epochs):
        t0 = time.perf_counter()
        rng.shuffle(order)
        perm = torch.from_numpy(order)
        for start_row in range(0, X.shape[0], s.batch):
            idx = perm[start_row : start_row + s.batch]
            out = model(Xtr[idx])
            if s.cost == "cross_entropy":
                loss = torch.nn.functional.cross_entropy(out, labels[idx])
            else:
                loss = ((out - Y[idx]) ** 2).sum(dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        spent += time.perf_counter() - t0
        with torch.no_grad():
            accuracy = float((model(Xte).argmax(dim=1).numpy() == yt).mean())
        curve.append((spent, accuracy))
    return curve


def time_to(curve: Curve, target: float) -> float | None:
    return next((t for t, acc in curve if acc >= target), None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", action="append", choices=list(SETUPS), help="default: both")
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--target", type=float, help="test accuracy to reach (default per network)")
    p.add_argument("--epochs", type=int, help="epochs (default per network)")
    p.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("time_to_accuracy"), help="file stem")
    args = p.parse_args(argv)
    if not (args.data_dir / "mnist-5k" / "mnist_5k.csv.gz").is_file():
        print(f"no MNIST files under {args.data_dir}; pass --data-dir", file=sys.stderr)
        return 2
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    X, y, Xt, yt = load(args.data_dir, args.dtype)
    results = []
    with threadpool_limits(args.threads, user_api="blas"):
        for name in args.arch or list(SETUPS):
            s = SETUPS[name]
            if args.target is not None or args.epochs is not None:
                s = Setup(**{**s.__dict__, "target": args.target or s.target,
                             "epochs": args.epochs or s.epochs})  # fmt: skip
            start = Network(list(s.sizes), s.activation, s.cost, dtype=args.dtype, seed=args.seed)
            torch_curve = run_torch(start, s, X, y, Xt, yt, args.seed)
            ours = run_deltaflow(start.copy(), s, X, y, Xt, yt, args.seed)
            result = {
                "setup": s.__dict__,
                "deltaflow": ours,
                "torch": torch_curve,
                "seconds_to_target": {
                    "deltaflow": time_to(ours, s.target),
                    "torch": time_to(torch_curve, s.target),
                },
            }
            results.append(result)
            print(report(s, result))
    machine = machine_info()
    machine["blas"] = blas_libraries()
    out = {"machine": machine, "threads": args.threads, "dtype": args.dtype, "runs": results}
    json_path = args.out.with_suffix(".json")
    json_path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {json_path}")
    figure = plot(results, args.out.with_suffix(".png"), machine, args.threads)
    if figure:
        print(f"wrote {figure}")
    return 0


def report(s: Setup, result: dict[str, Any]) -> str:
    lines = [
        f"{s.name} {s.activation} {s.cost}, batch {s.batch}, learning rate {s.learning_rate}, "
        f"target test accuracy {s.target:.0%}",
        "epoch | deltaflow s | acc    | torch s | acc",
    ]
    for e, ((td, ad), (tt, at)) in enumerate(zip(result["deltaflow"], result["torch"]), 1):
        lines.append(f"{e:5d} | {td:11.2f} | {ad:.4f} | {tt:7.2f} | {at:.4f}")
    d, t = result["seconds_to_target"]["deltaflow"], result["seconds_to_target"]["torch"]
    if d is not None and t is not None:
        lines.append(f"to {s.target:.0%}: deltaflow {d:.2f} s, torch {t:.2f} s ({t / d:.1f}x)")
    else:
        lines.append(f"target {s.target:.0%} not reached by both (deltaflow {d}, torch {t})")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path, machine: dict[str, Any], threads: int) -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, result in zip(axes[0], results):
        s = result["setup"]
        for who, style in (("deltaflow", "-o"), ("torch", "--s")):
            t, acc = zip(*result[who])
            ax.plot(t, acc, style, ms=3, label=who)
        ax.axhline(s["target"], color="grey", lw=0.8)
        ax.set_xlabel("training seconds (scoring not counted)")
        ax.set_ylabel("test accuracy (10,000 MNIST test images)")
        ax.set_title(f"{s['name']} {s['activation']}, batch {s['batch']}, SGD {s['learning_rate']}")
        ax.set_ylim(max(0.5, min(a for _, a in result["torch"]) - 0.02), 1.0)
        ax.legend(loc="lower right")
    fig.suptitle(f"{machine['cpu']}, {threads} thread(s); 5,000 training images", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
