"""Clear feature views from the online store before a backfill rewrites them.

A backfill to online at T replaces what the online store holds for its views by the
events before T; the stream then re-applies the events at or after T (stream/pipeline.py).
Whatever the store held for those views before (an older backfill, events streamed
since) must go first, or the stream's events would count twice: so every entity's keys of
the views' slots are deleted (tiles and latest rows alike: `layout.py`). The stream's
per-partition offsets are named after the boundary they belong to
(`<slot>:<topic>:<partition>@<backfill epoch>` in the entity's offsets hash), so old ones are
never consulted again and expire with their key.
"""

from __future__ import annotations

from ..plan import Plan
from .layout import key_head, latest_code, tile_layouts


def reset_views(store, plan: Plan, views) -> int:
    """Remove the views' online data; returns the number of keys deleted."""
    client = store.client
    codes_by_entity: dict[str, set[str]] = {}
    for name in views:
        v = plan.views[name]
        codes = codes_by_entity.setdefault(v.entity, set())
        codes.update([latest_code(v)] if v.kind == "latest" else (lay.code for lay in tile_layouts(v)))
    touched = 0
    for entity in sorted(codes_by_entity):
        codes = codes_by_entity[entity]
        head = key_head(store.prefix, entity)
        batch: list = []
        for key in client.scan_iter(match=_glob(head) + "*", count=5000):
            k = key.decode() if isinstance(key, bytes) else key
            # key values hold no `}` (layout.esc): the code is what follows the last `}:`
            if k.rpartition("}:")[2] in codes:
                batch.append(key)
                if len(batch) >= 2000:
                    touched += client.unlink(*batch)
                    batch = []
        if batch:
            touched += client.unlink(*batch)
    return touched


def _glob(s: str) -> str:
    """`s` matched literally by a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)
