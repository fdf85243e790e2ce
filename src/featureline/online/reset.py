"""Clear feature views from the online store before a backfill rewrites them.

A backfill to online at T replaces what the online store holds for its views by the
events before T; the stream then re-applies the events at or after T (stream/pipeline.py).
Whatever the store held for those views before (an older backfill, events streamed
since) must go first, or the stream's events would count twice: so the views' sections go
from every entity's value (`value.py`): the whole value (UNLINK) when the views are all of
the entity type's online views, else those sections (`value.PUT`, the others kept). The
stream's per-partition offsets are named after the boundary they belong to
(`<slot>:<topic>:<partition>@<backfill epoch>` in the entity's offsets hash), so old ones are
never consulted again and expire with their key.
"""

from __future__ import annotations

import time

from ..plan import Plan
from .layout import covers_entity, key_head, view_codes
from .value import PUT

BATCH = 2000  # keys per UNLINK or PUT call


def reset_views(store, plan: Plan, views) -> int:
    """Remove the views' online data; returns the number of entity values changed or deleted."""
    client = store.client
    codes_by_entity: dict[str, set[str]] = {}
    for name in views:
        v = plan.views[name]
        codes_by_entity.setdefault(v.entity, set()).update(view_codes(v))
    touched = 0
    for entity in sorted(codes_by_entity):
        codes = codes_by_entity[entity]
        whole = covers_entity(plan, entity, codes)
        drop = "".join(sorted(codes))
        sha = None if whole else client.script_load(PUT)
        batch: list = []
        # value keys end with the hash tag's `}` (key values hold none: layout.esc); offsets keys with `}:_off`
        for key in client.scan_iter(match=_glob(key_head(store.prefix, entity)) + "*}", count=5000):
            batch.append(key)
            if len(batch) >= BATCH:
                touched += _clear(client, batch, sha, drop)
                batch = []
        if batch:
            touched += _clear(client, batch, sha, drop)
    return touched


def _clear(client, keys: list, sha: str | None, drop: str) -> int:
    """Delete the keys (sha None), or drop the `drop` sections from their values."""
    if sha is None:
        return client.unlink(*keys)
    return client.evalsha(sha, len(keys), *keys, time.time_ns() // 1_000_000, drop, *([b""] * len(keys)))


def _glob(s: str) -> str:
    """`s` matched literally by a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)
