"""The ``deltaflow`` command line: argument parsing and printing only.

Each sub-command lives in a module of this package that exposes ``register(sub)``,
adding its parser and setting ``func`` to a handler ``func(args) -> int``. The handlers
call the library; they hold no mathematics.

:func:`main` turns every deltaflow error into one line on stderr and exit status 2:
a user never sees a traceback for bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from deltaflow import __version__
from deltaflow.cli import (
    bench,
    convert,
    evaluate,
    explain,
    export,
    gradcheck,
    playground,
    predict,
    train,
)
from deltaflow.errors import DeltaflowError
from deltaflow.parallel import launched_rank

__all__ = ["build_parser", "main"]

COMMANDS = [train, evaluate, predict, convert, export, gradcheck, explain, bench, playground]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` can return a status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="deltaflow",
        description=(
            "Train fully connected networks with backpropagation written out as a "
            "dynamic programme."
        ),
    )
    parser.add_argument("--version", action="version", version=f"deltaflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args))
    except _UsageError as exc:
        _report(f"error: {exc}")
        return 2
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except DeltaflowError as exc:
        _report(f"deltaflow: error: {exc}")
        return 2
    except KeyboardInterrupt:
        print("deltaflow: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        _report(f"deltaflow: error: {exc.strerror or exc}{where}")
        return 2


def _report(line: str) -> None:
    """Print an error's one line; under ``mpiexec`` rank 0 alone prints it.

    The other ranks wait a moment before they return, because the launcher ends the
    whole job as soon as one process exits with an error, and rank 0's line would be lost.
    """
    rank = launched_rank()
    if rank is None or rank == 0:
        print(line, file=sys.stderr)
    else:
        time.sleep(2.0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
