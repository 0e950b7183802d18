"""One epoch on a memory-mapped ``.npy`` read from a cold page cache, against the same rows
in memory.

The script writes a ``.npy`` file of ``--gb`` gigabytes of float32 inputs (and its labels)
under ``--dir``, fsyncs it and drops it from the page cache
(``posix_fadvise(POSIX_FADV_DONTNEED)``), then, side by side in one run:

* ``memory``: ``np.load(path)`` once (not timed), then one epoch of ``fit``
  (``shuffle="rows"``);
* ``mapped, blocks``: one epoch of ``fit`` on ``np.load(path, mmap_mode="r")``, with its
  default ``shuffle="blocks"``, the file dropped from the cache before each;
* ``mapped, rows`` (with ``--rows``, first turn only): the same with ``shuffle="rows"``.

The runs take ``--turns`` turns (the table has the median of each), so that a busy
machine's slow moments fall on all of them. Each starts from the same initial weights;
BLAS keeps to ``--threads`` threads (default one, which leaves a core to the prefetch
thread on a small machine). The table gives each epoch's wall-clock time, its speed as a
ratio to the in-memory epoch, and the growth of the process's anonymous memory
(``RssAnon``, sampled every 10 ms) during the epoch over what it was before the files
were opened. The files are deleted at the end::

    python3 benchmarks/out_of_core.py                  # 1.5 GB, 784-128-10, batch 128
    python3 benchmarks/out_of_core.py --gb 0.2 --rows  # a quick look, with the row order
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from deltaflow import Network
from deltaflow.data.npy import NpyWriter
from deltaflow.training.loop import fit


def rss_anon_kb() -> int:
    """The process's resident anonymous memory, in kB (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("RssAnon is not in /proc/self/status (needs Linux)")


class PeakAnon:
    """The highest ``RssAnon`` seen while the block runs, sampled by a thread."""

    def __init__(self, every: float = 0.01) -> None:
        self.every, self.peak = every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon_kb())
            time.sleep(self.every)

    def __enter__(self) -> PeakAnon:
        self.peak = rss_anon_kb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_kb())


def write_data(directory: Path, gb: float, features: int, classes: int) -> int:
    """Write X.npy (float32, about ``gb`` GB) and y.npy in chunks; return the rows."""
    rng = np.random.default_rng(0)
    m = int(gb * 1e9) // (features * 4)
    teacher = rng.standard_normal((features, classes)).astype(np.float32)
    X = NpyWriter(directory / "X.npy", np.float32, (features,))
    y = NpyWriter(directory / "y.npy", np.int64, ())
    chunk = max(1, (64 << 20) // (features * 4))
    for start in range(0, m, chunk):
        rows = rng.random((min(chunk, m - start), features), dtype=np.float32)
        X.write(rows)
        y.write((rows @ teacher).argmax(axis=1))
    X.close()
    y.close()
    return m


def drop_from_cache(path: Path) -> None:
    """Make the next reads of ``path`` come from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def one_epoch(net: Network, X: object, y: object, args: argparse.Namespace, shuffle: str) -> float:
    t0 = time.perf_counter()
    fit(net, X, y, epochs=1, batch_size=args.batch, learning_rate=0.05, shuffle=shuffle, seed=1)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=float, default=1.5, help="size of X.npy in GB (1.5)")
    p.add_argument("--features", type=int, default=784, help="columns of X (784)")
    p.add_argument("--hidden", type=int, default=128, help="units of the hidden layer (128)")
    p.add_argument("--batch", type=int, default=128, help="batch size (128)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (1)")
    p.add_argument("--turns", type=int, default=3, help="turns of each epoch, alternating (3)")
    p.add_argument("--rows", action="store_true", help="also time shuffle='rows' on the map")
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where the file goes (/tmp)")
    args = p.parse_args(argv)
    if not 0 < args.gb <= 8 or min(args.features, args.hidden, args.batch, args.turns) < 1:
        p.error("--gb must be in (0, 8] and --features, --hidden, --batch, --turns positive")

    with threadpool_limits(args.threads):
        return run(args)


def run(args: argparse.Namespace) -> int:
    classes = 10
    directory = Path(tempfile.mkdtemp(prefix="deltaflow-ooc-", dir=args.dir))
    try:
        m = write_data(directory, args.gb, args.features, classes)
        size = (directory / "X.npy").stat().st_size
        print(f"{size / 1e9:.2f} GB: {m} rows x {args.features} float32 features", flush=True)
        start = Network([args.features, args.hidden, classes], "relu", "cross_entropy",
                        dtype="float32", seed=0)  # fmt: skip
        before = rss_anon_kb()
        X_mem, y_mem = np.load(directory / "X.npy"), np.load(directory / "y.npy")
        loaded = (rss_anon_kb() - before) / 1024
        times: dict[str, list[float]] = {}
        anon: dict[str, float] = {"memory": loaded}
        runs = ["mapped, blocks", "memory"] + (["mapped, rows"] if args.rows else [])
        for turn in range(args.turns):
            for label in runs:
                if label == "mapped, rows" and turn:
                    continue  # slow, and once shows it
                if label == "memory":
                    seconds = one_epoch(start.copy(), X_mem, y_mem, args, "rows")
                else:
                    seconds, grown = mapped_epoch(directory, start, args, label.split()[-1])
                    anon[label] = max(anon.get(label, 0.0), grown)
                times.setdefault(label, []).append(seconds)
                print(f"  turn {turn + 1}, {label}: {seconds:.2f} s", flush=True)
        del X_mem, y_mem
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    print(
        f"\none epoch, {args.features}-{args.hidden}-{classes} float32, batch {args.batch}, "
        f"{m} rows, {args.threads} BLAS thread(s); median of {args.turns} turn(s)\n"
    )
    memory = float(np.median(times["memory"]))
    print(f"{'data':<16} {'seconds':>8} {'rows/s':>10} {'speed vs memory':>16} {'anon MB':>9}")
    for label, seconds_list in times.items():
        seconds = float(np.median(seconds_list))
        print(
            f"{label:<16} {seconds:>8.2f} {m / seconds:>10.0f} {memory / seconds:>15.2f}x "
            f"{anon[label]:>9.1f}"
        )
    print(
        "\nanon MB: for memory, what np.load added; for the mapped runs, the largest growth "
        "of RssAnon during an epoch over before the files were opened"
    )
    return 0


def mapped_epoch(
    directory: Path, start: Network, args: argparse.Namespace, shuffle: str
) -> tuple[float, float]:
    """One epoch on the files, from a cold page cache: seconds and anonymous MB grown."""
    for name in ("X.npy", "y.npy"):
        drop_from_cache(directory / name)
    before = rss_anon_kb()
    X = np.load(directory / "X.npy", mmap_mode="r")
    y = np.load(directory / "y.npy", mmap_mode="r")
    with PeakAnon() as anon:
        seconds = one_epoch(start.copy(), X, y, args, shuffle)
    del X, y
    gc.collect()
    return seconds, (anon.peak - before) / 1024


if __name__ == "__main__":
    sys.exit(main())
