"""The example-data generator: deterministic, typed as the contracts say, realistic, and its
live stream carries every kind of bad record while its good records pass every contract rule."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from ruamel.yaml import YAML

from featureline import generator as g
from featureline.timeutil import DAY, MINUTE, to_us

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "contracts"
END = datetime(2026, 11, 1, tzinfo=UTC)
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SMALL = dict(users=500, merchants=60, events=20_000, days=10)
ARROW = {"integer": pa.int64(), "number": pa.float64(), "string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC")}


def load_contract(name: str) -> dict:
    with open(CONTRACTS / f"{name}.yaml") as fh:
        return YAML(typ="safe").load(fh)


def props(contract: dict) -> list[dict]:
    return contract["schema"][0]["properties"]


def valid_values(prop: dict) -> list | None:
    for q in prop.get("quality") or []:
        if q.get("metric") == "invalidValues":
            return list(q["arguments"]["validValues"])
    return None


def custom(contract: dict, name: str):
    return next(p["value"] for p in contract.get("customProperties") or [] if p["property"] == name)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("hist")
    info = g.write_history(root, seed=3, end=END, **SMALL)
    return root, info


@pytest.fixture(scope="module")
def transactions(history) -> pa.Table:
    return pq.read_table(history[0] / "data" / "history" / "transactions")


@pytest.fixture(scope="module")
def live() -> list[g.LiveEvent]:
    return g.live_events(50 * len(g.BAD_KINDS) * 2, seed=11, start=START, rate_per_s=20.0)


# --- history ---


def test_history_is_deterministic(tmp_path, history):
    root, info = history
    again = g.write_history(tmp_path, seed=3, end=END, **SMALL)
    assert {k: v for k, v in again.items() if not k.endswith(("files", "path"))} == {
        k: v for k, v in info.items() if not k.endswith(("files", "path"))
    }
    for rel in ("transactions/part-00000.parquet", "users.parquet", "merchants.parquet"):
        assert pq.read_table(root / "data/history" / rel).equals(pq.read_table(tmp_path / "data/history" / rel)), rel
    other = g.write_history(tmp_path / "other", seed=4, end=END, **SMALL)
    assert other["transactions"] == info["transactions"]
    assert not pq.read_table(tmp_path / "other/data/history/transactions").equals(pq.read_table(root / "data/history/transactions"))


def test_history_parts_and_counts(tmp_path, monkeypatch):
    info = g.write_history(tmp_path, users=50, merchants=10, events=12_000, days=3, end=END)
    assert len(info["transaction_files"]) == 1
    # more rows than a part holds -> several parts, all rows kept; a rewrite replaces old parts
    monkeypatch.setattr(g, "ROWS_PER_PART", 5_000)
    info = g.write_history(tmp_path, users=50, merchants=10, events=12_000, days=3, end=END)
    files = sorted((tmp_path / "data/history/transactions").glob("*.parquet"))
    assert [str(f) for f in files] == info["transaction_files"] and len(files) == 3
    assert pq.read_table(tmp_path / "data/history/transactions").num_rows == 12_000
    g.write_history(tmp_path, users=50, merchants=10, events=100, days=3, end=END)
    assert len(list((tmp_path / "data/history/transactions").glob("*.parquet"))) == 1


@pytest.mark.parametrize("name,rel", [("transactions", "transactions"), ("users", "users.parquet"), ("merchants", "merchants.parquet")])
def test_history_schema_matches_contract(history, name, rel):
    root, _ = history
    table = pq.read_table(root / "data/history" / rel)
    ps = props(load_contract(name))
    assert table.column_names == [p["name"] for p in ps]
    for p in ps:
        col = table[p["name"]]
        assert col.type == ARROW[p["logicalType"]], p["name"]
        if p.get("required"):
            assert col.null_count == 0, p["name"]
        opts = p.get("logicalTypeOptions") or {}
        if "minimum" in opts:
            assert pc.min(col).as_py() >= opts["minimum"], p["name"]
        if "maximum" in opts:
            assert pc.max(col).as_py() <= opts["maximum"], p["name"]
        if "pattern" in opts:
            assert pc.all(pc.match_substring_regex(col.drop_null(), opts["pattern"])).as_py(), p["name"]
        allowed = valid_values(p)
        if allowed is not None:
            assert set(pc.unique(col.drop_null()).to_pylist()) <= set(allowed), p["name"]
        if opts.get("format") == "email":
            assert pc.all(pc.match_substring_regex(col.drop_null(), r"^[^@\s]+@[^@\s]+\.[a-z]+$")).as_py()
            assert pc.max(pc.utf8_length(col)).as_py() <= opts.get("maxLength", 254)
        if opts.get("format") == "uuid":
            ids = col.to_pylist()
            assert len(set(ids)) == len(ids)
            assert all(str(uuid.UUID(s)) == s for s in ids[:2000])


def test_history_shape(history, transactions):
    root, info = history
    t = transactions
    n = t.num_rows
    assert n == SMALL["events"] == info["transactions"]
    ev = t["event_time"].cast(pa.int64()).to_numpy()
    end_us = to_us(END)
    assert ev.min() >= end_us - SMALL["days"] * DAY and ev.max() < end_us
    assert (np.diff(ev) >= 0).all()  # written in event-time order
    status = Counter(t["status"].to_pylist())
    assert 0.03 < status["declined"] / n < 0.08 and 0.004 < status["reversed"] / n < 0.02
    for c in ("card_country", "channel", "customer_email"):
        assert 0 < t[c].null_count < 0.1 * n, c

    users = t["user_id"].to_numpy()
    counts = np.bincount(users, minlength=SMALL["users"] + 1)[1:]
    assert (counts == 0).sum() >= 5 and info["users_without_transactions"] == (counts == 0).sum()
    top = np.sort(counts)[::-1]
    assert top[: SMALL["users"] // 10].sum() > 0.3 * n  # the busiest 10% of users make > 30% of payments
    assert np.median(counts) < n / SMALL["users"]  # the typical user is light

    # ties: the same user, the identical instant
    pairs = Counter(zip(users.tolist(), ev.tolist(), strict=True))
    assert sum(1 for c in pairs.values() if c > 1) >= 5

    # bursts: some user has many payments within 10 minutes
    key = users.astype(np.int64) * (100 * DAY) + (ev - ev.min())  # per user, in time order
    key.sort()
    ahead = np.searchsorted(key, key + 10 * MINUTE)
    in_10m = ahead - np.arange(len(key))
    assert in_10m.max() >= 8

    # diurnal rhythm: the busiest hour has far more than the quietest
    hours = np.bincount((ev // (3600 * 10**6)) % 24, minlength=24)
    assert hours.max() > 5 * hours.min()

    amount = t["amount"].to_numpy()
    assert np.median(amount) < amount.mean()  # right-skewed (lognormal)


def test_users_and_merchants_rows(history):
    root, info = history
    users = pq.read_table(root / "data/history/users.parquet")
    uid = users["user_id"].to_numpy()
    assert set(uid.tolist()) == set(range(1, SMALL["users"] + 1))
    assert users.num_rows > SMALL["users"] == info["users"] and users.num_rows == info["user_rows"]
    upd = users["updated_at"].cast(pa.int64()).to_numpy()
    signup = users["signup_time"].cast(pa.int64()).to_numpy()
    assert (signup < upd).all()
    same = uid[1:] == uid[:-1]
    assert (np.diff(uid) >= 0).all() and (upd[1:][same] > upd[:-1][same]).all()
    assert (signup[1:][same] == signup[:-1][same]).all()  # signup does not change

    merchants = pq.read_table(root / "data/history/merchants.parquet")
    mid = merchants["merchant_id"].to_numpy()
    assert set(mid.tolist()) == set(range(1, SMALL["merchants"] + 1)) and merchants.num_rows > SMALL["merchants"]
    mu = merchants["updated_at"].cast(pa.int64()).to_numpy()
    same = mid[1:] == mid[:-1]
    assert (mu[1:][same] > mu[:-1][same]).all()


def test_end_defaults_to_fixed_instant(tmp_path):
    info = g.write_history(tmp_path, users=20, merchants=5, events=50, days=1)
    assert info["end"] == g.DEFAULT_END == datetime(2026, 11, 1, tzinfo=UTC)


def test_generator_constants_match_contracts():
    tx = {p["name"]: p for p in props(load_contract("transactions"))}
    assert tuple(tx) == g.TRANSACTION_FIELDS
    assert tuple(valid_values(tx["currency"])) == g.CURRENCIES
    assert tuple(valid_values(tx["status"])) == g.STATUSES
    assert tuple(valid_values(tx["channel"])) == g.CHANNELS
    assert tx["amount"]["logicalTypeOptions"] == {"minimum": g.AMOUNT_MIN, "maximum": g.AMOUNT_MAX}
    assert {n for n, p in tx.items() if not p.get("required")} == set(g.OPTIONAL_TRANSACTION_FIELDS)
    m = {p["name"]: p for p in props(load_contract("merchants"))}
    assert tuple(valid_values(m["category"])) == g.CATEGORIES
    assert (m["risk_tier"]["logicalTypeOptions"]["minimum"], m["risk_tier"]["logicalTypeOptions"]["maximum"]) == (
        g.RISK_TIER_MIN,
        g.RISK_TIER_MAX,
    )
    u = {p["name"]: p for p in props(load_contract("users"))}
    assert tuple(valid_values(u["risk_segment"])) == g.RISK_SEGMENTS


# --- live events ---


class ContractChecker:
    """A small, independent reading of contracts/transactions.yaml: which rules does a message break?

    Returns names from BAD_KINDS; the stream's current time is the latest valid event time seen."""

    TYPES = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
             "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
             "string": lambda v: isinstance(v, str),
             "timestamp": lambda v: isinstance(v, str)}  # fmt: skip

    def __init__(self) -> None:
        c = load_contract("transactions")
        self.props = {p["name"]: p for p in props(c)}
        self.time_field = custom(c, "eventTimeField")
        self.reject_unknown = custom(c, "unknownFields") == "reject"
        skew = custom(c, "maxFutureSkew")
        assert skew == "5m"
        self.skew_us = 5 * MINUTE
        self.unique = [n for n, p in self.props.items() if p.get("unique")]
        self.seen: dict[str, set] = {n: set() for n in self.unique}
        self.now_us: int | None = None

    def check(self, value: bytes) -> set[str]:
        try:
            rec = json.loads(value)
        except ValueError:
            return {"malformed_json"}
        if not isinstance(rec, dict):
            return {"not_an_object"}
        out = set()
        if self.reject_unknown and set(rec) - set(self.props):
            out.add("unknown_field")
        for name, p in self.props.items():
            if name not in rec:
                if p.get("required"):
                    out.add("missing_required")
                continue
            v = rec[name]
            if v is None:
                if p.get("required"):
                    out.add("null_required")
                continue
            if not self.TYPES[p["logicalType"]](v):
                out.add("wrong_type")
                continue
            opts = p.get("logicalTypeOptions") or {}
            if "minimum" in opts and v < opts["minimum"]:
                out.add("below_minimum")
            if "maximum" in opts and v > opts["maximum"]:
                out.add("above_maximum")
            if "pattern" in opts and not re.fullmatch(opts["pattern"], v):
                out.add("pattern")
            if "maxLength" in opts and len(v) > opts["maxLength"]:
                out.add("max_length")
            if opts.get("format") == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}", v):
                out.add("format_email")
            if opts.get("format") == "uuid":
                try:
                    uuid.UUID(v)
                except ValueError:
                    out.add("format_uuid")
            allowed = valid_values(p)
            if allowed is not None and v not in allowed:
                out.add("enum")
        t = rec.get(self.time_field)
        t_us = None
        if isinstance(t, str):
            if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", t):
                out.add("bad_timestamp")
            else:
                t_us = to_us(t)
                if self.now_us is not None and t_us > self.now_us + self.skew_us:
                    out.add("future_event_time")
        for n in self.unique:
            v = rec.get(n)
            if isinstance(v, str) and v in self.seen[n]:
                out.add("duplicate_key")
        if not out:
            for n in self.unique:
                self.seen[n].add(rec[n])
            self.now_us = t_us if self.now_us is None else max(self.now_us, t_us)
        return out


def test_live_every_bad_kind_and_only_that_rule(live):
    checker = ContractChecker()
    kinds = Counter()
    for i, ev in enumerate(live):
        broken = checker.check(ev.value)
        if ev.bad_kind is None:
            assert broken == set(), (i, broken, ev.value)
        else:
            assert broken == {ev.bad_kind}, (i, ev.bad_kind, broken, ev.value)
            kinds[ev.bad_kind] += 1
    assert set(kinds) == set(g.BAD_KINDS)
    assert sum(kinds.values()) == round(len(live) * 0.02)


def test_every_kind_at_the_minimum_size():
    n = 50 * len(g.BAD_KINDS)
    evs = g.live_events(n, seed=1, start=START)
    assert {e.bad_kind for e in evs} - {None} == set(g.BAD_KINDS)
    assert all(e.bad_kind is None for e in g.live_events(200, seed=1, start=START, bad_share=0.0))


def test_live_is_deterministic_and_well_formed(live):
    again = g.live_events(len(live), seed=11, start=START, rate_per_s=20.0)
    assert again == live
    assert g.live_events(len(live), seed=12, start=START, rate_per_s=20.0) != live
    good = [e for e in live if e.bad_kind is None]
    times = [e.event_time_us for e in good]
    assert times[0] == to_us(START) and times == sorted(times)
    span_s = (times[-1] - times[0]) / 1e6
    assert math.isclose(span_s, len(live) / 20.0, rel_tol=0.15)  # ~20 events per second of event time
    for e in good:
        rec = json.loads(e.value)
        assert e.key == str(rec["user_id"]).encode("ascii")
        assert rec["event_time"].endswith("Z") and len(rec["event_time"]) == len("2026-11-01T12:00:00.123456Z")
        assert to_us(rec["event_time"]) == e.event_time_us
    # optional fields: sometimes null, sometimes absent
    recs = [json.loads(e.value) for e in good]
    assert any(r.get("customer_email", "") is None for r in recs) and any("customer_email" not in r for r in recs)
    by_kind = {e.bad_kind: e for e in live if e.bad_kind}
    assert by_kind["missing_required"].key is None
    fut = by_kind["future_event_time"]
    assert to_us(json.loads(fut.value)["event_time"]) == fut.event_time_us
    wrong = [json.loads(e.value) for e in live if e.bad_kind == "wrong_type"]
    assert any(r["amount"] == "12.3x" for r in wrong) and any(r["user_id"] == "abc" for r in wrong)


def test_live_users_share_the_history_population(history):
    root, _ = history
    emails = dict(
        zip(
            *[
                pq.read_table(root / "data/history/transactions", columns=["user_id", "customer_email"]).drop_null()[c].to_pylist()
                for c in ("user_id", "customer_email")
            ],
            strict=True,
        )
    )
    for e in g.live_events(300, seed=5, start=START, users=SMALL["users"], merchants=SMALL["merchants"], bad_share=0):
        r = json.loads(e.value)
        if r.get("customer_email") and r["user_id"] in emails:
            assert emails[r["user_id"]] == r["customer_email"]


def test_live_start_defaults_to_now():
    before = time.time_ns() // 1000
    ev = g.live_events(3, bad_share=0)
    assert before <= ev[0].event_time_us <= time.time_ns() // 1000


def test_cli_generate(tmp_path):
    from typer.testing import CliRunner

    from featureline.commands.generate import app

    runner = CliRunner()
    res = runner.invoke(app, ["history", "--root", str(tmp_path), "--events", "500", "--users", "40", "--merchants", "8", "--days", "2"])
    assert res.exit_code == 0, res.output
    assert "500" in res.output and (tmp_path / "data/history/users.parquet").exists()
    out = tmp_path / "live.jsonl"
    res = runner.invoke(app, ["live", "--count", "800", "--out", str(out), "--seed", "3"])
    assert res.exit_code == 0, res.output
    lines = out.read_bytes().splitlines()
    assert len(lines) == 800 and sum(1 for line in lines if line.startswith(b"[")) >= 1


def test_generate_live_runs_get_fresh_txn_ids_unless_seeded(tmp_path):
    """Two `generate live` runs without --seed send different txn_ids (before: a fixed default
    seed, so the second run's records were all dead-lettered as duplicates); the printed seed
    reproduces a run exactly."""
    import json
    import re

    from typer.testing import CliRunner

    from featureline.commands.generate import app

    runner = CliRunner()

    def run(*extra):
        out = tmp_path / f"live{len(list(tmp_path.iterdir()))}.jsonl"
        res = runner.invoke(app, ["live", "--count", "300", "--bad-share", "0", "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
        seed = int(re.search(r"seed (\d+)", res.output).group(1))
        return [json.loads(line)["txn_id"] for line in out.read_bytes().splitlines()], seed

    first, seed1 = run()
    second, _ = run()
    assert not set(first) & set(second)
    again, _ = run("--seed", str(seed1))
    assert again == first
