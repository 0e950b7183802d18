"""Data-parallel training over MPI: ranks started by ``mpiexec`` against one process.

Each test runs ``tests/mpi_worker.py`` (or the CLI) under ``mpiexec`` in a subprocess
with a timeout, over shared memory and over TCP on the loopback interface, and compares
what the ranks wrote with a one-process ``fit`` run here. Skipped where mpi4py or
``mpiexec`` is absent.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deltaflow import ConfigError, DataError, DivergenceError, fit, load
from deltaflow.cli import main
from deltaflow.parallel import as_communicator, launched_size, rank_rows, world
from deltaflow.training import checkpoint

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
import mpi_worker  # noqa: E402

# over shared memory (Open MPI's default on one machine) and over TCP on the loopback
TRANSPORTS = {"shm": [], "tcp": ["--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo"]}


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


@functools.lru_cache
def _is_open_mpi(mpiexec: str) -> bool:
    out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
    return "Open MPI" in out.stdout + out.stderr or "OpenRTE" in out.stdout + out.stderr


@pytest.fixture(scope="module")
def mpiexec() -> str:
    pytest.importorskip("mpi4py")
    path = _mpiexec()
    if path is None:
        pytest.skip("mpiexec is not on the PATH (pip install 'deltaflow[mpi]')")
    return path


def run_ranks(
    mpiexec: str,
    n: int,
    args: list[str],
    *,
    transport: str = "shm",
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``mpiexec -n n python args...`` with ``src`` on the path; returns the finished run."""
    cmd = [mpiexec, "-n", str(n)]
    if _is_open_mpi(mpiexec):
        cmd += ["--oversubscribe", *TRANSPORTS[transport]]
    cmd += [sys.executable, *args]
    full_env = dict(os.environ)
    full_env.update(
        {
            "PYTHONPATH": str(SRC),
            "OMPI_ALLOW_RUN_AS_ROOT": "1",
            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
    )
    full_env.update(env or {})
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=HERE.parent
    )


def run_worker(mpiexec: str, n: int, specs: list[dict], out: Path, **kw) -> list[list[dict]]:
    """For each spec, each rank's parameters and history (or its error message)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "specs.json").write_text(json.dumps(specs))
    proc = run_ranks(
        mpiexec, n, [str(HERE / "mpi_worker.py"), str(out / "specs.json"), str(out)], **kw
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [[_result(out / f"{i}-rank{r}") for r in range(n)] for i in range(len(specs))]


def _result(stem: Path) -> dict:
    """A rank's parameters and history, or its error message and parameters after it."""
    err = stem.with_suffix(".err")
    result = {"error": err.read_text()} if err.exists() else {}
    with np.load(stem.with_suffix(".npz")) as f:
        result["params"] = f["params"]
        if "history" in f:
            result["history"] = json.loads(str(f["history"]))
        if "gathered" in f:
            result["gathered"] = f["gathered"]
    return result


def one_process(spec: dict):
    net, X, y, kwargs = mpi_worker.problem(spec)
    X = mpi_worker.mapped(spec, X, kwargs)  # the same memory maps the ranks read
    history = fit(net, X, y, **kwargs)
    return np.concatenate([p.ravel() for p in net.weights + net.biases]), history


def _flat(net) -> np.ndarray:
    return np.concatenate([p.ravel() for p in net.weights + net.biases])


def assert_matches_one_process(results: list[dict], spec: dict) -> None:
    """Every rank bit-identical, and the one-process weights to 1e-12 relative."""
    params0 = results[0]["params"]
    for r in results[1:]:
        np.testing.assert_array_equal(r["params"], params0)
    ref, history = one_process(spec)
    scale = np.abs(ref).max()
    assert np.abs(params0 - ref).max() <= 1e-12 * scale
    h = results[0]["history"]
    np.testing.assert_allclose(h["cost"], history.cost, rtol=1e-12)
    assert h["accuracy"] == history.accuracy
    if history.val_cost[0] is not None:
        np.testing.assert_allclose(h["val_cost"], history.val_cost, rtol=1e-12)
        assert h["val_accuracy"] == history.val_accuracy
    if history.delta_norms:
        np.testing.assert_allclose(h["delta_norms"], history.delta_norms, rtol=1e-12)


def spec_of(**fit_kwargs) -> dict:
    settings = {"epochs": 3, "batch_size": 32, "learning_rate": 0.1, "seed": 1}
    settings.update(fit_kwargs)
    return {"m": 203, "sizes": [6, 8, 5, 3], "seed": 3, "fit": settings}


# ------------------------------------------------------------- without a launcher
def test_launched_size_reads_the_launchers_variables():
    assert launched_size({}) is None
    assert launched_size({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "2"}) == 4
    assert launched_size({"PMI_SIZE": "3", "PMI_RANK": "0"}) == 3
    assert launched_size({"PMIX_RANK": "1"}) == 0  # launched, size left to MPI


@pytest.mark.parametrize("n,size", [(32, 2), (11, 3), (2, 3), (7, 7), (1000, 6)])
def test_rank_rows_lay_the_batch_end_to_end(n, size):
    blocks = [rank_rows(n, r, size) for r in range(size)]
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    lengths = [hi - lo for lo, hi in blocks]
    assert max(lengths) - min(lengths) <= 1 and sorted(lengths, reverse=True) == lengths


def test_an_ended_process_not_yet_reaped_counts_as_lost():
    from deltaflow.parallel.comm import _alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while _alive(child.pid):  # it runs, then is a zombie until waited for
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert Path(f"/proc/{child.pid}").exists()  # not reaped yet
    assert child.wait() == 0
    assert _alive(os.getpid())


def test_a_comm_that_is_not_an_mpi4py_communicator_is_refused():
    with pytest.raises(ConfigError, match="comm must be an mpi4py intracommunicator"):
        as_communicator(object())
    net, X, y, kwargs = mpi_worker.problem(spec_of())
    with pytest.raises(ConfigError, match="got list"):
        fit(net, X, y, comm=[0, 1], **kwargs)


def test_lbfgs_refuses_a_comm():
    net, X, y, _ = mpi_worker.problem(spec_of())
    with pytest.raises(ConfigError) as info:
        fit(net, X, y, optimizer="lbfgs", comm=[0, 1], epochs=3)
    assert str(info.value) == "comm is not available with optimizer='lbfgs'; leave it out"


def test_mpiexec_without_mpi4py_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails as when not installed
    with pytest.raises(ConfigError, match=r"pip install 'deltaflow\[mpi\]'"):
        world()


# ------------------------------------------------------------------ under mpiexec
SHM_SPECS = {
    # plain SGD: one process applies it inside the backward pass, the ranks after it
    "sgd": spec_of(),
    "adam": dict(
        spec_of(
            optimizer="adam",
            learning_rate=0.01,
            validation_split=0.2,
            weight_decay=0.01,
            track_delta_norms=True,
            schedule="cosine",
        ),
        weights=True,
    ),
    "early": spec_of(
        epochs=40, learning_rate=2.0, validation_split=0.3, early_stopping=True, patience=2
    ),
    # memory-mapped .npy files (written by the fixture), each rank reading its own rows
    "mmap": dict(spec_of(optimizer="nesterov", learning_rate=0.05), record=True),
    "mmap_split": dict(
        spec_of(
            optimizer="adam", learning_rate=0.01, validation_split=0.25, track_delta_norms=True
        ),
        weights=True,
    ),
    "mmap_rows_val": spec_of(
        shuffle="rows", batch_size=30, optimizer="momentum", learning_rate=0.05, epochs=4
    ),
    "mmap_layers": dict(spec_of(optimizer="adam", learning_rate=0.01), per_layer=True),
    "mmap_nan": {"m": 20000, "sizes": [64, 8, 3], "seed": 3, "fit": {"epochs": 2, "seed": 1}},
    "mmap_nan_val": spec_of(),
    "mmap_nan_layers": dict(spec_of(epochs=2), per_layer=True),
    "other_data": dict(spec_of(), data_shift_rank=1),
    "intercomm": dict(spec_of(), intercomm=True),
    "per_layer": dict(
        spec_of(optimizer="adam", learning_rate=0.01, validation_split=0.2, weight_decay=0.01),
        weights=True,
        per_layer=True,
    ),
    "vote": dict(spec_of(epochs=5), stop_after=[1, 2]),
    "diverge": dict(
        spec_of(epochs=20, learning_rate=100.0),
        activation=["relu", "relu", "identity"],
        cost="squared_error",
    ),
}


@pytest.fixture(scope="module")
def two_ranks(mpiexec, tmp_path_factory) -> dict[str, list[dict]]:
    """The results of SHM_SPECS, from one launch of two ranks over shared memory."""
    out = tmp_path_factory.mktemp("two_ranks")
    _write_mapped_files(out)
    results = run_worker(mpiexec, 2, list(SHM_SPECS.values()), out)
    return dict(zip(SHM_SPECS, results))


def _write_mapped_files(out: Path) -> None:
    """The .npy files of the memory-mapped specs, and their names in the specs."""
    _, X, _, _ = mpi_worker.problem(SHM_SPECS["mmap"])
    np.save(out / "X.npy", X)
    for name in ("mmap", "mmap_split", "mmap_rows_val", "mmap_layers", "mmap_nan_val"):
        SHM_SPECS[name]["mmap"] = str(out / "X.npy")
    # validation data of its own: float32 inputs, converted a chunk at a time
    _, Xv, yv, _ = mpi_worker.problem(dict(SHM_SPECS["sgd"], m=61, data_seed=5))
    np.save(out / "Xv.npy", Xv.astype(np.float32))
    np.save(out / "yv.npy", yv)
    SHM_SPECS["mmap_rows_val"]["val_mmap"] = [str(out / "Xv.npy"), str(out / "yv.npy")]
    # a NaN in a validation row that only rank 1 evaluates (rank 1 takes rows 31..60)
    assert rank_rows(61, 1, 2) == (31, 61)
    Xv[40, 2] = np.nan
    np.save(out / "Xv_nan.npy", Xv)
    SHM_SPECS["mmap_nan_val"]["val_mmap"] = [str(out / "Xv_nan.npy"), str(out / "yv.npy")]
    # a NaN in a training row that only rank 1 reads, in the epoch's second half: rank
    # 1's rows of batch 600 (its prefetch thread reads 512 batches of its rows at a time,
    # so both ranks have made 512 updates when rank 1 meets it)
    _write_nan_file(out / "X_nan.npy", SHM_SPECS["mmap_nan"], batch=600)
    # and in the small file, with each layer's gradient summed as soon as it is known
    _write_nan_file(out / "X_nan_small.npy", SHM_SPECS["mmap_nan_layers"], batch=3)


def _write_nan_file(path: Path, spec: dict, batch: int) -> None:
    """The spec's inputs with a NaN in a row of rank 1's block of ``batch`` (of 32 rows)
    in the first epoch, as one process orders the rows of the file; the row in the spec."""
    _, X, _, _ = mpi_worker.problem(spec)
    np.save(path, X)
    spec["mmap"] = str(path)
    once = dict(spec, fit=dict(spec["fit"], epochs=1))
    with mpi_worker.recorded_gathers() as gathered:
        one_process(once)
    order = np.concatenate(gathered)  # the rows of the first epoch, in its order
    lo, _ = rank_rows(32, 1, 2)
    spec["nan_row"] = row = int(order[batch * 32 + lo + 3])
    X[row, 5] = np.nan
    np.save(path, X)


@pytest.mark.parametrize(
    "name",
    ["sgd", "adam", "early", "mmap", "mmap_split", "mmap_rows_val", "mmap_layers", "per_layer"],
)
def test_two_ranks_give_the_weights_of_one_process(two_ranks, name):
    assert_matches_one_process(two_ranks[name], SHM_SPECS[name])


def test_each_rank_reads_only_its_own_rows_of_a_memory_map(two_ranks):
    spec = SHM_SPECS["mmap"]
    with mpi_worker.recorded_gathers() as gathered:
        one_process(spec)
    m, bs, epochs = spec["m"], spec["fit"]["batch_size"], spec["fit"]["epochs"]
    order = np.concatenate(gathered).reshape(epochs, m)  # each epoch's rows, in order
    ranks = [r["gathered"] for r in two_ranks["mmap"]]
    assert sum(len(g) for g in ranks) == epochs * m  # every row once an epoch, no more
    for rank, rows in enumerate(ranks):
        # the rank's block of every batch: rank_rows of the batch, in the batch's order
        blocks = [
            o[start + lo : start + hi]
            for o in order
            for start in range(0, m, bs)
            for lo, hi in [rank_rows(len(o[start : start + bs]), rank, 2)]
        ]
        np.testing.assert_array_equal(rows, np.concatenate(blocks))
        assert 0 < len(rows) < epochs * m  # a share, not all


@pytest.mark.parametrize("name", ["mmap_nan", "mmap_nan_layers"])
def test_a_nan_in_one_ranks_rows_stops_every_rank_with_the_row(two_ranks, name):
    spec = SHM_SPECS[name]
    net, X, y, kwargs = mpi_worker.problem(spec)
    start = net.params.copy()
    with pytest.raises(DataError) as one:
        fit(net, np.load(spec["mmap"], mmap_mode="r"), y, **kwargs)
    assert f"first at row {spec['nan_row']}, column 5" in str(one.value)
    np.testing.assert_array_equal(net.params, start)  # the epoch's start put back
    # both ranks (for mmap_nan after 512 updates) met the NaN in one all-reduce and put
    # back the start
    for r in two_ranks[name]:
        assert r["error"] == f"DataError: {one.value}"
        np.testing.assert_array_equal(r["params"], _flat(net))


def test_a_nan_in_one_ranks_validation_rows_stops_every_rank(two_ranks):
    spec = SHM_SPECS["mmap_nan_val"]
    net, X, y, kwargs = mpi_worker.problem(spec)
    X = mpi_worker.mapped(spec, X, kwargs)
    with pytest.raises(DataError) as one:
        fit(net, X, y, **kwargs)
    assert "X_val contains NaN or infinite values (first at row 40, column 2)" in str(one.value)
    for r in two_ranks["mmap_nan_val"]:
        assert r["error"] == f"DataError: {one.value}"
        np.testing.assert_array_equal(r["params"], _flat(net))


def test_over_tcp_on_the_loopback(mpiexec, tmp_path):
    specs = [SHM_SPECS["sgd"], SHM_SPECS["per_layer"]]
    for results, spec in zip(run_worker(mpiexec, 2, specs, tmp_path, transport="tcp"), specs):
        assert_matches_one_process(results, spec)


def test_early_stopping_is_decided_the_same_on_every_rank(two_ranks):
    histories = [r["history"] for r in two_ranks["early"]]
    assert histories[0]["stopped_early"] is True
    assert histories[0]["best_epoch"] == histories[1]["best_epoch"]
    assert histories[0]["val_cost"] == histories[1]["val_cost"]


def test_a_callback_that_stops_one_rank_stops_them_all(two_ranks):
    results = two_ranks["vote"]
    for r in results:
        assert r["history"]["epoch"] == [1, 2]
        assert r["history"]["stopped_early"] is True
    np.testing.assert_array_equal(results[0]["params"], results[1]["params"])


def test_divergence_is_decided_the_same_on_every_rank(two_ranks):
    net, X, y, kwargs = mpi_worker.problem(SHM_SPECS["diverge"])
    with np.errstate(all="ignore"), pytest.raises(DivergenceError) as one:
        fit(net, X, y, **kwargs)
    for r in two_ranks["diverge"]:
        assert r["error"] == f"DivergenceError: {one.value}"


def test_ranks_with_different_data_stop_with_a_message(two_ranks):
    for r in two_ranks["other_data"]:
        assert r["error"] == (
            "ConfigError: the ranks hold different training data: rank 1 differs from "
            "rank 0; give every rank the same X, Y and sample weights"
        )


def test_an_intercommunicator_is_refused(two_ranks):
    for r in two_ranks["intercomm"]:
        assert r["error"].startswith("ConfigError: comm must be an intracommunicator")


def test_three_ranks_when_the_last_batch_leaves_one_without_rows(mpiexec, tmp_path):
    # 202 rows in batches of 4: the last batch has 2 rows, so rank 2 has none
    short = dict(spec_of(batch_size=4, optimizer="momentum", learning_rate=0.05, epochs=2))
    short["m"] = 202
    layered = dict(short, per_layer=True)
    specs = [short, spec_of(batch_size=2), layered]
    results, small, by_layer = run_worker(mpiexec, 3, specs, tmp_path)
    assert_matches_one_process(results, short)
    assert_matches_one_process(by_layer, short)
    for r in small:
        assert r["error"] == (
            "ConfigError: batch_size=2 is smaller than the 3 ranks, and every rank needs "
            "rows of each batch; use batch_size >= 3 (and as many training rows) or fewer ranks"
        )


def test_resume_under_the_same_and_another_number_of_ranks(mpiexec, tmp_path):
    # in memory and from a memory-mapped file (with a validation split), side by side in
    # the same launches
    base = spec_of(epochs=4, optimizer="adam", learning_rate=0.01)
    _, X, _, _ = mpi_worker.problem(base)
    np.save(tmp_path / "X.npy", X)
    mapped = dict(base, mmap=str(tmp_path / "X.npy"), weights=True)
    mapped["fit"] = dict(base["fit"], validation_split=0.2)
    specs = {"memory": base, "mapped": mapped}
    runs = {}
    for name, spec in specs.items():
        ckpt = tmp_path / f"ckpt-{name}"
        broken = dict(spec, crash_after=2)
        broken["fit"] = dict(spec["fit"], checkpoint_dir=str(ckpt))
        resumed = dict(spec)
        resumed["fit"] = dict(spec["fit"], checkpoint_dir=str(ckpt), resume=True)
        runs[name] = (ckpt, broken, resumed)
    first = run_worker(
        mpiexec, 2, [s for name in specs for s in (specs[name], runs[name][1])], tmp_path / "1"
    )
    for i, name in enumerate(specs):
        whole, crashed = first[2 * i], first[2 * i + 1]
        for r in crashed:
            assert r["error"] == "RuntimeError: interrupted after epoch 2"
        ckpt, _, resumed = runs[name]
        # the epoch-1 checkpoint, kept for resuming under another number of ranks
        shutil.copytree(ckpt, tmp_path / f"epoch1-{name}")
        runs[name] = (ckpt, whole[0], resumed)
    same = run_worker(mpiexec, 2, [runs[name][2] for name in specs], tmp_path / "same")
    for (ckpt, whole, _), results in zip(runs.values(), same):
        for r in results:
            np.testing.assert_array_equal(r["params"], whole["params"])
            assert r["history"]["cost"] == whole["history"]["cost"]
        shutil.rmtree(ckpt)
        shutil.copytree(ckpt.parent / ckpt.name.replace("ckpt", "epoch1"), ckpt)
    three = run_worker(mpiexec, 3, [runs[name][2] for name in specs], tmp_path / "three")
    for (ckpt, whole, resumed), results in zip(runs.values(), three):
        shutil.rmtree(ckpt)
        shutil.copytree(ckpt.parent / ckpt.name.replace("ckpt", "epoch1"), ckpt)
        one, _ = one_process(resumed)
        reference = whole["params"]
        for params in [r["params"] for r in results] + [one]:
            assert np.abs(params - reference).max() <= 1e-12 * np.abs(reference).max()


LOST_LINE = "deltaflow: rank 1 was lost (the process ended); the launcher stopped the other"


def run_fault(mpiexec: str, spec: dict, out: Path, env: dict | None = None):
    (out / "specs.json").write_text(json.dumps([spec]))
    t0 = time.monotonic()
    proc = run_ranks(
        mpiexec, 2, [str(HERE / "mpi_worker.py"), str(out / "specs.json"), str(out)], env=env
    )
    return proc, time.monotonic() - t0


def test_a_killed_rank_stops_the_others(mpiexec, tmp_path):
    spec = dict(spec_of(epochs=500, batch_size=8), kill_after=[1, 2])
    proc, seconds = run_fault(mpiexec, spec, tmp_path)
    assert seconds < 30
    assert proc.returncode != 0
    assert "rank 1" in proc.stdout + proc.stderr
    if _is_open_mpi(mpiexec):  # its launcher ends the others with SIGTERM
        assert LOST_LINE in proc.stderr
    assert not (tmp_path / "0.rank0.npz").exists()


def test_a_rank_that_hangs_is_given_up_after_the_timeout(mpiexec, tmp_path):
    spec = dict(spec_of(epochs=500, batch_size=8), hang_after=[1, 2])
    proc, seconds = run_fault(mpiexec, spec, tmp_path, env={"DELTAFLOW_MPI_TIMEOUT": "2"})
    assert seconds < 30
    assert proc.returncode != 0
    assert "deltaflow: rank 0 waited 2 s in a vote for ranks that did not answer" in proc.stderr


# ------------------------------------------------------------------------ the CLI
CLI_ARGS = ["train", "--dtype", "float64", "--batch-size", "32", "--optimizer", "adam"]
CLI_ARGS += ["--layers", "64,16,10", "--activation", "tanh,softmax", "--cost", "cross_entropy"]
CLI_ARGS += ["--quiet", "--checkpoint-every", "1"]


def run_cli(mpiexec: str, n: int, args: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return run_ranks(mpiexec, n, ["-m", "deltaflow", *args], **kw)


def flat_params(path: Path) -> np.ndarray:
    net = load(path)
    return np.concatenate([p.ravel() for p in net.weights + net.biases])


def drop_newest_checkpoint(directory: Path) -> None:
    """Leave the directory as a run stopped before its last checkpoint would."""
    newest = sorted(directory.glob("checkpoint-*"))[-1]
    newest.unlink()


def test_cli_trains_data_parallel_and_resumes(mpiexec, tmp_path):
    first = tmp_path / "first"
    proc = run_cli(
        mpiexec,
        2,
        [
            *CLI_ARGS,
            "--epochs",
            "4",
            "--checkpoint-dir",
            str(first),
            "--save",
            str(tmp_path / "a.st"),
        ],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("saved model to") == 1  # rank 0 alone prints and saves
    assert "data-parallel over 2 MPI ranks" not in proc.stderr  # --quiet
    two = flat_params(tmp_path / "a.st")
    # one process, the same run
    assert main([*CLI_ARGS, "--epochs", "4", "--save", str(tmp_path / "one.st")]) == 0
    one = flat_params(tmp_path / "one.st")
    assert np.abs(two - one).max() <= 1e-12 * np.abs(one).max()

    # resumed from epoch 3 under the same number of ranks: bit-identical
    for name in ("same", "single"):
        shutil.copytree(first, tmp_path / name)
        drop_newest_checkpoint(tmp_path / name)
    save = ["--save", str(tmp_path / "same.st")]
    proc = run_cli(mpiexec, 2, ["train", "--resume", str(tmp_path / "same"), *save])
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_array_equal(flat_params(tmp_path / "same.st"), two)
    # and in one process: the same to 1e-12
    assert (
        main(["train", "--resume", str(tmp_path / "single"), "--save", str(tmp_path / "s.st")]) == 0
    )
    single = flat_params(tmp_path / "s.st")
    assert np.abs(single - two).max() <= 1e-12 * np.abs(two).max()


def test_cli_trains_data_parallel_on_a_directory_of_npy_shards(mpiexec, tmp_path):
    # two shards, read in place: in the order one process draws for memory-mapped data
    # ("blocks", not the "rows" of data in memory), each rank reading its own rows
    rng = np.random.default_rng(4)
    data = tmp_path / "data"
    data.mkdir()
    for k, m in enumerate((130, 110)):
        X = rng.standard_normal((m, 6))
        np.save(data / f"X-{k:05d}.npy", X)
        np.save(data / f"y-{k:05d}.npy", (X[:, :3].argmax(axis=1) + (X[:, 5] > 1)) % 3)
    args = ["train", "--data", str(data), "--layers", "6,8,3", "--activation", "tanh,softmax"]
    args += ["--optimizer", "adam", "--lr", "0.01", "--batch-size", "16", "--epochs", "3"]
    args += ["--validation-split", "0.2", "--quiet"]
    proc = run_cli(mpiexec, 2, [*args, "--save", str(tmp_path / "two.st")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main([*args, "--save", str(tmp_path / "one.st")]) == 0
    one, two = flat_params(tmp_path / "one.st"), flat_params(tmp_path / "two.st")
    assert np.abs(two - one).max() <= 1e-12 * np.abs(one).max()


def test_cli_bad_input_under_mpiexec_is_one_line_from_rank_0(mpiexec):
    proc = run_cli(mpiexec, 2, [*CLI_ARGS, "--epochs", "1", "--batch-size", "1"])
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("deltaflow:")]
    assert lines == [
        "deltaflow: error: batch_size=1 is smaller than the 2 ranks, and every rank needs rows "
        "of each batch; use batch_size >= 2 (and as many training rows) or fewer ranks"
    ]


def _rank_pid(launcher_pid: int, rank: int) -> int | None:
    """The process id of rank ``rank`` among the launcher's descendants, if started."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"OMPI_COMM_WORLD_RANK={rank}".encode() not in environ:
            continue
        pid = int(proc.name)
        while pid > 1:  # its ancestors: is it ours?
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                break
            pid = int(stat.rsplit(")", 1)[1].split()[1])
            if pid == launcher_pid:
                return int(proc.name)
    return None


def test_cli_a_killed_rank_stops_the_run_and_the_checkpoint_resumes(mpiexec, tmp_path):
    if not _is_open_mpi(mpiexec):
        pytest.skip("finding a rank's process id reads Open MPI's environment variables")
    ckdir = tmp_path / "ck"
    args = [*CLI_ARGS, "--epochs", "300", "--checkpoint-dir", str(ckdir)]
    cmd = [mpiexec, "-n", "2", "--oversubscribe", sys.executable, "-m", "deltaflow", *args]
    env = dict(os.environ, PYTHONPATH=str(SRC), OMPI_ALLOW_RUN_AS_ROOT="1")
    env.update(OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not [
            p for p in ckdir.glob("checkpoint-*") if not p.name.startswith("checkpoint-000001")
        ]:
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint came"
            time.sleep(0.05)
        victim = _rank_pid(proc.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 30
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert LOST_LINE in stderr
    ckpt = checkpoint.load_latest(ckdir)
    assert ckpt is not None and 2 <= ckpt.epoch < 300
    # the newest checkpoint resumes (here in one process, a few epochs before the end)
    assert main(["train", "--resume", str(ckdir), "--save", str(tmp_path / "m.st")]) == 0
    assert load(tmp_path / "m.st").sizes == [64, 16, 10]
