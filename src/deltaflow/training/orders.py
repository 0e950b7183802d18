"""The order of an epoch's rows: an exact permutation, or blocks read a few at a time.

``"rows"``
    An exact permutation of the rows (``rng.shuffle`` of the previous epoch's order).
``"blocks"``
    The rows are cut into blocks of about :data:`BLOCK_BYTES` of contiguous rows; the
    blocks are permuted, then the rows of every :data:`BUFFER_BLOCKS` consecutive blocks
    of that permutation are shuffled together. Every row is still used once per epoch,
    and a file is read in long runs that the kernel can fetch ahead of use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deltaflow.errors import ConfigError

__all__ = ["BLOCK_BYTES", "BUFFER_BLOCKS", "block_order", "block_rows", "shuffle_mode"]

BLOCK_BYTES = 1 << 20  # rows read from the file together
BUFFER_BLOCKS = 32  # blocks whose rows are shuffled together


def shuffle_mode(shuffle: Any, mapped: bool) -> str | None:
    """``"rows"``, ``"blocks"`` or None (no shuffling) from ``fit``'s ``shuffle`` argument.

    ``True`` means ``"blocks"`` for memory-mapped data and ``"rows"`` for data in memory.
    """
    if shuffle is True:
        return "blocks" if mapped else "rows"
    if shuffle is False or shuffle is None:
        return None
    if isinstance(shuffle, str) and shuffle.lower() in ("rows", "blocks"):
        return shuffle.lower()
    raise ConfigError(f"shuffle must be True, False, 'rows' or 'blocks', got {shuffle!r}")


def block_rows(row_bytes: int) -> int:
    """Rows per block: about :data:`BLOCK_BYTES` of the file, at least one row."""
    return max(1, BLOCK_BYTES // max(1, row_bytes))


def block_order(
    m: int,
    rows_per_block: int,
    buffer_blocks: int,
    rng: np.random.Generator,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """A permutation of ``range(m)`` that reads the rows block by block (into ``out``).

    The ``ceil(m / rows_per_block)`` blocks of contiguous rows are permuted; then the
    rows of each run of ``buffer_blocks`` blocks of that permutation are permuted among
    themselves.
    """
    n_blocks = -(-m // rows_per_block)
    blocks = rng.permutation(n_blocks)
    order = np.empty(m, dtype=np.intp) if out is None else out
    filled = 0
    for first in range(0, n_blocks, buffer_blocks):
        group = blocks[first : first + buffer_blocks]
        starts = group * rows_per_block
        counts = np.minimum(starts + rows_per_block, m) - starts
        rows = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        rng.shuffle(rows)
        order[filled : filled + rows.size] = rows
        filled += rows.size
    return order
