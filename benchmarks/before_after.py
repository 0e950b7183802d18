"""Before and after: this checkout's ``Network.fit`` against an older one's, interleaved.

Export an older commit's package, then time both side by side with the same turns,
medians and table as ``deltaflow bench`` (the older one is the ``before`` column)::

    mkdir -p /tmp/before && git archive 089d15c src | tar -x -C /tmp/before
    python3 benchmarks/before_after.py /tmp/before/src/deltaflow --quick --threads 1

The older package is imported under another name (its imports are relative), so both
run in one process on the same data; ``x before`` is the speed-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from deltaflow import bench


def load_old(package_dir: Path) -> Any:
    where = [str(package_dir)]
    spec = importlib.util.spec_from_file_location(
        "deltaflow_before", package_dir / "__init__.py", submodule_search_locations=where
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"no package at {package_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["deltaflow_before"] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("package", type=Path, help="the older checkout's src/deltaflow folder")
    p.add_argument("--quick", action="store_true", help="float32, batch sizes 1, 32, 512")
    p.add_argument("--batch", help="comma-separated batch sizes (overrides --quick's)")
    p.add_argument("--dtype", help="comma-separated dtypes (overrides --quick's)")
    p.add_argument("--arch", help="comma-separated architectures (default both)")
    p.add_argument("--threads", type=int)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=0.3)
    args = p.parse_args(argv)
    old = load_old(args.package.resolve())

    class Before(bench.DeltaflowFit):
        name = "before"

        def __init__(self, cfg: bench.Config, X: np.ndarray, y: np.ndarray) -> None:
            a = cfg.arch
            self.cfg = cfg
            self.net = old.Network(list(a.sizes), a.activation, a.cost, dtype=cfg.dtype, seed=0)
            self.X, self.y = X, y

        def run(self, n: int) -> tuple[int, float]:
            X, y, epochs = bench._rows(self.X, self.y, n)
            t0 = time.perf_counter()
            self.net.fit(X, y, epochs=epochs, batch_size=self.cfg.batch, learning_rate=0.01)
            return epochs * X.shape[0], time.perf_counter() - t0

    bench.CONTENDER_TYPES["before"] = Before
    batches = (1, 32, 512) if args.quick else bench.BATCH_SIZES
    dtypes = ("float32",) if args.quick else bench.DTYPES
    if args.batch:
        try:
            batches = tuple(int(b) for b in args.batch.split(","))
        except ValueError:
            p.error(f"--batch takes whole numbers such as 1,32,512, got {args.batch!r}")
    if args.dtype:
        dtypes = tuple(args.dtype.split(","))
        if not set(dtypes) <= set(bench.DTYPES):
            p.error(f"--dtype takes {','.join(bench.DTYPES)}, got {args.dtype!r}")
    archs = tuple(bench.ARCHITECTURES.values())
    if args.arch:
        names = args.arch.split(",")
        unknown = [n for n in names if n not in bench.ARCHITECTURES]
        if unknown:
            p.error(f"--arch takes {','.join(bench.ARCHITECTURES)}, got {unknown[0]!r}")
        archs = tuple(bench.ARCHITECTURES[n] for n in names)
    result = bench.run_grid(
        archs,
        batches,
        dtypes,
        ["deltaflow", "before"],
        repeats=args.repeats,
        seconds=args.seconds,
        threads=args.threads,
    )
    print(f"{bench._machine_line(result.machine)}; {result.settings['threads']} thread(s)")
    print("| arch | dtype | batch | before | after | x before |")
    print("|---|---|---:|---:|---:|---:|")
    for r in result.rows:
        b, a = r.samples_per_s["before"], r.samples_per_s["deltaflow"]
        print(f"| {r.arch} | {r.dtype} | {r.batch} | {b:,.0f} | {a:,.0f} | {a / b:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
