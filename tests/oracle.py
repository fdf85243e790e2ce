"""A plain-Python oracle of docs/semantics.md, written from its text alone; used only by tests.

Times are integer microseconds since the epoch. An event is a dict with `event_time`,
`arrival` (its position in arrival order: Kafka offset, or row order in batch files)
and its columns. Nothing here is shared with the engines.
"""

from __future__ import annotations

import math
from fractions import Fraction


def floor(x: int, h: int) -> int:
    """Round down to a multiple of h since the Unix epoch."""
    return (x // h) * h


def window_events(events: list[dict], t: int, window: int, hop: int) -> list[dict]:
    """Events with floor(t - W, H) <= event_time < t (head exact, tail hop-aligned)."""
    start = floor(t - window, hop)
    return [e for e in events if start <= e["event_time"] < t]


def _num(v):
    return int(v) if isinstance(v, bool) else v


def aggregate(fn: str, events: list[dict], column: str | None, param=None):
    """AGG over the events; nulls ignored; empty: count/count_distinct/sum 0, others null.
    `param`: last_k/first_k's k, approx_percentile's percentile."""
    if fn == "count" and column is None:
        return len(events)
    rows = [e for e in events if e.get(column) is not None]
    vals = [_num(e[column]) for e in rows]
    if fn == "count":
        return len(vals)
    if fn == "count_distinct":  # up to the documented bound of 1,000
        return min(len({e[column] for e in rows}), 1000)
    if fn == "approx_count_distinct":  # the exact number: the engines estimate it (see `approx_close`)
        return len({e[column] for e in rows})
    if fn == "sum":
        if not vals:
            return 0
        return sum(vals) if all(isinstance(v, int) for v in vals) else math.fsum(vals)
    if not vals:
        return None
    if fn == "mean":
        return float(sum(Fraction(v) for v in vals) / len(vals))
    if fn == "min":
        return min(e[column] for e in rows)
    if fn == "max":
        return max(e[column] for e in rows)
    if fn in ("last_k", "first_k"):  # newest (oldest) first, ties on event_time by arrival order
        order = sorted(rows, key=lambda e: (e["event_time"], e["arrival"]), reverse=fn == "last_k")
        return [e[column] for e in order[:param]]
    if fn == "top_k":  # most frequent first, ties by value ascending
        counts: dict = {}
        for e in rows:
            counts[e[column]] = counts.get(e[column], 0) + 1
        return [v for v, _ in sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))[:param]]
    if fn == "approx_percentile":  # the exact element of rank floor(q (n - 1)): the engines estimate it
        return float(sorted(vals)[math.floor(param * (len(vals) - 1))])
    if fn in ("last", "first"):
        # ties on event_time break by arrival order
        order = sorted(rows, key=lambda e: (e["event_time"], e["arrival"]))
        return (order[-1] if fn == "last" else order[0])[column]
    if fn in ("variance", "stddev"):
        if len(vals) < 2:
            return None
        exact = [Fraction(v) for v in vals]
        mean = sum(exact) / len(exact)
        var = sum((v - mean) ** 2 for v in exact) / (len(exact) - 1)
        return float(var) if fn == "variance" else math.sqrt(var)
    raise ValueError(fn)


def window_value(events: list[dict], t: int, fn: str, column: str | None, window: int, hop: int, param=None):
    return aggregate(fn, window_events(events, t, window, hop), column, param)


def latest_value(events: list[dict], t: int, column: str, ttl: int):
    """The row with the greatest event_time < t and event_time >= t - ttl; null if none."""
    rows = [e for e in events if t - ttl <= e["event_time"] < t]
    if not rows:
        return None
    return max(rows, key=lambda e: (e["event_time"], e["arrival"])).get(column)


def approx_close(fn: str, got, want) -> bool:
    """An approximate function's value against the oracle's exact one, within its documented
    error (docs/semantics.md): approx_count_distinct 2% (and 1 for a handful of values),
    approx_percentile 1% of the exact element."""
    if fn == "approx_count_distinct":
        return got is not None and abs(got - want) <= max(1, 0.02 * want)
    if fn == "approx_percentile":  # relative accuracy 1%; zero within 1e-9
        if got is None or want is None:
            return got is None and want is None
        return abs(got - want) <= 0.01 * abs(want) + 1e-9
    raise ValueError(fn)


def close(a, b, rel: float = 1e-9, abs_: float = 1e-9) -> bool:
    """Equal, or floats within 1e-9 relative (and 1e-9 absolute near zero); lists element-wise."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(close(x, y, rel, abs_) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_)
    return a == b
