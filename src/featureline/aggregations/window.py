"""What a function's `reduce` reads: the tiles of one slot that one window covers, for n rows.

The slot's tiles of all rows are one float64 matrix (a row per tile: its states as a packed
tile lays them out; NaN where a state is not a number) plus, for msgpack tiles, the states
that are not numbers (`objects`). Sums over the kept tiles of each row are computed once per
window and column (`total`), so functions of one window share them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from operator import add

import numpy as np


class Tiles:
    """One slot's tiles of n rows: `mat` (tiles, columns), float64, a row per tile (column 0
    its start, then its states, NaN where one is not a number); `objects(column)` the states
    of a column as stored (msgpack tiles; None for packed ones); `column(kind, input, part=0)`."""

    def __init__(self, mat: np.ndarray, objects: Callable[[int], list] | None, column: Callable[..., int], counts: np.ndarray):
        self.mat, self.objects, self.column = mat, objects, column
        self.start = mat[:, 0]
        self.n = len(counts)
        self.seg = np.repeat(np.arange(self.n), counts)  # each tile's row
        self.firsts = (np.cumsum(counts) - counts)[counts > 0]  # first tile of each row that has tiles
        self.has = counts > 0


class Window:
    """The tiles a window keeps (`keep`, per tile) of one slot's `Tiles`."""

    def __init__(self, tiles: Tiles, keep: np.ndarray):
        self.tiles, self.keep = tiles, keep
        self.mat, self.objects, self.column, self.n, self.seg = tiles.mat, tiles.objects, tiles.column, tiles.n, tiles.seg
        self._sums: dict[int, np.ndarray] = {}

    def per_row(self, values: np.ndarray) -> np.ndarray:
        """(tiles,) values -> their sums over each row's kept tiles, added one after the other
        from 0.0, oldest tile first (`seq_sum`: every read of a row gets the same bits, whatever
        rows it is read with)."""
        return np.bincount(self.seg[self.keep], weights=values[self.keep], minlength=self.n)

    def total(self, kind: str, inp: str | None, part: int = 0) -> np.ndarray:
        """(n,) the sum of an additive state over each row's kept tiles (computed once per window)."""
        j = self.column(kind, inp, part)
        got = self._sums.get(j)
        if got is None:
            got = self._sums[j] = self.per_row(self.mat[:, j])
        return got

    def values(self, kind: str, inp: str | None, part: int = 0) -> np.ndarray:
        """(tiles,) a numeric state of every tile."""
        return self.mat[:, self.column(kind, inp, part)]

    def nonempty(self, inp: str | None) -> np.ndarray:
        """(tiles,) bool: kept tiles holding a non-null value of the input."""
        return self.keep & (self.values("nn", inp) > 0)

    def states(self, kind: str, inp: str | None) -> list[list]:
        """Per row, a msgpack state of its kept tiles that hold a non-null value, oldest first."""
        objs = self.objects(self.column(kind, inp))
        rows: list[list] = [[] for _ in range(self.n)]
        for i in np.flatnonzero(self.nonempty(inp)).tolist():
            rows[self.seg[i]].append(objs[i])
        return rows

    def extreme(self, kind: str, inp: str | None, lowest: bool) -> tuple[np.ndarray, np.ndarray]:
        """(n,) the least (greatest) numeric state over each row's non-empty kept tiles, and
        whether the row has one."""
        ok = self.nonempty(inp)
        masked = np.where(ok, self.values(kind, inp), np.inf if lowest else -np.inf)
        out = np.full(self.n, np.inf if lowest else -np.inf)
        if len(self.tiles.firsts):
            out[self.tiles.has] = (np.minimum if lowest else np.maximum).reduceat(masked, self.tiles.firsts)
        return out, self.per_row(ok.astype(np.float64)) > 0


class Row:
    """One row's tiles of one slot that one window keeps, for a read of one row (pure Python:
    faster than numpy below a few rows). `col(kind, input, part=0)` lists a state over the
    kept tiles, oldest first."""

    def __init__(self, cols: Callable[[int, int, int], list], column: Callable[..., int], first: int, end: int):
        self._cols, self.column, self.first, self.end = cols, column, first, end  # kept tiles: [first, end)

    def col(self, kind: str, inp: str | None, part: int = 0) -> list:
        return self._cols(self.column(kind, inp, part), self.first, self.end)

    def total(self, kind: str, inp: str | None, part: int = 0) -> float:
        return seq_sum(self.col(kind, inp, part))

    def nonempty(self, kind: str, inp: str | None, part: int = 0) -> list:
        """The state over the kept tiles that hold a non-null value of the input."""
        return [x for x, c in zip(self.col(kind, inp, part), self.col("nn", inp), strict=True) if c > 0]


def seq_sum(values) -> float:
    """Values added one after the other from 0.0, as `Window.per_row` adds them (Python's
    `sum` compensates floats from 3.12 on)."""
    return reduce(add, values, 0.0)
