"""What a request reads, validated against the plan before Redis is asked.

A request names a service or a list of "view:feature" refs and carries entity rows (a list of
objects) or columns (an object of lists). Every bound is checked here and answered with a short
`HTTPError` (4xx): the number of rows and features, name lengths, join keys of the plan's logical
types (integers within int64, finite numbers, strings of at most MAX_KEY_CHARS), the read time.
Nothing a client sends is echoed back longer than a few dozen characters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
from typing import Any

import msgspec

from ..online.store import OnlineStore
from ..plan import FeaturePlan, Plan, ServicePlan
from ..timeutil import to_us

MAX_NAME = 256  # characters of a service name or a feature ref
MAX_KEY_CHARS = 4096  # characters of a string join key
INT64 = (-(1 << 63), (1 << 63) - 1)
AT_RANGE_US = (0, 7_258_118_400_000_000)  # `at`: 1970-01-01 to 2200-01-01 (tile starts are doubles, exact up to 2^53 us)


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- reads: validation and the ad-hoc feature lists ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Read:
    """What one request reads: one or more (store, service) parts, each one round trip, whose
    outputs are disjoint; `features` in output order, `join_keys` every row must carry."""

    parts: tuple[tuple[OnlineStore, str], ...]
    features: tuple[FeaturePlan, ...]
    join_keys: tuple[str, ...]
    service: str | None = None


_CHECKS = {
    "integer": (lambda v: type(v) is int and INT64[0] <= v <= INT64[1], "an integer"),
    "string": (lambda v: type(v) is str and len(v) <= MAX_KEY_CHARS, "a string"),
    "number": (lambda v: (type(v) is int and INT64[0] <= v <= INT64[1]) or (type(v) is float and math.isfinite(v)), "a number"),
    "boolean": (lambda v: type(v) is bool, "a boolean"),
}
_ANY_KEY = (lambda v: type(v) in (int, str, float, bool) and _CHECKS[_JSON_TYPES[type(v)]][0](v), "a scalar")


def _bad_key(i: int, k: str, want: str, v: Any) -> HTTPError:
    if type(v) is int and want in ("an integer", "a number", "a scalar"):
        what = f"within int64, got an integer of {len(str(abs(v)))} digits"
    elif type(v) is str and want in ("a string", "a scalar"):
        what = f"of at most {MAX_KEY_CHARS:,} characters, got {len(v):,}"
    else:
        what = f"got {_show(v)}"
    return HTTPError(422, f"entity row {i}: join key `{k}` must be {want}, {what}")


_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "array", dict: "object", type(None): "null"}


class Reader:
    """Turns a request's service or feature list and entities into validated OnlineStore reads."""

    def __init__(self, plan: Plan, *, max_entities: int, max_features: int):
        from ..online.store import connect

        self.plan = plan
        self.client = connect(plan)  # never used to read (reads are async); builds nothing until asked
        self.max_entities = max_entities
        self.max_features = max_features
        self.store = OnlineStore(plan, client=self.client, max_rows=max_entities)
        self.key_types: dict[str, str] = {}
        for e in plan.entities.values():
            for k, t in zip(e.join_keys, e.key_types, strict=False):
                self.key_types.setdefault(k, t)
        self._services = {
            name: Read(((self.store, name),), tuple(plan.feature(r) for r in s.features), tuple(s.join_keys), name)
            for name, s in plan.services.items()
        }
        self._lists: dict[tuple[str, ...], Read] = {}
        self._lock = threading.Lock()

    # what to read
    def for_service(self, name: Any) -> Read:
        if not isinstance(name, str):
            raise HTTPError(400, f"`service` must be a string, got {_jtype(name)}")
        read = self._services.get(name)
        if read is None:
            from ..errors import did_you_mean

            if len(name) > MAX_NAME:
                raise HTTPError(400, f"service name of {len(name):,} characters; the limit is {MAX_NAME}")
            hint = did_you_mean(name, self.plan.services)
            known = ", ".join(self.plan.services)
            raise HTTPError(404, f"no feature service `{_cut(name)}`" + (f" ({hint})" if hint else f" (services: {_cut(known, 200)})"))
        return read

    def for_features(self, refs: Any) -> Read:
        """A read of a list of "view:feature" refs, built once per distinct list (an ad-hoc
        service per group of refs whose names do not clash) and cached."""
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            raise HTTPError(400, '`features` must be a non-empty list of "view:feature" strings')
        if len(refs) > self.max_features:
            raise HTTPError(413, f"{len(refs):,} features in one request; the limit is {self.max_features}")
        long = next((r for r in refs if len(r) > MAX_NAME), None)
        if long is not None:
            raise HTTPError(400, f"feature ref of {len(long):,} characters; the limit is {MAX_NAME}")
        key = tuple(refs)
        read = self._lists.get(key)
        if read is not None:
            return read
        feats = [self._feature(r) for r in refs]
        seen: set[str] = set()
        for r in refs:
            if r in seen:
                raise HTTPError(400, f"feature `{_cut(r)}` is requested twice")
            seen.add(r)
        groups: list[list[FeaturePlan]] = []  # each group: unique output names (a store returns features by name)
        for f in feats:
            for g in groups:
                if all(x.name != f.name for x in g):
                    g.append(f)
                    break
            else:
                groups.append([f])
        join_keys: list[str] = []
        parts = []
        for i, g in enumerate(groups):
            keys: list[str] = []
            for f in g:
                for k in self.plan.views[f.view].join_keys:
                    if k not in keys:
                        keys.append(k)
            name = f"__features_{i}__"
            svc = ServicePlan(name, tuple(f.ref for f in g), tuple(keys))
            plan = dataclasses.replace(self.plan, services={**self.plan.services, name: svc})
            parts.append((OnlineStore(plan, client=self.client, max_rows=self.max_entities), name))
            join_keys += [k for k in keys if k not in join_keys]
        read = Read(tuple(parts), tuple(feats), tuple(join_keys))
        with self._lock:
            if len(self._lists) >= 256:
                self._lists.pop(next(iter(self._lists)))
            self._lists[key] = read
        return read

    def _feature(self, ref: str) -> FeaturePlan:
        from ..errors import did_you_mean

        view_name, sep, name = ref.partition(":")
        if not sep:
            raise HTTPError(400, f'feature `{_cut(ref)}`: write "view:feature"')
        view = self.plan.views.get(view_name)
        if view is None:
            hint = did_you_mean(view_name, self.plan.views)
            raise HTTPError(404, f"feature `{_cut(ref)}`: no feature view `{_cut(view_name)}`" + (f" ({hint})" if hint else ""))
        f = view.feature(name)
        if f is None:
            hint = did_you_mean(name, [x.name for x in view.features])
            raise HTTPError(
                404, f"feature `{_cut(ref)}`: view `{view_name}` has no feature `{_cut(name)}`" + (f" ({hint})" if hint else "")
            )
        if not view.online:
            raise HTTPError(400, f"feature `{ref}`: view `{view_name}` is not served online")
        return f

    # the entities
    def rows(self, read: Read, entities: Any) -> list[dict]:
        """Validate `entities` (a list of rows or a dict of columns) against the read's join
        keys and their types; return the rows."""
        jk = read.join_keys
        if isinstance(entities, dict):
            extra = [k for k in entities if k not in jk]
            if extra:
                raise HTTPError(422, f"unknown join key(s) {_names(extra)} in `entities` (expected {', '.join(jk)})")
            missing = [k for k in jk if k not in entities]
            if missing:
                raise HTTPError(422, f"`entities` lacks join key(s) {', '.join(missing)}")
            cols = [entities[k] for k in jk]
            for k, c in zip(jk, cols, strict=True):
                if not isinstance(c, list):
                    raise HTTPError(422, f"`entities.{k}` must be a list of values, got {_jtype(c)}")
            n = len(cols[0]) if cols else 0
            if any(len(c) != n for c in cols):
                raise HTTPError(
                    422, "entity columns have different lengths: " + ", ".join(f"{k} {len(c)}" for k, c in zip(jk, cols, strict=True))
                )
            self._check_count(n)
            for k, c in zip(jk, cols, strict=True):
                check = _CHECKS.get(self.key_types.get(k, ""), _ANY_KEY)
                ok = check[0]
                for i, v in enumerate(c):
                    if not ok(v):
                        raise _bad_key(i, k, check[1], v)
            return [dict(zip(jk, vals, strict=True)) for vals in zip(*cols, strict=True)]
        if isinstance(entities, list):
            self._check_count(len(entities))
            checks = [(k, _CHECKS.get(self.key_types.get(k, ""), _ANY_KEY)) for k in jk]
            width = len(jk)
            for i, row in enumerate(entities):
                if not isinstance(row, dict):
                    raise HTTPError(422, f"entity row {i} must be an object of join keys, got {_jtype(row)}")
                for k, check in checks:
                    if k not in row:
                        raise HTTPError(422, f"entity row {i} lacks join key `{k}` (expected {', '.join(jk)})")
                    if not check[0](row[k]):
                        raise _bad_key(i, k, check[1], row[k])
                if len(row) != width:
                    extra = [k for k in row if k not in jk]
                    raise HTTPError(422, f"entity row {i} has unknown key(s) {_names(extra)} (expected {', '.join(jk)})")
            return entities
        raise HTTPError(400, f"`entities` must be a list of objects or an object of columns, got {_jtype(entities)}")

    def _check_count(self, n: int) -> None:
        if n > self.max_entities:
            raise HTTPError(413, f"{n} entity rows in one request; the limit is {self.max_entities}")

    # the read
    async def get(self, aclient, read: Read, rows: list[dict], at_us: int) -> dict[str, list]:
        """Columns: join keys, then the read's features by name (one round trip per part)."""
        if not rows:
            return {k: [] for k in (*read.join_keys, *(f.name for f in read.features))}
        if len(read.parts) == 1:
            store, name = read.parts[0]
            return await store.get_async(aclient, name, rows, at_us=at_us)
        out: dict[str, list] = {k: [r[k] for r in rows] for k in read.join_keys}
        for i, (store, name) in enumerate(read.parts):
            cols = await store.get_async(aclient, name, rows, at_us=at_us)
            for k, v in cols.items():
                if k not in read.join_keys:
                    out[f"{i}\0{k}"] = v  # part-qualified: names may repeat across parts
        return out

    def feature_columns(self, read: Read, cols: dict[str, list]) -> list[list]:
        """The read's feature columns in request order."""
        if len(read.parts) == 1:
            return [cols[f.name] for f in read.features]
        where = {}
        for i, (store, name) in enumerate(read.parts):
            for ref in store.plan.services[name].features:
                where[ref] = i
        return [cols[f"{where[f.ref]}\0{f.name}"] for f in read.features]


def read_time(at: Any) -> int:
    """A request's `at` (ISO 8601 or epoch microseconds; absent: now) -> epoch microseconds."""
    if at is None:
        return time.time_ns() // 1000
    if isinstance(at, bool) or not isinstance(at, (str, int)):
        raise HTTPError(422, f"`at` must be an ISO 8601 string or epoch microseconds, got {_jtype(at)}")
    if isinstance(at, str) and len(at) > 64:
        raise HTTPError(422, f"`at` of {len(at):,} characters is not a time")
    try:
        t = to_us(at)
    except (ValueError, OverflowError) as e:
        raise HTTPError(422, _cut(str(e), 120)) from None
    if not AT_RANGE_US[0] <= t < AT_RANGE_US[1]:
        raise HTTPError(422, f"`at` must be between 1970-01-01 and 2200-01-01, got {_show(at)}")
    return t


def _cut(text: str, n: int = 60) -> str:
    return text if len(text) <= n else f"{text[: n - 3]}... ({len(text):,} chars)"


def _names(keys: list) -> str:
    shown = ", ".join(repr(_cut(str(k), 40)) for k in keys[:5])
    return shown + (f" and {len(keys) - 5:,} more" if len(keys) > 5 else "")


def _jtype(v: Any) -> str:
    return _JSON_TYPES.get(type(v), type(v).__name__)


def _show(v: Any) -> str:
    if type(v) in (list, dict):
        return f"{'an array' if type(v) is list else 'an object'} of {len(v):,} items ({_jtype(v)})"
    if type(v) is str and len(v) > 40:
        v_cut = v[:40]
        return f"{msgspec.json.encode(v_cut).decode()[:37]}... of {len(v):,} characters (string)"
    text = msgspec.json.encode(v).decode() if type(v) in _JSON_TYPES else repr(v)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({_jtype(v)})"


@functools.lru_cache(maxsize=4)  # requests come many a second: each second formatted once
def _second_text(secs: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))


def _feast_ts(us: int) -> str:
    """Feast's event timestamp text (protobuf JSON): RFC 3339, Z, adaptive sub-second digits."""
    secs, frac = divmod(us, 1_000_000)
    base = _second_text(secs)
    if frac == 0:
        return base + "Z"
    if frac % 1000 == 0:
        return f"{base}.{frac // 1000:03d}Z"
    return f"{base}.{frac:06d}Z"
