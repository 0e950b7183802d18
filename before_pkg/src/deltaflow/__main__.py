"""``python -m deltaflow``: the same command line as the ``deltaflow`` script."""

import sys

from deltaflow.cli import main

sys.exit(main())
