"""Training speed, side by side: ``python3 benchmarks/bench.py [options]``.

The same as ``deltaflow bench`` (see ``deltaflow bench --help``): deltaflow's
``Network.fit`` against PyTorch eager, scikit-learn's ``MLPClassifier`` and the time of
the matrix products alone, over the grid 784-30-10 (sigmoid, squared error) and
784-256-256-10 (relu, cross-entropy), batch sizes 1 to 2048, float32 and float64.

    python3 benchmarks/bench.py --quick                  # about a minute
    python3 benchmarks/bench.py --json bench.json        # the full grid, about 5 minutes
"""

from __future__ import annotations

import sys

from deltaflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
