"""Durations and instants, in integer microseconds since the Unix epoch (UTC).

docs/semantics.md: event times are UTC with microsecond precision, naive
timestamps are UTC, and `floor(x, H)` rounds down to a multiple of H since the
epoch. Integers keep every engine exact (no float seconds anywhere).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

US = 1
MS = 1_000
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY

_UNITS = {"us": US, "ms": MS, "s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY, "w": WEEK}
_PART = re.compile(r"(\d+)(us|ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:us|ms|s|m|h|d|w))+")


def parse_duration(text: object) -> int:
    """'10m' -> 600_000_000 (us). Accepts compounds like '1h30m'. Raises ValueError."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(
            f"expected a duration with a unit like '10m', '1h', '7d', got {text!r}"
            + (" (a bare number has no unit)" if isinstance(text, (int, float)) else "")
        )
    s = text.strip()
    if not _WHOLE.fullmatch(s):
        raise ValueError(f"cannot parse duration {text!r}: use a number and a unit (us, ms, s, m, h, d, w), e.g. '10m', '1h30m', '7d'")
    total = sum(int(n) * _UNITS[u] for n, u in _PART.findall(s))
    if total <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return total


def format_duration(us: int) -> str:
    """600_000_000 -> '10m'; the shortest exact compound form."""
    if us == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms", "us"):
        size = _UNITS[unit]
        if us >= size:
            n, us = divmod(us, size)
            out.append(f"{n}{unit}")
    return "".join(out)


def floor(x: int, h: int) -> int:
    """Round down to a multiple of h since the epoch (Python's // floors negatives too)."""
    return (x // h) * h


def default_hop(window_us: int) -> int:
    """docs/semantics.md: 5 min for W < 12 h, 1 h for W < 12 d, 1 day otherwise."""
    if window_us < 12 * HOUR:
        return 5 * MINUTE
    if window_us < 12 * DAY:
        return HOUR
    return DAY


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_US = timedelta(microseconds=1)


def to_us(value: datetime | str | int) -> int:
    """An instant as epoch microseconds. Naive datetimes and strings without offset are UTC."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        s = value.strip()
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(s)
        except ValueError:
            raise ValueError(f"cannot parse time {value!r}: use ISO 8601, e.g. 2024-05-01T12:00:00Z") from None
    if not isinstance(value, datetime):
        raise ValueError(f"expected a time, got {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def from_us(us: int) -> datetime:
    from datetime import timedelta

    return _EPOCH + timedelta(microseconds=us)
