"""The one reading of a timestamp string every path shares: ISO 8601, naive = UTC.

Python's `datetime.fromisoformat` decides what parses (the column path lets Arrow cast
the common forms at C speed and checks it agrees); an instant outside years 1..9999
in UTC is not a timestamp (Python could not show it in a reason, Arrow could not
hand it back as a datetime).
"""

from __future__ import annotations

import datetime as dt

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
_UTC = dt.UTC
_fromiso = dt.datetime.fromisoformat
MIN_US = (dt.datetime.min.replace(tzinfo=dt.UTC) - _EPOCH) // _US
MAX_US = (dt.datetime.max.replace(tzinfo=dt.UTC) - _EPOCH) // _US


def parse_ts(s: str) -> int | None:
    """Epoch microseconds of an ISO 8601 string, or None when it is not one (per record: kept lean)."""
    try:
        d = _fromiso(s)
    except (ValueError, TypeError):
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_UTC)
    us = (d - _EPOCH) // _US
    return us if MIN_US <= us <= MAX_US else None
