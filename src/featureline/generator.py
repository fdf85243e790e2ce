"""Deterministic, realistic payments-fraud data for the example repo.

Two outputs, both reproducible from a seed:

- `write_history(root)` writes the batch history the example features read
  (`data/history/transactions/part-*.parquet`, `users.parquet`,
  `merchants.parquet`), with columns and Arrow types as in
  `contracts/{transactions,users,merchants}.yaml`. Vectorized with numpy:
  2M events in a couple of seconds.
- `live_events(n)` builds Kafka messages (JSON, one record per message, key =
  user_id) for the `transactions` topic, with a controlled share of bad
  records covering every rule the transactions contract can catch
  (`BAD_KINDS`); `produce_live(events, bootstrap, topic)` sends them.

Shape of the data: skewed user activity (lognormal weights; a few heavy
users, many light ones, ~4% of users with no transaction at all), a diurnal
and weekly rhythm, lognormal amounts by merchant category and currency, ~5%
declined and ~1% reversed, fraud-like bursts (card testing: rapid small ecom
payments at risky merchants, many declined) so short windows (10m) have
non-trivial counts, ties on event_time for the same user, optional fields
sometimes null. Users and merchants have one row per profile change
(`updated_at` increasing, first one after `signup_time`).

Per-user and per-merchant attributes (country, email, favourite merchants,
activity) come from `population_seed`, not from the event seed, so a live
stream and a history over the same population agree on who the users are.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .timeutil import DAY, HOUR, MINUTE, SECOND, from_us, to_us

# --- what the contracts allow (kept in step with contracts/*.yaml; a unit test checks it) ---

CURRENCIES = ("EUR", "USD", "GBP", "CHF", "JPY")
STATUSES = ("approved", "declined", "reversed")
CHANNELS = ("pos", "ecom", "atm")
CATEGORIES = ("grocery", "travel", "electronics", "gaming", "fuel", "restaurants", "fashion", "digital_goods")
RISK_SEGMENTS = ("low", "medium", "high")
AMOUNT_MIN = 0.0
AMOUNT_MAX = 50_000.0
RISK_TIER_MIN, RISK_TIER_MAX = 1, 5
MAX_FUTURE_SKEW_US = 5 * MINUTE

#: Field order of a transaction record (as in contracts/transactions.yaml).
TRANSACTION_FIELDS = (
    "txn_id",
    "user_id",
    "merchant_id",
    "amount",
    "currency",
    "status",
    "card_country",
    "channel",
    "customer_email",
    "event_time",
)
OPTIONAL_TRANSACTION_FIELDS = ("card_country", "channel", "customer_email")

#: Every kind of bad record `live_events` injects, one per rule the transactions contract can catch.
BAD_KINDS: tuple[str, ...] = (
    "malformed_json",  # truncated bytes
    "not_an_object",  # a JSON array instead of an object
    "missing_required",  # user_id dropped
    "null_required",  # amount null
    "wrong_type",  # amount "12.3x" or user_id "abc" (alternating)
    "below_minimum",  # negative amount
    "above_maximum",  # amount over the contract's maximum
    "enum",  # currency "XXX"
    "pattern",  # card_country "usa"
    "format_email",  # customer_email "not-an-email"
    "format_uuid",  # txn_id "1234"
    "unknown_field",  # extra key coupon_code
    "future_event_time",  # event_time one day ahead of the stream's current time
    "bad_timestamp",  # event_time "yesterday"
    "duplicate_key",  # a producer's retry: the nearest earlier good record sent again (same key, same txn_id)
)

DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)
#: Spacing of live event times when no rate is given (events per second of event time).
DEFAULT_LIVE_RATE = 1000.0
ROWS_PER_PART = 500_000

# Countries: (code, weight, currency index).
_COUNTRIES = (
    ("US", 24, 1), ("GB", 12, 2), ("DE", 12, 0), ("FR", 10, 0), ("ES", 6, 0), ("IT", 6, 0), ("NL", 4, 0),
    ("CH", 3, 3), ("JP", 5, 4), ("CA", 4, 1), ("BR", 3, 1), ("IN", 3, 1), ("AU", 3, 1), ("IE", 2, 0),
    ("SE", 2, 0), ("PL", 1, 0),
)  # fmt: skip
COUNTRY_CODES = tuple(c for c, _, _ in _COUNTRIES)
_COUNTRY_W = np.array([w for _, w, _ in _COUNTRIES], dtype=float) / sum(w for _, w, _ in _COUNTRIES)
_COUNTRY_CCY = np.array([c for _, _, c in _COUNTRIES], dtype=np.int64)

# Per category: weight among merchants, amount scale, riskiness (base risk tier).
_CAT_W = np.array([20, 6, 8, 7, 10, 22, 15, 12], dtype=float)
_CAT_W /= _CAT_W.sum()
_CAT_SCALE = np.array([0.9, 6.0, 4.0, 0.6, 1.3, 0.8, 1.6, 0.4])
_CAT_RISK = np.array([1, 3, 3, 4, 1, 1, 2, 4], dtype=np.int64)
_RISKY_CATS = (2, 3, 7)  # electronics, gaming, digital_goods

# Relative activity per UTC hour of day (night trough, lunch and evening peaks).
_HOUR_W = np.array([0.25, 0.15, 0.1, 0.08, 0.08, 0.12, 0.3, 0.6, 0.9, 1.0, 1.05, 1.15, 1.35, 1.3, 1.1, 1.05, 1.1, 1.25,
                    1.4, 1.45, 1.3, 1.0, 0.7, 0.45])  # fmt: skip
_HOUR_W /= _HOUR_W.sum()
_WEEKDAY_W = np.array([1.0, 0.97, 0.98, 1.0, 1.12, 1.2, 0.9])  # Monday..Sunday

_BURST_SHARE = 0.04  # share of history events that belong to fraud-like bursts
_HOME_MERCHANTS = 8

_FIRST = ("anna", "ben", "carla", "david", "emma", "felix", "grace", "hugo", "ines", "jonas", "kate", "liam", "maria",
          "noah", "olga", "paul", "quinn", "rosa", "sam", "tara", "umar", "vera", "will", "xena", "yusuf", "zoe")  # fmt: skip
_LAST = ("smith", "muller", "martin", "rossi", "garcia", "tanaka", "silva", "kowalski", "jones", "dubois", "schmidt",
         "brown", "lopez", "nielsen", "murphy", "weber", "moreau", "santos", "kim", "patel")  # fmt: skip
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")


def _sample(rng: np.random.Generator, p, n: int) -> np.ndarray:
    """n draws of an index with probabilities p (alias method: exact, and a few gathers per draw
    instead of the binary search `rng.choice(p=...)` does, which dominates at millions of draws)."""
    p = np.asarray(p, dtype=np.float64)
    k = len(p)
    scaled = p * (k / p.sum())
    prob = np.ones(k)
    alias = np.arange(k)
    small = [i for i in range(k) if scaled[i] < 1.0]
    large = [i for i in range(k) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    never = p <= 0  # never drawn, whatever rounding left over
    prob[never] = 0.0
    alias[never & (alias == np.arange(k))] = int(np.argmax(p))
    col = rng.integers(0, k, size=n)
    return np.where(rng.random(n) < prob[col], col, alias[col])


# --- population: who the users and merchants are ---


@dataclass(frozen=True)
class _Population:
    user_weight: np.ndarray  # (U,) probabilities, 0 for users who never pay
    user_country: np.ndarray  # (U,) index into COUNTRY_CODES
    user_email: list[str]  # (U,)
    user_home: np.ndarray  # (U, _HOME_MERCHANTS) favourite merchant indices
    merchant_weight: np.ndarray  # (M,)
    merchant_category: np.ndarray  # (M,) index into CATEGORIES
    merchant_country: np.ndarray  # (M,)
    merchant_tier: np.ndarray  # (M,) 1..5
    risky_merchants: np.ndarray  # indices of electronics/gaming/digital_goods merchants (all if none)

    @property
    def n_users(self) -> int:
        return len(self.user_weight)

    @property
    def n_merchants(self) -> int:
        return len(self.merchant_weight)


def _population(seed: int, users: int, merchants: int) -> _Population:
    if users < 1 or merchants < 1:
        raise ValueError(f"need at least one user and one merchant, got users={users}, merchants={merchants}")
    rng = np.random.default_rng([seed, users, merchants, 0x504F50])

    # Merchants: Zipf-like popularity over a random order.
    m_weight = 1.0 / np.arange(1, merchants + 1) ** 1.1
    m_weight = m_weight[rng.permutation(merchants)]
    m_weight /= m_weight.sum()
    m_cat = rng.choice(len(CATEGORIES), size=merchants, p=_CAT_W)
    m_country = rng.choice(len(COUNTRY_CODES), size=merchants, p=_COUNTRY_W)
    m_tier = np.clip(_CAT_RISK[m_cat] + rng.integers(-1, 2, size=merchants), RISK_TIER_MIN, RISK_TIER_MAX)
    risky = np.flatnonzero(np.isin(m_cat, _RISKY_CATS))
    if len(risky) == 0:
        risky = np.arange(merchants)

    # Users: lognormal activity (heavy tail), ~4% never pay.
    u_weight = rng.lognormal(0.0, 1.4, size=users)
    if users >= 10:
        idle = rng.choice(users, size=max(1, round(0.04 * users)), replace=False)
        u_weight[idle] = 0.0
    u_weight /= u_weight.sum()
    u_country = rng.choice(len(COUNTRY_CODES), size=users, p=_COUNTRY_W)
    home = rng.choice(merchants, size=(users, _HOME_MERCHANTS), p=m_weight)
    first = rng.integers(0, len(_FIRST), size=users)
    last = rng.integers(0, len(_LAST), size=users)
    dom = rng.integers(0, len(_DOMAINS), size=users)
    emails = [
        f"{_FIRST[f]}.{_LAST[la]}{uid}@{_DOMAINS[d]}"
        for uid, f, la, d in zip(range(1, users + 1), first.tolist(), last.tolist(), dom.tolist(), strict=True)
    ]
    return _Population(u_weight, u_country, emails, home, m_weight, m_cat, m_country, m_tier, risky)


# --- transactions: vectorized draws ---


def _draw_fields(pop: _Population, rng: np.random.Generator, uidx: np.ndarray, burst: np.ndarray) -> dict[str, np.ndarray]:
    """Everything but txn_id and event_time, for users `uidx` (0-based); `burst` marks fraud-like events.

    Categorical fields come back as indices (-1 = null)."""
    n = len(uidx)
    n_c = len(COUNTRY_CODES)

    # Merchant: mostly one of the user's favourites; bursts hit risky merchants.
    fav = pop.user_home[uidx, rng.integers(0, _HOME_MERCHANTS, size=n)]
    anywhere = _sample(rng, pop.merchant_weight, n)
    risky = pop.risky_merchants[rng.integers(0, len(pop.risky_merchants), size=n)]
    merchant = np.where(burst, risky, np.where(rng.random(n) < 0.7, fav, anywhere))
    cat = pop.merchant_category[merchant]

    # Channel: pos / ecom / atm; bursts are card-not-present.
    channel = _sample(rng, [0.55, 0.40, 0.05], n)
    channel = np.where(burst, 1, channel)

    # Currency: the user's own mostly.
    home_ccy = _COUNTRY_CCY[pop.user_country[uidx]]
    currency = np.where(rng.random(n) < 0.92, home_ccy, rng.integers(0, len(CURRENCIES), size=n))

    # Amount: lognormal by category; bursts are card testing (tiny) or cash-out (large).
    amount = rng.lognormal(3.2, 1.0, size=n) * _CAT_SCALE[cat]
    testing = rng.random(n) < 0.7
    amount = np.where(burst, np.where(testing, rng.lognormal(0.6, 0.6, size=n), rng.lognormal(5.8, 0.7, size=n)), amount)
    atm = channel == 2
    amount = np.where(atm, np.maximum(20.0, np.round(amount * 2 / 20.0) * 20.0), amount)
    big = amount > 2000
    jpy = currency == 4
    amount = np.where(jpy, np.round(amount * 150.0), np.round(amount, 2))
    amount = np.where(~burst & ~atm & (rng.random(n) < 0.003), 0.0, amount)  # zero-amount card checks
    amount = np.clip(amount, AMOUNT_MIN, AMOUNT_MAX)

    # Status: ~5% declined, ~1% reversed overall; bursts are declined far more often.
    u = rng.random(n)
    p_decl = np.where(burst, 0.30, 0.040) + np.where(big, 0.05, 0.0)
    status = np.where(u < p_decl, 1, np.where(u < p_decl + 0.01, 2, 0))

    # Card country: the user's, sometimes foreign (often in bursts).
    foreign = rng.random(n) < np.where(burst, 0.6, 0.05)
    card_country = np.where(foreign, rng.integers(0, n_c, size=n), pop.user_country[uidx])

    # Optional fields sometimes null.
    card_country = np.where(rng.random(n) < 0.02, -1, card_country)
    channel = np.where(rng.random(n) < 0.01, -1, channel)
    email_null = rng.random(n) < 0.03
    return {
        "merchant": merchant,
        "amount": amount.astype(np.float64),
        "currency": currency,
        "status": status,
        "card_country": card_country,
        "channel": channel,
        "email_null": email_null,
    }


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# byte -> its two lowercase hex digits, as one little-endian uint16 (high nibble first in memory)
_HEX_PAIRS = (_HEX[np.arange(256) >> 4].astype(np.uint16) | (_HEX[np.arange(256) & 15].astype(np.uint16) << 8)).astype("<u2")


def _uuid_bytes(rng: np.random.Generator, n: int, chunk: int = 65_536) -> np.ndarray:
    """n random version-4 UUIDs as an (n, 36) uint8 array of ASCII (8-4-4-4-12, lowercase hex).

    Hex-encoded in cache-sized chunks: big temporaries cost more than the arithmetic."""
    raw = rng.integers(0, 2**64 - 1, size=(n, 2), dtype=np.uint64, endpoint=True).view(np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    out = np.empty((n, 36), dtype=np.uint8)
    out[:, [8, 13, 18, 23]] = ord("-")
    for a in range(0, n, chunk):
        hexed = _HEX_PAIRS[raw[a : a + chunk]].view(np.uint8)
        dst_rows = out[a : a + chunk]
        for src, dst, width in ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)):
            dst_rows[:, dst : dst + width] = hexed[:, src : src + width]
    return out


def _history_times(rng: np.random.Generator, n: int, start_us: int, end_us: int) -> np.ndarray:
    """n event times in [start, end) with a diurnal and weekly rhythm (UTC)."""
    day0 = start_us // DAY
    n_days = -(-(end_us - day0 * DAY) // DAY)
    weekday = (np.arange(day0, day0 + n_days) + 3) % 7  # 1970-01-01 was a Thursday
    day_w = _WEEKDAY_W[weekday]
    day = _sample(rng, day_w, n)
    hour = _sample(rng, _HOUR_W, n)
    t = (day0 + day) * DAY + hour * HOUR + rng.integers(0, HOUR, size=n)
    span = end_us - start_us
    return start_us + (t - start_us) % span  # partial first/last days wrap into range


# --- history ---


def _ts(us: int) -> datetime:
    return from_us(int(us))


def write_history(
    root: Path,
    *,
    users: int = 2000,
    merchants: int = 300,
    events: int = 200_000,
    days: int = 30,
    end: datetime | None = None,
    seed: int = 42,
    population_seed: int = 0,
) -> dict:
    """Write `root/data/history/{transactions/part-*.parquet,users.parquet,merchants.parquet}`.

    Events fall in [end - days, end); `end` defaults to DEFAULT_END (2026-11-01T00:00:00Z),
    never the wall clock, so the same arguments give the same data. Existing
    `transactions/part-*.parquet` files are replaced. Returns counts, paths and the time range.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if events < 0 or days <= 0:
        raise ValueError(f"need events >= 0 and days > 0, got events={events}, days={days}")
    pop = _population(population_seed, users, merchants)
    rng = np.random.default_rng([seed, 0x484953])
    end_us = to_us(end if end is not None else DEFAULT_END)
    start_us = end_us - int(days) * DAY

    # Base events, then bursts anchored on random base events (same user, seconds apart, some exact ties).
    n_burst = int(round(events * _BURST_SHARE)) if events >= 100 else 0
    n_base = events - n_burst
    base_u = _sample(rng, pop.user_weight, n_base)
    base_t = _history_times(rng, n_base, start_us, end_us)
    if n_burst:
        sizes = rng.integers(3, 21, size=n_burst // 3 + 1)
        cum = np.cumsum(sizes)
        k = int(np.searchsorted(cum, n_burst)) + 1
        sizes = sizes[:k]
        sizes[-1] -= int(cum[k - 1]) - n_burst
        anchor = rng.integers(0, n_base, size=k)
        gaps = rng.exponential(30 * SECOND, size=n_burst).astype(np.int64)
        gaps[rng.random(n_burst) < 0.08] = 0  # identical timestamps for the same user
        cg = np.cumsum(gaps)
        seg_start = np.repeat(np.cumsum(sizes) - sizes, sizes)
        offsets = cg - cg[seg_start] + gaps[seg_start]
        t0 = np.repeat(base_t[anchor], sizes)
        burst_t = t0 + offsets
        burst_t = np.where(burst_t >= end_us, t0 - offsets, burst_t)
        burst_t = np.clip(burst_t, start_us, end_us - 1)
        uidx = np.concatenate([base_u, np.repeat(base_u[anchor], sizes)])
        t = np.concatenate([base_t, burst_t])
    else:
        uidx, t = base_u, base_t
    is_burst = np.zeros(events, dtype=bool)
    is_burst[n_base:] = True

    order = np.argsort(t, kind="stable")
    t, uidx, is_burst = t[order], uidx[order], is_burst[order]
    f = _draw_fields(pop, rng, uidx, is_burst)
    uuids = _uuid_bytes(rng, events)

    def strings(n: int, data: np.ndarray, width: int) -> pa.Array:
        offs = np.arange(0, (n + 1) * width, width, dtype=np.int32)
        return pa.StringArray.from_buffers(n, pa.py_buffer(offs), pa.py_buffer(np.ascontiguousarray(data)))

    def categorical(values: tuple[str, ...] | list[str], idx: np.ndarray) -> pa.Array:
        return pa.array(values, pa.string()).take(pa.array(idx, pa.int64(), mask=idx < 0))

    ts = pa.timestamp("us", tz="UTC")
    emails = pa.array(pop.user_email, pa.string())
    table = pa.table(
        {
            "txn_id": strings(events, uuids, 36),
            "user_id": pa.array(uidx + 1, pa.int64()),
            "merchant_id": pa.array(f["merchant"] + 1, pa.int64()),
            "amount": pa.array(f["amount"], pa.float64()),
            "currency": categorical(CURRENCIES, f["currency"]),
            "status": categorical(STATUSES, f["status"]),
            "card_country": categorical(COUNTRY_CODES, f["card_country"]),
            "channel": categorical(CHANNELS, f["channel"]),
            "customer_email": emails.take(pa.array(uidx, pa.int64(), mask=f["email_null"])),
            "event_time": pa.array(t, ts),
        }
    )

    hist = Path(root) / "data" / "history"
    tx_dir = hist / "transactions"
    tx_dir.mkdir(parents=True, exist_ok=True)
    for old in tx_dir.glob("part-*.parquet"):
        old.unlink()
    n_parts = max(1, math.ceil(events / ROWS_PER_PART))
    bounds = np.linspace(0, events, n_parts + 1).round().astype(np.int64)
    parts = [tx_dir / f"part-{i:05d}.parquet" for i in range(n_parts)]
    users_tbl = _users_table(pa, pop, rng, start_us, end_us, ts)
    merchants_tbl = _merchants_table(pa, pop, rng, start_us, end_us, ts)
    # txn_id is unique: dictionary-encoding it is wasted work. Parts are written in parallel (Arrow releases the GIL).
    dict_cols = [c for c in table.column_names if c != "txn_id"]
    jobs = [(table.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])), parts[i], dict_cols) for i in range(n_parts)]
    jobs += [(users_tbl, hist / "users.parquet", True), (merchants_tbl, hist / "merchants.parquet", True)]
    with ThreadPoolExecutor(max_workers=min(4, len(jobs))) as pool:
        for _ in pool.map(lambda job: pq.write_table(job[0], job[1], use_dictionary=job[2], compression="zstd"), jobs):
            pass

    active = np.zeros(users, dtype=bool)
    active[uidx] = True
    return {
        "transactions": events,
        "transaction_files": [str(p) for p in parts],
        "users": users,
        "user_rows": users_tbl.num_rows,
        "users_without_transactions": int(users - active.sum()),
        "merchants": merchants,
        "merchant_rows": merchants_tbl.num_rows,
        "start": _ts(start_us),
        "end": _ts(end_us),
        "first_event_time": _ts(t[0]) if events else None,
        "last_event_time": _ts(t[-1]) if events else None,
        "users_path": str(hist / "users.parquet"),
        "merchants_path": str(hist / "merchants.parquet"),
    }


def _change_times(rng: np.random.Generator, first: np.ndarray, share: float, max_extra: int, lo: int, hi: int):
    """One row per entity at `first`, plus 1..max_extra later changes for `share` of them in [max(first, lo), hi).

    Returns (entity index, time, is_first) sorted by entity then time."""
    n = len(first)
    extra = np.where(rng.random(n) < share, rng.integers(1, max_extra + 1, size=n), 0)
    ent = np.concatenate([np.arange(n), np.repeat(np.arange(n), extra)])
    lo_e = np.maximum(first[ent[n:]] + SECOND, lo)
    t_extra = lo_e + (rng.random(len(lo_e)) * (hi - lo_e)).astype(np.int64)
    t = np.concatenate([first, t_extra])
    is_first = np.zeros(len(ent), dtype=bool)
    is_first[:n] = True
    order = np.lexsort((t, ent))
    return ent[order], t[order], is_first[order]


def _users_table(pa, pop: _Population, rng: np.random.Generator, start_us: int, end_us: int, ts):
    n = pop.n_users
    signup = start_us - DAY - (rng.random(n) * 3 * 365 * DAY).astype(np.int64)
    first = signup + rng.integers(SECOND, HOUR, size=n)
    ent, t, is_first = _change_times(rng, first, 0.3, 3, start_us - (end_us - start_us), end_us)
    m = len(ent)
    country = pop.user_country[ent]
    moved = ~is_first & (rng.random(m) < 0.2)
    country = np.where(moved, rng.choice(len(COUNTRY_CODES), size=m, p=_COUNTRY_W), country)
    segment = rng.choice(3, size=m, p=[0.7, 0.22, 0.08])
    segment = np.where(rng.random(m) < 0.05, -1, segment)
    return pa.table(
        {
            "user_id": pa.array(ent + 1, pa.int64()),
            "country": pa.array(COUNTRY_CODES, pa.string()).take(pa.array(country, pa.int64())),
            "signup_time": pa.array(signup[ent], ts),
            "risk_segment": pa.array(RISK_SEGMENTS, pa.string()).take(pa.array(segment, pa.int64(), mask=segment < 0)),
            "updated_at": pa.array(t, ts),
        }
    )


def _merchants_table(pa, pop: _Population, rng: np.random.Generator, start_us: int, end_us: int, ts):
    n = pop.n_merchants
    first = start_us - DAY - (rng.random(n) * 5 * 365 * DAY).astype(np.int64)
    ent, t, is_first = _change_times(rng, first, 0.2, 2, start_us, end_us)
    m = len(ent)
    tier = pop.merchant_tier[ent] + np.where(is_first, 0, rng.integers(-1, 2, size=m))
    tier = np.clip(tier, RISK_TIER_MIN, RISK_TIER_MAX)
    return pa.table(
        {
            "merchant_id": pa.array(ent + 1, pa.int64()),
            "category": pa.array(CATEGORIES, pa.string()).take(pa.array(pop.merchant_category[ent], pa.int64())),
            "country": pa.array(COUNTRY_CODES, pa.string()).take(pa.array(pop.merchant_country[ent], pa.int64())),
            "risk_tier": pa.array(tier, pa.int64()),
            "updated_at": pa.array(t, ts),
        }
    )


# --- live events ---


@dataclass(frozen=True)
class LiveEvent:
    """One Kafka message: key (user_id as ASCII, None when the record has none), JSON value,
    the event time it stands for (for `future_event_time` the future time written, for
    unparseable ones the stream's time), and which bad kind it is (None = valid)."""

    key: bytes | None
    value: bytes
    event_time_us: int
    bad_kind: str | None = None


def iso_us(us: int) -> str:
    """Epoch microseconds -> '2026-11-01T12:00:00.123456Z'."""
    return from_us(int(us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now_us() -> int:
    return time.time_ns() // 1000


def bad_positions(n: int, bad_share: float) -> list[int]:
    """Evenly spread positions of the round(n * bad_share) bad records among n."""
    n_bad = min(n, int(round(n * bad_share)))
    return [int((k + 0.5) * n / n_bad) for k in range(n_bad)] if n_bad else []


def live_events(
    n: int,
    *,
    seed: int = 7,
    start: datetime | None = None,
    rate_per_s: float | None = None,
    bad_share: float = 0.02,
    users: int = 2000,
    merchants: int = 300,
    population_seed: int = 0,
) -> list[LiveEvent]:
    """n messages for the `transactions` topic, event times from `start` (default: now, UTC) at
    `rate_per_s` per second of event time on average (default DEFAULT_LIVE_RATE).

    round(n * bad_share) records, evenly spread, are bad; their kinds follow BAD_KINDS round-robin,
    so with n >= 50 * len(BAD_KINDS) and bad_share 0.02 every kind appears. Each bad record breaks
    exactly one rule; every other record is valid under contracts/transactions.yaml.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= bad_share <= 1.0:
        raise ValueError(f"bad_share must be within [0, 1], got {bad_share}")
    rate = float(rate_per_s) if rate_per_s else DEFAULT_LIVE_RATE
    if rate <= 0:
        raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
    pop = _population(population_seed, users, merchants)
    rng = np.random.default_rng([seed, 0x4C4956])
    start_us = to_us(start) if start is not None else _now_us()

    gaps = rng.exponential(SECOND / rate, size=n).astype(np.int64)
    gaps[rng.random(n) < 0.02] = 0
    if n:
        gaps[0] = 0
    t = start_us + np.cumsum(gaps)

    uidx = _sample(rng, pop.user_weight, n)
    burst = np.zeros(n, dtype=bool)
    n_runs = int(round(n * 0.04 / 7))
    for p, k, span_s in zip(rng.integers(0, max(n, 1), size=n_runs).tolist(), rng.integers(3, 12, size=n_runs).tolist(),
                            rng.uniform(20, 300, size=n_runs).tolist(), strict=True):  # fmt: skip
        stride = max(1, int(span_s * rate / k))
        pos = np.arange(p, min(n, p + k * stride), stride)
        uidx[pos] = uidx[p]
        burst[pos] = True
    f = _draw_fields(pop, rng, uidx, burst)
    txn_ids = [b.decode() for b in _uuid_bytes(rng, n).view("S36").ravel().tolist()] if n else []
    omit = rng.random(n) < 0.3  # a null optional field is sometimes left out rather than null

    records: list[dict] = []
    for i in range(n):
        cc, ch = int(f["card_country"][i]), int(f["channel"][i])
        rec = {
            "txn_id": txn_ids[i],
            "user_id": int(uidx[i]) + 1,
            "merchant_id": int(f["merchant"][i]) + 1,
            "amount": float(f["amount"][i]),
            "currency": CURRENCIES[f["currency"][i]],
            "status": STATUSES[f["status"][i]],
            "card_country": COUNTRY_CODES[cc] if cc >= 0 else None,
            "channel": CHANNELS[ch] if ch >= 0 else None,
            "customer_email": None if f["email_null"][i] else pop.user_email[uidx[i]],
            "event_time": iso_us(t[i]),
        }
        if omit[i]:
            for k in OPTIONAL_TRANSACTION_FIELDS:
                if rec[k] is None:
                    del rec[k]
        records.append(rec)

    kinds: dict[int, str] = {p: BAD_KINDS[j % len(BAD_KINDS)] for j, p in enumerate(bad_positions(n, bad_share))}
    out: list[LiveEvent] = []
    last_good: dict | None = None
    seen = {"wrong_type": 0}
    for i, rec in enumerate(records):
        kind = kinds.get(i)
        event_us = int(t[i])
        key: bytes | None = str(rec["user_id"]).encode("ascii")
        value: bytes | None = None
        if kind is None:
            last_good = rec
        elif kind == "malformed_json":
            whole = _dumps(rec)
            value = whole[: len(whole) // 2]
        elif kind == "not_an_object":
            value = _dumps([rec])
        elif kind == "missing_required":
            del rec["user_id"]
            key = None
        elif kind == "null_required":
            rec["amount"] = None
        elif kind == "wrong_type":
            if seen["wrong_type"] % 2 == 0:
                rec["amount"] = "12.3x"
            else:
                rec["user_id"] = "abc"
                key = b"abc"
            seen["wrong_type"] += 1
        elif kind == "below_minimum":
            rec["amount"] = -round(max(rec["amount"], 12.5), 2)
        elif kind == "above_maximum":
            rec["amount"] = round(AMOUNT_MAX + 1.0 + rec["amount"], 2)
        elif kind == "enum":
            rec["currency"] = "XXX"
        elif kind == "pattern":
            rec["card_country"] = "usa"
        elif kind == "format_email":
            rec["customer_email"] = "not-an-email"
        elif kind == "format_uuid":
            rec["txn_id"] = "1234"
        elif kind == "unknown_field":
            rec["coupon_code"] = "SAVE10"
        elif kind == "future_event_time":
            event_us += DAY
            rec["event_time"] = iso_us(event_us)
        elif kind == "bad_timestamp":
            rec["event_time"] = "yesterday"
        elif kind == "duplicate_key":
            if last_good is not None:  # the whole record again: same key, so the same partition, a later offset
                rec = dict(last_good)
                key = str(rec["user_id"]).encode("ascii")
                event_us = to_us(rec["event_time"])
            elif i:
                rec["txn_id"] = txn_ids[i - 1]
        out.append(LiveEvent(key, value if value is not None else _dumps(rec), event_us, kind))
    return out


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def produce_live(events: Iterable[LiveEvent], bootstrap: str, topic: str, *, rate_per_s: float | None = None) -> int:
    """Send `events` to Kafka (kafka-python, acks=1, small linger), paced to `rate_per_s` messages
    per second if given, flush, and return how many were sent. Raises if any send failed."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    errors: list[BaseException] = []
    count = 0
    try:
        t0 = time.monotonic()
        for ev in events:
            if rate_per_s:
                delay = t0 + count / rate_per_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.send(topic, key=ev.key, value=ev.value).add_errback(errors.append)
            count += 1
        producer.flush()
    finally:
        producer.close()
    if errors:
        raise RuntimeError(f"{len(errors)} of {count} messages to {topic!r} failed, first: {errors[0]!r}")
    return count


def write_spine(
    path: Path, *, rows: int = 1000, users: int = 2000, merchants: int = 300, days: int = 30, end: datetime | None = None, seed: int = 11
) -> int:
    """A training spine for the example service: (request_id, user_id, merchant_id, timestamp, is_fraud).

    Times are uniform over the history's range, users drawn like the history's (some never
    seen), and a made-up label, so `featureline dataset` has something to join.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    end_us = to_us(end) if end is not None else to_us(DEFAULT_END)
    start_us = end_us - days * 86_400_000_000
    times = np.sort(rng.integers(start_us, end_us, size=rows))
    table = pa.table(
        {
            "request_id": pa.array(np.arange(rows), pa.int64()),
            "user_id": pa.array(rng.integers(1, int(users * 1.05) + 1, size=rows), pa.int64()),
            "merchant_id": pa.array(rng.integers(1, merchants + 1, size=rows), pa.int64()),
            "timestamp": pa.array(times, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "is_fraud": pa.array(rng.random(rows) < 0.02),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return rows
