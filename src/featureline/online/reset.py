"""Clear feature views from the online store before a backfill rewrites them.

A backfill to online at T replaces what the online store holds for its views by the
events before T; the stream then re-applies the events at or after T (stream/pipeline.py).
Whatever the store held for those views before (an older backfill, events streamed
since) must go first, or the stream's events would count twice: so every entity's tile
blocks of the views' slots are removed (HDEL on each entity hash) and their latest-value
keys deleted. The stream's per-partition offset fields are named after the boundary they
belong to (`_off:<slot>:<topic>:<partition>@<backfill epoch>`), so old ones are never consulted again
and expire with their key.
"""

from __future__ import annotations

from ..plan import Plan
from .layout import latest_code, tile_layouts


def reset_views(store, plan: Plan, views) -> int:
    """Remove the views' online data; returns the number of keys touched."""
    client = store.client
    prefix = store.prefix
    codes_by_entity: dict[str, list[str]] = {}
    latest_by_entity: dict[str, set[str]] = {}
    for name in views:
        v = plan.views[name]
        if v.kind == "latest":
            latest_by_entity.setdefault(v.entity, set()).add(latest_code(v))
        else:
            codes_by_entity.setdefault(v.entity, []).extend(lay.code for lay in tile_layouts(v))
    touched = 0
    for entity in sorted(set(codes_by_entity) | set(latest_by_entity)):
        codes = codes_by_entity.get(entity, [])
        latest = latest_by_entity.get(entity, set())
        pipe = client.pipeline(transaction=False)
        pending = 0
        head = f"{prefix}:{entity}:"
        for key in client.scan_iter(match=f"{head}*", count=5000):
            k = key.decode() if isinstance(key, bytes) else key
            # key values hold no `:` (layout.esc): `<head><key>` is a tile hash, `<head><key>:<code>` a latest value
            ent, sep, code = k[len(head) :].partition(":")
            if sep:
                if code not in latest:
                    continue
                pipe.delete(k)
            elif codes:
                pipe.hdel(k, *codes)
            else:
                continue
            pending += 1
            if pending >= 2000:
                pipe.execute(raise_on_error=False)
                touched += pending
                pending = 0
        if pending:
            pipe.execute(raise_on_error=False)
            touched += pending
    return touched
