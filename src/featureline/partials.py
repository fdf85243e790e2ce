"""A view's events and its tile partials in SQL, and the tiles' float64 matrix. One home for
the batch engine and backfill (batch/) and the stream's micro-batches (stream/apply.py), which
must see the same events and write the same tiles from them; each accumulator's own SQL and
state encoding are its module's (aggregations/)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .aggregations import FUNCTIONS
from .online.layout import TileLayout, input_name
from .plan import FeaturePlan, ViewPlan
from .sql import ORD_SHIFT, q


def events_sql(view: ViewPlan, source: str) -> str:
    """The view's events read from `source` (a relation with `__t` and `__arrival`): its keys,
    __t, __arrival, __ord, and one input column per feature (`__in_<feature>`)."""
    cols = [q(k) for k in view.join_keys] + ["__t", "__arrival", f"(__t::HUGEINT * {ORD_SHIFT} + __arrival) AS __ord"]
    seen = set()
    for f in view.features:
        expr = input_sql(f)
        if expr is not None and f.name not in seen:
            cols.append(f"{expr} AS {q('__in_' + f.name)}")
            seen.add(f.name)
    # a row with a null join key belongs to no entity: no join finds it, no online key holds it
    conds = [f"{q(k)} IS NOT NULL" for k in view.join_keys] + ([f"({view.where})"] if view.where else [])
    return f"(SELECT {', '.join(cols)} FROM {source} WHERE {' AND '.join(conds)})"


def input_sql(f: FeaturePlan) -> str | None:
    """A feature's input as SQL over the source's columns (None: it counts events)."""
    if f.expr is not None:
        src = f"({f.expr})"
    elif f.column is not None:
        src = q(f.column)
    else:
        return None
    if f.input_type == "boolean" and FUNCTIONS[f.function].bool_as_int:
        return f"CAST({src} AS INTEGER)"  # booleans count as 0/1
    return src


def inputs(view: ViewPlan) -> dict[str, tuple[str, str | None]]:
    """input name -> (SQL column in the view's events, logical type)."""
    out = {}
    for f in view.features:
        inp = input_name(f)
        if inp is not None and inp not in out:
            as_int = f.input_type == "boolean" and FUNCTIONS[f.function].bool_as_int
            out[inp] = (f"{q('__in_' + f.name)}", "integer" if as_int else f.input_type)
    return out


def accumulator_columns(view: ViewPlan, lay: TileLayout, prefix: str = "__a") -> list[str]:
    """The SELECT items of a slot's tile states: `<accumulator SQL> AS <prefix><index>`."""
    ins = inputs(view)
    out = []
    for a in lay.accs:
        col, typ = ins.get(a.input, (None, None)) if a.input else (None, None)
        out.append(f"{a.impl.sql(col, typ)} AS {prefix}{a.index}")
    return out


def tile_matrix(lay: TileLayout, table) -> np.ndarray:
    """Tile rows (`__tile`, `__a0`...) of a numeric layout -> a little-endian float64 matrix,
    one row per tile: start, then the states as `TileLayout.pack_block` lays them out (var as
    mean, M2; nulls as 0, never read: the tile's `nn` is 0)."""
    cols = [table.column("__tile")]
    for a in lay.accs:
        cols += a.impl.columns(table.column(f"__a{a.index}"))
    mat = np.empty((table.num_rows, len(cols)), dtype="<f8")
    for j, c in enumerate(cols):
        mat[:, j] = pc.fill_null(c.combine_chunks().cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
    return mat


def tile_states(lay: TileLayout, row) -> list:
    """One tile's states (a row of `__a<i>` values) as the online store keeps them."""
    return [a.impl.state(v) for a, v in zip(lay.accs, row, strict=True)]
