"""`featureline serve` against the real Redis: /features/online equals OnlineStore.get, Feast's
/get-online-features shape for a service and for a feature list, 4xx validation, readiness,
metrics, the OpenAPI document, Redis down -> 503, and the CLI process starting and stopping."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from tests.integration.serving import Server, drop_prefix, free_port, make_project

from featureline.batch.engine import BatchEngine
from featureline.online.store import OnlineStore
from featureline.plan import ServicePlan
from featureline.serve import create_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def online(tmp_path_factory, services):
    d = tmp_path_factory.mktemp("serve")
    plan, engine, store, T = make_project(d, services.redis_port)
    yield d, plan, engine, store, T
    drop_prefix(store)


@pytest.fixture(scope="module")
def http(online):
    d, plan, *_ = online
    with Server(create_app(plan, max_entities=50)) as client:
        yield client


def _rows(n=30, seed=3):
    rnd = random.Random(seed)
    return [{"user_id": rnd.randint(1, 130), "merchant_id": rnd.randint(1, 22)} for _ in range(n)]  # some never seen


def _batch(engine, plan, refs, rows, at):
    """Values from the batch engine (a service made of `refs`), as of `at`: an independent reference."""
    keys = [k for r in refs for k in plan.views[r.split(":")[0]].join_keys]
    svc = ServicePlan("t", tuple(refs), tuple(dict.fromkeys(keys)))
    p = dataclasses.replace(plan, services={**plan.services, "t": svc})
    spine = {k: [r[k] for r in rows] for k in svc.join_keys}
    spine["ts"] = pa.array([at] * len(rows), pa.timestamp("us", tz="UTC"))
    return BatchEngine(p).historical(pa.table(spine), "t", at_column="ts").to_pydict()


def _columns(resp: dict) -> dict[str, list]:
    return {k: [r[k] for r in resp["rows"]] for k in [*resp["join_keys"], *resp["features"]]}


def test_features_online_equals_online_store(online, http):
    d, plan, engine, store, T = online
    rows = _rows()
    want = store.get("fraud_detection", rows, at_us=T)
    for at in (T, dt.datetime.fromtimestamp(T / 1e6, dt.UTC).isoformat()):
        r = http.post("/features/online", json={"service": "fraud_detection", "entities": rows, "at": at})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["service"] == "fraud_detection" and body["join_keys"] == ["user_id", "merchant_id"]
        assert body["features"] == [plan.feature(ref).name for ref in plan.services["fraud_detection"].features]
        assert list(body["rows"][0]) == list(want)  # join keys first, then features in order
        assert _columns(body) == want
    # the columns form answers the same
    cols = {"user_id": [r["user_id"] for r in rows], "merchant_id": [r["merchant_id"] for r in rows]}
    r = http.post("/features/online", json={"service": "fraud_detection", "entities": cols, "at": T})
    assert _columns(r.json()) == want
    assert any(v is not None for v in want["country"]) and any(v for v in want["count_7d"])
    # as of now (no `at`): equal to a read just before or just after (a hop may tick in between)
    users = [{"user_id": r["user_id"]} for r in rows[:5]]
    before = store.get("user_activity", users)
    r = http.post("/features/online", json={"service": "user_activity", "entities": users})
    after = store.get("user_activity", users)
    got = _columns(r.json())
    assert got in (before, after)
    assert r.json()["at"].endswith("Z")


def test_feature_list_with_timestamps_and_clashing_names(online, http):
    d, plan, engine, store, T = online
    rows = _rows(20, seed=5)
    refs = ["user_profile:signup_time", "merchant_profile:risk_tier", "user_transactions:count_1h", "merchant_counts:count_1h"]
    r = http.post("/features/online", json={"features": refs, "entities": rows, "at": T})
    assert r.status_code == 400 and "count_1h" in r.json()["error"] and "full_feature_names" in r.json()["error"]
    r = http.post("/features/online", json={"features": refs, "entities": rows, "at": T, "full_feature_names": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["service"] is None and body["join_keys"] == ["user_id", "merchant_id"]
    assert body["features"] == [
        "user_profile__signup_time",
        "merchant_profile__risk_tier",
        "user_transactions__count_1h",
        "merchant_counts__count_1h",
    ]
    got = _columns(body)
    a = _batch(engine, plan, refs[:3], rows, T)
    b = _batch(engine, plan, refs[3:], rows, T)
    assert got["user_profile__signup_time"] == [None if v is None else v.isoformat().replace("+00:00", "Z") for v in a["signup_time"]]
    assert any(v is not None for v in got["user_profile__signup_time"])
    assert got["merchant_profile__risk_tier"] == a["risk_tier"]
    assert got["user_transactions__count_1h"] == a["count_1h"]
    assert got["merchant_counts__count_1h"] == b["count_1h"]
    assert got["user_transactions__count_1h"] != got["merchant_counts__count_1h"]


def test_list_features_are_json_arrays(online, http):
    """last_k/first_k values: JSON arrays (timestamps as RFC 3339 strings), null for an empty
    window, equal to the batch engine's lists; Feast's shape gives timestamps as epoch seconds."""
    d, plan, engine, store, T = online
    rows = _rows(20, seed=5) + [{"user_id": 999_999, "merchant_id": 1}]
    refs = ["user_recent:card_country_last_k_1d", "user_recent:event_time_first_k_1d"]
    users = [{"user_id": r["user_id"]} for r in rows]
    r = http.post("/features/online", json={"features": refs, "entities": users, "at": T})
    assert r.status_code == 200, r.text
    got = _columns(r.json())
    want = _batch(engine, plan, refs, users, T)
    iso = lambda v: v.isoformat().replace("+00:00", "Z")  # noqa: E731
    assert got["card_country_last_k_1d"] == want["card_country_last_k_1d"]
    assert got["event_time_first_k_1d"] == [None if v is None else [iso(x) for x in v] for v in want["event_time_first_k_1d"]]
    assert got["card_country_last_k_1d"][-1] is None  # never seen: an empty window
    assert max(len(v or ()) for v in got["card_country_last_k_1d"]) == 3
    ents = {"user_id": [u["user_id"] for u in users]}
    names, results = _feast(http, {"features": refs, "entities": ents})
    stamps = dict(zip(names, results, strict=True))["event_time_first_k_1d"]["values"]
    assert stamps == [None if v is None else [int(x.timestamp()) for x in v] for v in want["event_time_first_k_1d"]]


def _feast(http, body):
    r = http.post("/get-online-features", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"metadata", "results"}
    names = out["metadata"]["feature_names"]
    assert len(out["results"]) == len(names)
    for res in out["results"]:
        assert set(res) == {"values", "statuses", "event_timestamps"}
    return names, out["results"]


def test_feast_shape_for_a_service(online, http):
    d, plan, engine, store, T = online
    rows = _rows(12, seed=7)
    ents = {"user_id": [r["user_id"] for r in rows], "merchant_id": [r["merchant_id"] for r in rows]}
    before = store.get("fraud_detection", rows)
    names, results = _feast(http, {"feature_service": "fraud_detection", "entities": ents, "full_feature_names": False})
    after = store.get("fraud_detection", rows)
    assert names == list(before)  # join keys first, then the service's features
    got = {n: res["values"] for n, res in zip(names, results, strict=True)}
    assert got in (before, after)
    for n, res in zip(names, results, strict=True):
        assert len(res["values"]) == len(res["statuses"]) == len(res["event_timestamps"]) == len(rows)
        if n in ents:
            assert res["statuses"] == ["PRESENT"] * len(rows) and set(res["event_timestamps"]) == {"1970-01-01T00:00:00Z"}
            continue
        for v, s, ts in zip(res["values"], res["statuses"], res["event_timestamps"], strict=True):
            assert s == ("NOT_FOUND" if v is None else "PRESENT")
            assert (ts == "1970-01-01T00:00:00Z") == (v is None)
            if v is not None:  # the read time, RFC 3339 like Feast's
                assert ts.endswith("Z") and abs(dt.datetime.fromisoformat(ts).timestamp() - time.time()) < 60
    assert "NOT_FOUND" in {s for res in results for s in res["statuses"]}  # unseen users have no country
    # full names: view__feature; join keys unchanged
    names, _ = _feast(http, {"feature_service": "user_activity", "entities": {"user_id": [1, 2]}, "full_feature_names": True})
    assert names == ["user_id", "user_transactions__count_1h", "user_transactions__amount_sum_24h"]


def test_feast_shape_for_a_feature_list(online, http):
    """What Feast's remote online store client sends: a features list, plain names, extra fields."""
    d, plan, engine, store, T = online
    rows = _rows(10, seed=11)
    refs = ["user_transactions:count_7d", "user_profile:signup_time", "user_profile:country"]
    body = {"features": refs, "entities": {"user_id": [r["user_id"] for r in rows]}, "include_feature_view_version_metadata": False}
    names, results = _feast(http, body)
    assert names == ["user_id", "count_7d", "signup_time", "country"]
    got = {n: res["values"] for n, res in zip(names, results, strict=True)}
    assert got["user_id"] == [r["user_id"] for r in rows]
    want = _batch(engine, plan, refs[1:], rows, T)
    assert got["signup_time"] == [None if v is None else int(v.timestamp()) for v in want["signup_time"]]  # Feast: epoch seconds
    assert got["country"] == want["country"]
    before = store.get("fraud_detection", rows)["count_7d"]
    assert got["count_7d"] == before or got["count_7d"] == store.get("fraud_detection", rows)["count_7d"]


BAD = [
    ("malformed json", "/features/online", b'{"service": "fraud_detection", "entities": [', 400, "malformed JSON"),
    ("not an object", "/features/online", b"[1, 2]", 400, "JSON object"),
    ("empty body", "/get-online-features", b"", 400, "empty body"),
    ("no service", "/features/online", {"entities": [{"user_id": 1}]}, 400, "features"),
    ("no entities", "/features/online", {"service": "user_activity"}, 400, "entities"),
    ("unknown service", "/features/online", {"service": "fraud_detect", "entities": []}, 404, "did you mean `fraud_detection`"),
    ("huge body", "/features/online", b'{"service": "user_activity", "entities": [' + b" " * (5 << 20) + b"]}", 413, "the limit is 1,048,576"),
    (
        "unknown feast service",
        "/get-online-features",
        {"feature_service": "nope", "entities": {"user_id": [1]}},
        404,
        "no feature service `nope`",
    ),
    (
        "missing key",
        "/features/online",
        {"service": "fraud_detection", "entities": [{"user_id": 1, "merchant_id": 2}, {"user_id": 1}]},
        422,
        "entity row 1 lacks join key `merchant_id`",
    ),
    (
        "missing column",
        "/get-online-features",
        {"feature_service": "fraud_detection", "entities": {"user_id": [1]}},
        422,
        "lacks join key(s) merchant_id",
    ),
    (
        "extra key",
        "/features/online",
        {"service": "user_activity", "entities": [{"user_id": 1, "merchant_id": 2}]},
        422,
        "unknown key(s) 'merchant_id'",
    ),
    (
        "extra column",
        "/get-online-features",
        {"feature_service": "user_activity", "entities": {"user_id": [1], "card": [2]}},
        422,
        "unknown join key(s) 'card'",
    ),
    (
        "wrong key type",
        "/features/online",
        {"service": "user_activity", "entities": [{"user_id": 1}, {"user_id": "42"}]},
        422,
        'entity row 1: join key `user_id` must be an integer, got "42" (string)',
    ),
    (
        "float key",
        "/get-online-features",
        {"feature_service": "user_activity", "entities": {"user_id": [1, 2, 3.5]}},
        422,
        "entity row 2: join key `user_id` must be an integer, got 3.5",
    ),
    ("bool key", "/features/online", {"service": "user_activity", "entities": [{"user_id": True}]}, 422, "must be an integer"),
    (
        "ragged columns",
        "/get-online-features",
        {"feature_service": "fraud_detection", "entities": {"user_id": [1, 2], "merchant_id": [1]}},
        422,
        "different lengths",
    ),
    (
        "too many",
        "/features/online",
        {"service": "user_activity", "entities": [{"user_id": i} for i in range(51)]},
        413,
        "51 entity rows in one request; the limit is 50",
    ),
    (
        "too many columns",
        "/get-online-features",
        {"feature_service": "user_activity", "entities": {"user_id": list(range(51))}},
        413,
        "the limit is 50",
    ),
    (
        "unknown feature",
        "/get-online-features",
        {"features": ["user_transactions:count_2h"], "entities": {"user_id": [1]}},
        404,
        "has no feature `count_2h` (did you mean",
    ),
    (
        "unknown view",
        "/features/online",
        {"features": ["user_transaction:count_1h"], "entities": [{"user_id": 1}]},
        404,
        "no feature view `user_transaction`",
    ),
    ("bad ref", "/features/online", {"features": ["count_1h"], "entities": [{"user_id": 1}]}, 400, '"view:feature"'),
    ("bad at", "/features/online", {"service": "user_activity", "entities": [{"user_id": 1}], "at": "yesterday"}, 422, "cannot parse time"),
]


@pytest.mark.parametrize("path, body, status, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests(http, path, body, status, message):
    if isinstance(body, bytes):
        r = http.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = http.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"]


def test_health_ready_metrics_openapi(http):
    assert http.get("/health").status_code == 200
    r = http.get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    http.post("/features/online", json={"service": "user_activity", "entities": [{"user_id": 3}]})
    http.post("/features/online", json={"service": "nope", "entities": []})
    text = http.get("/metrics").text
    assert "# TYPE featureline_http_request_duration_seconds histogram" in text
    assert 'featureline_http_request_duration_seconds_bucket{endpoint="/features/online",le="0.001"}' in text
    assert 'featureline_http_requests_total{endpoint="/features/online",status="200"}' in text
    assert 'featureline_http_requests_total{endpoint="/features/online",status="404"}' in text
    assert "featureline_redis_errors_total" in text
    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/features/online", "/get-online-features", "/health", "/ready", "/metrics", "/openapi.json"} <= set(doc["paths"])
    assert (
        "fraud_detection"
        in doc["paths"]["/get-online-features"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"][
            "feature_service"
        ]["enum"]
    )


def test_ready_says_when_the_store_lost_its_data_or_is_being_built(online):
    """/ready reads the store's marker: a Redis without featureline's data (restarted empty, flushed)
    is not ready, and says how to rebuild; neither is one a backfill is still writing, nor one
    an older featureline wrote in another store format."""
    from featureline.online.layout import FORMAT
    from featureline.online.state import StoreStateError, begin_backfill, ensure_for_stream, finish_backfill, marker_key

    d, plan, *_ = online
    prefix = f"t{uuid.uuid4().hex[:8]}"
    other = dataclasses.replace(plan, project=dataclasses.replace(plan.project, redis_key_prefix=prefix))
    store = OnlineStore(other)
    try:
        with Server(create_app(other)) as http:
            r = http.get("/ready")
            assert r.status_code == 503 and "holds no featureline data" in r.json()["error"] and "backfill --to online" in r.json()["error"]
            sid = begin_backfill(store.client, prefix)
            r = http.get("/ready")
            assert r.status_code == 503 and "a backfill to online is writing" in r.json()["error"]
            finish_backfill(store.client, prefix, sid)
            assert http.get("/ready").status_code == 200
            store.client.hdel(marker_key(prefix), "format")  # a store an older featureline wrote (format 1: hashes)
            r = http.get("/ready")
            assert r.status_code == 503 and "store format 1" in r.json()["error"] and "backfill --to online" in r.json()["error"]
            with pytest.raises(StoreStateError, match="store format 1"):  # and the stream will not write it
                ensure_for_stream(store.client, prefix, has_history=True, group="g")
            store.client.hset(marker_key(prefix), "format", FORMAT)
            assert http.get("/ready").status_code == 200
            store.client.delete(marker_key(prefix))  # what a Redis restarted without its data looks like
            assert http.get("/ready").status_code == 503
    finally:
        store.client.delete(marker_key(prefix))


def test_redis_down_is_503(online):
    """A Redis that refuses connections: 503 at once, naming the kind of error, never the URL
    (it may carry a password) nor the host and port."""
    d, plan, *_ = online
    port = free_port()
    dead = dataclasses.replace(plan, project=dataclasses.replace(plan.project, redis_url=f"redis://:s3cret-pw@127.0.0.1:{port}/0"))
    t0 = time.perf_counter()
    with Server(create_app(dead)) as http:
        assert http.get("/health").status_code == 200
        r = http.get("/ready")
        assert r.status_code == 503 and "unavailable (ConnectionError)" in r.json()["error"]
        assert "s3cret" not in r.text and str(port) not in r.text and "127.0.0.1" not in r.text
        r = http.post("/features/online", json={"service": "user_activity", "entities": [{"user_id": 1}]})
        assert r.status_code == 503 and "unavailable" in r.json()["error"]
        assert "s3cret" not in r.text and str(port) not in r.text and "127.0.0.1" not in r.text
        r = http.post("/get-online-features", json={"feature_service": "user_activity", "entities": {"user_id": [1]}})
        assert r.status_code == 503
        r = http.post("/features/online", json={"service": "user_activity", "entities": [{"user_id": "x"}]})
        assert r.status_code == 422  # validated before Redis is asked
        assert 'featureline_redis_errors_total{error="ConnectionError"}' in http.get("/metrics").text
    assert time.perf_counter() - t0 < 5  # no retry backoff: an outage answers at once


def _cli(project: Path, port: int, *extra: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("featureline")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "featureline"]
    return subprocess.Popen(
        [*cmd, "serve", "--port", str(port), "-p", str(project), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_health(proc: subprocess.Popen, port: int) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no /health answer: {proc.stdout.read()}")


@pytest.mark.parametrize("workers", [1, 2])
def test_cli_serve_starts_and_stops_on_sigterm(online, workers):
    d, *_ = online
    port = free_port()
    proc = _cli(d, port, "--workers", str(workers))
    try:
        _wait_health(proc, port)
        r = httpx.post(
            f"http://127.0.0.1:{port}/features/online", json={"service": "user_activity", "entities": [{"user_id": 1}]}, timeout=5
        )
        assert r.status_code == 200, r.text
        if workers > 1:  # one /metrics over every worker
            assert (
                'featureline_http_requests_total{endpoint="/features/online",status="200"}'
                in httpx.get(f"http://127.0.0.1:{port}/metrics").text
            )
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode in (0, -signal.SIGTERM), out  # uvicorn re-raises the signal after a clean shutdown
        assert "Uvicorn running on" in out and "Finished server process" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)


def test_async_sdk_read_equals_the_sync_read(online):
    """`await FeatureStore.get_online_features_async(...)` (what `serve` uses): the same values as
    the sync read, concurrent calls on one loop, and a Redis that lost its scripts reloads them."""
    import asyncio

    from featureline import FeatureStore

    d, plan, *_ = online
    fs = FeatureStore(d)
    rows = _rows(20)

    async def main():
        try:
            first = await fs.get_online_features_async("fraud_detection", rows)
            fs.online.client.script_flush()
            many = await asyncio.gather(*(fs.get_online_features_async("fraud_detection", [r]) for r in rows))
            table = await fs.get_online_features_async("fraud_detection", rows, to_arrow=True)
            return first, many, table
        finally:
            await fs.aclose()

    first, many, table = asyncio.run(main())
    sync = fs.get_online_features("fraud_detection", rows)
    assert first == sync
    assert len(many) == len(rows) and all(m == {k: [v[i]] for k, v in sync.items()} for i, m in enumerate(many))
    assert table.to_pydict() == sync
