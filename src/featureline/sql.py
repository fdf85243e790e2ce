"""SQL text shared by every engine (DuckDB dialect): identifiers, literals, time arithmetic."""

from __future__ import annotations

ORD_SHIFT = 1 << 64  # ordering key of an event: event_time * 2^64 + arrival (HUGEINT)


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(v) -> str:
    """A SQL literal of None, a bool, a number or text."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def floor_sql(x: str, h: int) -> str:
    """floor(x, h) on integer microseconds, exact for negatives too (DuckDB's % keeps the dividend's sign)."""
    return f"(({x}) - ((({x}) % {h}) + {h}) % {h})"
