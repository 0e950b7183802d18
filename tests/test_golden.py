"""Golden weights: ``fit`` gives the same bits as the recorded runs, case by case.

Each case trains a small network for a few epochs and digests every parameter's bytes
(dtype, shape and values) with the history's numbers (costs, accuracies, rates, best
epoch, delta norms; not the seconds) into one sha256. The digests were recorded once in
``tests/data/golden.json``; a change to the training loop that moves one bit of one
weight fails here.

Floating-point results depend on the BLAS and on numpy's vectorised math, so the file
also records a fingerprint of those primitives on the machine that wrote it; where they
round differently the cases are skipped with a message, not failed. To record the digests
again (only after a change meant to alter results)::

    PYTHONPATH=src python3 tests/test_golden.py

The tests at the end need no recorded file: they compare ``fit`` with a loop written out
here through the engine's public functions, in the same process, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.linalg.blas as sblas

from deltaflow import Network, fit
from deltaflow.engine import backprop
from deltaflow.training.optimizers import get_optimizer

GOLDEN = Path(__file__).with_name("data") / "golden.json"

ARCH = ([6, 8, 5, 3], "tanh", "cross_entropy")


def make_data(m: int = 103, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``m`` rows of 6 features, 3 classes and positive sample weights."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 6))
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 - X[:, 2] > 0.3).astype(np.int64) + (X[:, 3] > 1)
    w = rng.uniform(0.2, 2.0, size=m)
    return X, y, w


def regression_data(m: int = 90) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    X = rng.standard_normal((m, 6))
    Y = np.stack([np.sin(X[:, 0]) + X[:, 1], X[:, 2] * X[:, 3]], axis=1)
    return X, Y


def halving(epoch: int) -> float:
    return 0.2 / (1 + epoch)


# name -> (Network arguments, fit arguments); the data are make_data()'s unless named
OPTS = {
    "sgd": dict(optimizer="sgd", learning_rate=0.3),
    "momentum": dict(optimizer="momentum", learning_rate=0.05),
    "nesterov": dict(optimizer="nesterov", learning_rate=0.05, momentum=0.8),
    "adam": dict(optimizer="adam", learning_rate=0.01),
}
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
for _opt, _kw in OPTS.items():
    for _dt in ("float32", "float64"):
        CASES[f"{_opt}-{_dt}"] = (dict(dtype=_dt, seed=1), dict(_kw))
        CASES[f"{_opt}-{_dt}-validation"] = (
            dict(dtype=_dt, seed=2),
            dict(_kw, validation_split=0.25),
        )
        CASES[f"{_opt}-{_dt}-sample-weight"] = (dict(dtype=_dt, seed=3), dict(_kw, weighted=True))
        CASES[f"{_opt}-{_dt}-weight-decay"] = (
            dict(dtype=_dt, seed=4),
            dict(_kw, weight_decay=1e-2),
        )
        CASES[f"{_opt}-{_dt}-delta-norms"] = (
            dict(dtype=_dt, seed=5),
            dict(_kw, track_delta_norms=True),
        )
    CASES[f"{_opt}-checkpoint"] = (
        dict(dtype="float64", seed=6),
        dict(_kw, epochs=4, validation_split=0.2, checkpoint_every=2, checkpoints=True),
    )
CASES.update(
    {
        "sgd-step-schedule": (
            dict(seed=8),
            dict(learning_rate=0.5, schedule="step", step_size=1, gamma=0.5),
        ),
        "adam-exponential-schedule": (
            dict(seed=8, dtype="float32"),
            dict(optimizer="adam", learning_rate=0.02, schedule="exponential", gamma=0.7),
        ),
        "momentum-cosine-schedule": (
            dict(seed=8),
            dict(optimizer="momentum", learning_rate=0.1, schedule="cosine"),
        ),
        "sgd-callable-schedule": (dict(seed=8), dict(schedule=halving)),
        "sgd-no-shuffle": (dict(seed=9), dict(learning_rate=0.3, shuffle=False)),
        "sgd-batch-1": (dict(seed=9, dtype="float32"), dict(learning_rate=0.05, batch_size=1)),
        "adam-batch-1": (dict(seed=9), dict(optimizer="adam", learning_rate=0.01, batch_size=1)),
        "sgd-batch-over-m": (dict(seed=9), dict(learning_rate=0.5, batch_size=500, epochs=5)),
        "sgd-fit-seed": (dict(seed=10), dict(learning_rate=0.3, seed=123)),
        "sgd-validation-data": (
            dict(seed=10),
            dict(learning_rate=0.3, validation_data=True, track_delta_norms=True),
        ),
        "sgd-early-stopping": (
            dict(seed=12),
            dict(
                learning_rate=2.0, epochs=12, validation_split=0.3, early_stopping=True, patience=2
            ),
        ),
        "adam-early-stopping-min-delta": (
            dict(seed=12, dtype="float32"),
            dict(
                optimizer="adam",
                learning_rate=0.05,
                epochs=10,
                validation_split=0.3,
                early_stopping=True,
                patience=2,
                min_delta=1e-3,
            ),
        ),
        "relu-regression-sgd": (
            dict(sizes=[6, 10, 2], activation="relu", cost="squared_error", seed=13),
            dict(learning_rate=0.02, regression=True),
        ),
        "relu-regression-adam-float32": (
            dict(
                sizes=[6, 10, 2], activation="relu", cost="squared_error", seed=13, dtype="float32"
            ),
            dict(optimizer="adam", learning_rate=0.01, regression=True, weight_decay=1e-3),
        ),
        "binary-sigmoid": (
            dict(sizes=[6, 4, 1], activation="sigmoid", cost="binary_cross_entropy", seed=14),
            dict(learning_rate=0.5, binary=True, validation_split=0.2),
        ),
        "mixed-activations-squared-error": (
            dict(sizes=[6, 7, 5, 3], activation=["leaky_relu", "sigmoid", "softmax"], seed=15),
            dict(optimizer="nesterov", learning_rate=0.1),
        ),
    }
)


def run_case(name: str, tmp: Path) -> str:
    """Train case ``name`` (checkpoints, if any, under ``tmp``) and return its digest."""
    net_kw, fit_kw = CASES[name]
    net_kw, fit_kw = dict(net_kw), dict(fit_kw)
    sizes = net_kw.pop("sizes", ARCH[0])
    activation = net_kw.pop("activation", ARCH[1])
    cost = net_kw.pop("cost", ARCH[2])
    net = Network(sizes, activation, cost, **net_kw)
    X, y, w = make_data()
    Y: Any = y
    if fit_kw.pop("regression", False):
        X, Y = regression_data()
    if fit_kw.pop("binary", False):
        Y = (y > 0).astype(np.int64)
    if fit_kw.pop("weighted", False):
        fit_kw["sample_weight"] = w
    if fit_kw.pop("validation_data", False):
        Xv, yv, _ = make_data(40, seed=99)
        fit_kw["validation_data"] = (Xv, yv)
    checkpoints = fit_kw.pop("checkpoints", False)
    fit_kw.setdefault("epochs", 3)
    fit_kw.setdefault("batch_size", 16)
    if not checkpoints:
        return digest(net, fit(net, X, Y, **fit_kw).as_dict())

    # an uninterrupted run with checkpoints, and a run interrupted and resumed
    hist = fit(net, X, Y, checkpoint_dir=tmp / "whole", **fit_kw)
    whole = digest(net, hist.as_dict())
    again = Network(sizes, activation, cost, **net_kw)
    with pytest.raises(Interrupt):
        fit(again, X, Y, checkpoint_dir=tmp / "parts", callbacks=[crash_after(3)], **fit_kw)
    again = Network(sizes, activation, cost, **net_kw)
    hist = fit(again, X, Y, checkpoint_dir=tmp / "parts", resume=True, **fit_kw)
    assert digest(again, hist.as_dict()) == whole
    return whole


class Interrupt(Exception):
    """Stands in for a crash after an epoch's callbacks."""


def crash_after(epoch: int) -> Any:
    def callback(rec: Any) -> None:
        if rec.epoch == epoch:
            raise Interrupt

    return callback


def digest(net: Network, history: dict[str, Any]) -> str:
    """sha256 of every parameter (dtype, shape, bytes) and the history without its times."""
    h = hashlib.sha256()
    for p in list(net.weights) + list(net.biases):
        h.update(f"{p.dtype.str}{p.shape}".encode())
        h.update(np.ascontiguousarray(p).tobytes())
    numbers = {k: v for k, v in history.items() if k != "seconds"}
    h.update(json.dumps(numbers, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def environment() -> str:
    """A digest of how this machine rounds the primitives the engine is built of.

    Matrix products of the shapes the cases use (numpy's and scipy's BLAS, both
    dtypes, plain and transposed, one row and many) and numpy's vectorised functions.
    """
    rng = np.random.default_rng(0)
    h = hashlib.sha256()
    for dtype in (np.float32, np.float64):
        gemm = sblas.sgemm if dtype == np.float32 else sblas.dgemm
        for m in (1, 7, 16, 31):
            for k, n in ((6, 8), (8, 5), (5, 3), (6, 10), (10, 2)):
                A = rng.standard_normal((m, k)).astype(dtype)
                B = rng.standard_normal((k, n)).astype(dtype)
                D = rng.standard_normal((m, n)).astype(dtype)
                for r in (A @ B, D @ B.T, A.T @ D, gemm(-0.3, A, B, 1.0, D.copy(order="F"))):
                    h.update(np.ascontiguousarray(r).tobytes())
                h.update(gemm(0.7, A, D, trans_a=1).tobytes())
        v = rng.uniform(-4, 4, size=257).astype(dtype)
        for f in (np.exp, np.tanh, np.expm1, np.log1p, np.sqrt, np.abs):
            h.update(f(np.abs(v) if f in (np.sqrt, np.log1p) else v).tobytes())
        h.update(np.log(np.abs(v) + dtype(1e-3)).tobytes())
        h.update((v / dtype(3.3)).tobytes())
    return h.hexdigest()


def recorded() -> dict[str, Any]:
    if not GOLDEN.exists():
        pytest.skip(f"{GOLDEN.name} is missing; record it with: python3 {__file__}")
    data = json.loads(GOLDEN.read_text())
    if data["environment"] != environment():
        pytest.skip(
            "this machine's BLAS or vectorised math rounds differently from the one that "
            "recorded the golden digests; they can only be compared where it rounds the same"
        )
    return data["cases"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_fit_gives_the_recorded_weights(name: str, tmp_path: Path) -> None:
    expected = recorded()
    assert name in expected, f"case {name} has no recorded digest; record it again"
    assert run_case(name, tmp_path) == expected[name]


def test_every_recorded_case_is_still_run() -> None:
    assert sorted(recorded()) == sorted(CASES)


# ----------------------------------------------------------------------- written out
def params(net: Network) -> list[np.ndarray]:
    return list(net.weights) + list(net.biases)


def same_bits(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(a, b)
    )


def reference_fit(
    net: Network,
    X: np.ndarray,
    y: np.ndarray,
    *,
    optimizer: str,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    order_rule: str = "shuffle each epoch",
    last_batch: bool = True,
) -> int:
    """Mini-batch training written out with the engine's functions; returns the steps.

    ``order_rule`` is today's rule (``rng.shuffle(order)`` at the start of each epoch,
    so each epoch permutes the last), ``"one order"`` (one permutation for every epoch)
    or ``"no shuffle"``. ``last_batch=False`` drops the short last batch of an epoch.
    """
    Xc = net.check_X(X)
    Yenc, _ = net.encode_targets(y, Xc.shape[0])
    m = Xc.shape[0]
    rng = np.random.default_rng(seed)
    opt = get_optimizer(optimizer)
    ws = backprop.Workspace(net, batch_size)
    grads = ws.dtheta + ws.db
    order = np.arange(m)
    if order_rule == "one order":
        rng.shuffle(order)
    steps = 0
    for _ in range(epochs):
        if order_rule == "shuffle each epoch":
            rng.shuffle(order)
        for start in range(0, m, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < batch_size and not last_batch:
                continue
            view = ws.rows(len(idx))
            backprop.forward(net, view, Xc[idx])
            if optimizer == "sgd":
                backprop.backward(net, view, Yenc[idx], sgd_rate=lr)
            else:
                backprop.backward(net, view, Yenc[idx])
                opt.step(params(net), grads, lr)
            steps += 1
    return steps


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_short_last_batch_of_every_epoch_is_trained_on(optimizer: str) -> None:
    X, y, _ = make_data(103)  # 103 = 6 * 16 + 7: six full batches and one of 7 rows
    kw = dict(optimizer=optimizer, lr=0.1 if optimizer == "sgd" else 0.01, epochs=3, seed=4)
    net = Network(*ARCH, seed=3)
    opt = get_optimizer(optimizer)
    fit(net, X, y, optimizer=opt, learning_rate=kw["lr"], epochs=3, batch_size=16, seed=4)
    assert opt.t == 3 * 7

    ref = Network(*ARCH, seed=3)
    assert reference_fit(ref, X, y, batch_size=16, **kw) == 21
    assert same_bits(params(net), params(ref))

    dropped = Network(*ARCH, seed=3)
    assert reference_fit(dropped, X, y, batch_size=16, last_batch=False, **kw) == 18
    assert not np.array_equal(dropped.weights[0], net.weights[0])


def test_the_order_of_the_examples_changes_every_epoch() -> None:
    X, y, _ = make_data(64)
    net = Network(*ARCH, seed=3)
    fit(net, X, y, learning_rate=0.2, epochs=3, batch_size=8, seed=21)
    rules = {}
    for rule in ("shuffle each epoch", "one order", "no shuffle"):
        ref = Network(*ARCH, seed=3)
        reference_fit(
            ref, X, y, optimizer="sgd", lr=0.2, epochs=3, batch_size=8, seed=21, order_rule=rule
        )
        rules[rule] = same_bits(params(net), params(ref))
    assert rules == {"shuffle each epoch": True, "one order": False, "no shuffle": False}

    unshuffled = Network(*ARCH, seed=3)
    fit(unshuffled, X, y, learning_rate=0.2, epochs=3, batch_size=8, seed=21, shuffle=False)
    ref = Network(*ARCH, seed=3)
    reference_fit(
        ref, X, y, optimizer="sgd", lr=0.2, epochs=3, batch_size=8, seed=21, order_rule="no shuffle"
    )
    assert same_bits(params(unshuffled), params(ref))


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_early_stopping_leaves_the_best_epochs_parameters(optimizer: str) -> None:
    X, y, _ = make_data(200)
    after_epoch: list[list[np.ndarray]] = []

    def keep(rec: Any) -> None:
        after_epoch.append([p.copy() for p in params(net)])

    net = Network(*ARCH, seed=12)
    lr = 2.0 if optimizer == "sgd" else 0.5
    hist = fit(
        net,
        X,
        y,
        optimizer=optimizer,
        learning_rate=lr,
        epochs=30,
        batch_size=16,
        validation_split=0.3,
        early_stopping=True,
        patience=2,
        callbacks=[keep],
        seed=0,
    )
    assert hist.stopped_early and hist.best_epoch is not None
    assert len(hist) == hist.best_epoch + 2  # two epochs without improvement
    best = hist.best_epoch - 1
    assert hist.val_cost[best] == min(c for c in hist.val_cost if c is not None)
    assert same_bits(params(net), after_epoch[best])
    assert not same_bits(params(net), after_epoch[-1])


def record() -> None:
    """Write ``tests/data/golden.json`` from this checkout's ``fit``."""
    import tempfile

    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(CASES):
            where = Path(tmp) / name
            where.mkdir()
            cases[name] = run_case(name, where)
    GOLDEN.parent.mkdir(exist_ok=True)
    text = json.dumps({"environment": environment(), "cases": cases}, indent=1, sort_keys=True)
    GOLDEN.write_text(text + "\n")
    print(f"wrote {len(cases)} digests to {GOLDEN}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(f"usage: python3 {sys.argv[0]}  (records {GOLDEN})")
    record()
