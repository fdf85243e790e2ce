"""Contract checks: featureline's validator against a pydantic v2 model per record, same run.

    .venv/bin/python bench/contracts_bench.py [--bad-share 0.02] [--repeat 7]

Cases (rows/s, higher is better; ratio = ours / baseline):
  checks, decoded 10k      validate_table on an Arrow table   vs  Model.model_validate(dict) per record
  json -> valid, 10k       validate_json on message bytes     vs  Model.model_validate_json(bytes) per record
  json, batch of N         the same for N = 1, 10, 100 (the validator picks its path by size)
The pydantic model is written by hand to carry the same rules as contracts/transactions.yaml
(types, required, min/max, enums, patterns, e-mail/uuid formats, maxLength; no uniqueness or
future-time rule, which per-record models cannot express). Timings are the best of --repeat
runs, cases interleaved, on one core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ROOT = Path(__file__).resolve().parents[1]
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class Txn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    txn_id: Annotated[str, Field(pattern=UUID)]
    user_id: Annotated[int, Field(ge=1)]
    merchant_id: Annotated[int, Field(ge=1)]
    amount: Annotated[float, Field(ge=0, le=50000)]
    currency: Literal["EUR", "USD", "GBP", "CHF", "JPY"]
    status: Literal["approved", "declined", "reversed"]
    card_country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    channel: Literal["pos", "ecom", "atm"] | None = None
    customer_email: Annotated[str, Field(pattern=EMAIL, max_length=254)] | None = None
    event_time: dt.datetime


def per_record_json(raws):
    ok = bad = 0
    for r in raws:
        try:
            Txn.model_validate_json(r)
            ok += 1
        except Exception:
            bad += 1
    return ok, bad


def per_record_dict(dicts):
    ok = bad = 0
    for d in dicts:
        try:
            Txn.model_validate(d)
            ok += 1
        except Exception:
            bad += 1
    return ok, bad


def once(fn, min_time: float = 0.1) -> float:
    """Seconds per call, over a round of at least `min_time`."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= min_time:
            return el / n


def best_pair(ours, base, repeat: int) -> tuple[float, float]:
    """Best time of each over `repeat` rounds, the two alternating so that a slow phase of
    a shared machine hits both alike."""
    t_o = t_b = float("inf")
    for _ in range(repeat):
        t_o = min(t_o, once(ours))
        t_b = min(t_b, once(base))
    return t_o, t_b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bad-share", type=float, default=0.02)
    ap.add_argument("--repeat", type=int, default=9)
    a = ap.parse_args()

    from featureline.compiler import compile_project
    from featureline.contracts import ContractValidator
    from featureline.generator import live_events

    plan = compile_project(ROOT)
    v = ContractValidator(plan.contracts["transactions"])
    start = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
    events = live_events(10_000, start=start, bad_share=a.bad_share)
    raws = [e.value for e in events]
    now = max(e.event_time_us for e in events if e.bad_kind is None) + 1

    # a decoded batch: the rows that parse as JSON objects, as an Arrow table of strings/numbers
    dicts = []
    for r in raws:
        try:
            d = json.loads(r)
        except ValueError:
            continue
        if isinstance(d, dict):
            dicts.append(d)
    # the decoded batch: every message decoded to typed columns (what a batch engine reads from parquet)
    table, _ = v._rows_to_table(v.decoder.decode(raws).rows)

    rows = []

    def case(name, n, ours, base):
        t_o, t_b = best_pair(ours, base, a.repeat)
        rows.append((name, n / t_o, n / t_b, t_b / t_o))

    case(f"checks, decoded batch ({table.num_rows:,} rows)", table.num_rows, lambda: v.validate_table(table, now=now), lambda: per_record_dict(dicts))
    case("json bytes -> validated batch (10k)", len(raws), lambda: v.validate_json(raws, now=now).valid, lambda: per_record_json(raws))
    for n in (100, 10, 1):
        b = raws[:n]
        case(f"json, batch of {n}", n, lambda b=b: v.validate_json(b, now=now), lambda b=b: per_record_json(b))

    res = v.validate_json(raws, now=now)
    print(f"contract transactions, {len(raws):,} generated events, {res.n_invalid} invalid ({a.bad_share:.0%} bad share); python {sys.version.split()[0]}")
    print(f"{'case':<44} {'ours rows/s':>14} {'pydantic rows/s':>16} {'ratio':>7}")
    for name, o, b, r in rows:
        print(f"{name:<44} {o:>14,.0f} {b:>16,.0f} {r:>6.2f}x")


if __name__ == "__main__":
    main()
