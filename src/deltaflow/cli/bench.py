"""``deltaflow bench``: training speed against PyTorch, scikit-learn and the BLAS limit."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from deltaflow.bench import (
    ARCHITECTURES,
    BATCH_SIZES,
    CONTENDERS,
    DTYPES,
    Row,
    available,
    format_table,
    parse_architecture,
    run_grid,
)
from deltaflow.cli._common import check_output, int_list, stderr_console
from deltaflow.errors import ConfigError

QUICK_BATCHES = (1, 32, 512)
_PACKAGES = {"torch": "PyTorch", "sklearn": "scikit-learn"}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="time training against PyTorch, scikit-learn and the matrix-product limit",
        description=(
            "Train the same networks with deltaflow's Network.fit, PyTorch eager and "
            "scikit-learn's MLPClassifier (each when installed), all with plain SGD, and "
            "time only the matrix products a step needs (the limit). Contenders take turns "
            "and the median samples/s of several turns is reported, with the ratios, the "
            "fraction of the limit deltaflow reaches and its training loop's overhead. "
            f"Default grid: {', '.join(ARCHITECTURES)}; batch sizes "
            f"{','.join(map(str, BATCH_SIZES))}; {' and '.join(DTYPES)}. Takes about 5 "
            "minutes; --quick takes about one."
        ),
    )
    p.add_argument(
        "--arch",
        action="append",
        metavar="NAME",
        help=f"architecture: {' or '.join(ARCHITECTURES)}, or SIZES:ACTIVATION:COST such "
        "as 784-64-10:tanh:cross_entropy (repeat for several; default both)",
    )
    p.add_argument("--batch", metavar="B1,B2,...", help="batch sizes (default the grid's)")
    p.add_argument("--dtype", metavar="D1,D2", help="float32, float64 or both (default both)")
    p.add_argument(
        "--contenders",
        metavar="C1,C2,...",
        default=",".join(CONTENDERS),
        help=f"which to run, of {','.join(CONTENDERS)} (default all that are installed)",
    )
    p.add_argument("--repeats", type=int, help="turns per contender, median reported (5)")
    p.add_argument("--seconds", type=float, help="about how long one turn trains (0.3)")
    p.add_argument(
        "--threads",
        type=int,
        help="BLAS threads for deltaflow and torch.set_num_threads (default: the BLAS's own)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"float32, batch sizes {','.join(map(str, QUICK_BATCHES))}, 3 turns of 0.1 s",
    )
    p.add_argument("--json", metavar="FILE", help="also write every figure to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = args.arch or list(ARCHITECTURES)
    archs = [parse_architecture(a) for a in names]
    batches = int_list(args.batch, "--batch") if args.batch else None
    dtypes = _names(args.dtype, "--dtype", DTYPES) if args.dtype else None
    contenders = _names(args.contenders, "--contenders", CONTENDERS)
    if args.quick:
        batches = batches or list(QUICK_BATCHES)
        dtypes = dtypes or ["float32"]
    repeats = args.repeats or (3 if args.quick else 5)
    seconds = args.seconds or (0.1 if args.quick else 0.3)
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    json_path = check_output(args.json, args.force, "JSON file") if args.json else None

    err = stderr_console(args.quiet)
    missing = [c for c in contenders if not available(c)]
    contenders = [c for c in contenders if c not in missing]
    if missing:
        if not contenders:  # only missing ones asked for: run the others
            contenders = [c for c in CONTENDERS if available(c)]
        what = ", ".join(_PACKAGES.get(c, c) for c in missing)
        stderr_console().print(
            f"{what} {'is' if len(missing) == 1 else 'are'} not installed: running "
            f"{', '.join(contenders)} without {'it' if len(missing) == 1 else 'them'}"
        )

    def progress(row: Row) -> None:
        rates = ", ".join(f"{k} {v:,.0f}/s" for k, v in row.samples_per_s.items())
        err.print(f"{row.arch} {row.dtype} batch {row.batch}: {rates}")

    result = run_grid(
        archs,
        batches or BATCH_SIZES,
        dtypes or DTYPES,
        contenders,
        repeats=repeats,
        seconds=seconds,
        threads=args.threads,
        progress=progress,
    )
    Console(highlight=False, soft_wrap=True).print(format_table(result), markup=False)
    if json_path is not None:
        result.write_json(json_path)
        err.print(f"wrote {json_path}")
    return 0


def _names(text: str, option: str, allowed: tuple[str, ...]) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ConfigError(f"{option} takes names from {', '.join(allowed)}; got {text!r}")
    return names
