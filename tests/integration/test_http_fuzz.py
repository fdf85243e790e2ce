"""No client input gives a 500: the HTTP API fuzzed from its own OpenAPI document (schemathesis,
positive and negative cases for every operation, the schema loaded from the running server's
/openapi.json), then hand-made hostile requests schemathesis does not generate (deep nesting,
huge numbers and names, bad encodings, bodies over the limit sent chunked...).

Against the real Redis with a small backfilled project. What every answer must be:
status < 500 (Redis is up, so no 503 either); a 4xx is JSON `{"error": "..."}`; an error body
is small (no echo of what the client sent); and the server logs at most one line per request,
never a traceback.

Length: FEATURELINE_HTTP_FUZZ_EXAMPLES cases per operation and mode (default 300, derandomized:
about a minute in all); `make fuzz-http` runs 2,000 random ones.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from tests.integration.serving import Server, drop_prefix, make_project

from featureline.serve import create_app

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FEATURELINE_HTTP_FUZZ_EXAMPLES", "300"))
MAX_ERROR_BODY = 4096  # bytes: an error says what is wrong in a sentence, it does not echo the input
OPERATIONS = {
    ("POST", "/features/online"),
    ("POST", "/get-online-features"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
}


class _Records(logging.Handler):
    """Every record of the server's loggers (featureline.*, uvicorn.*: warnings and up), in order."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def project(tmp_path_factory, services):
    plan, _engine, store, _T = make_project(tmp_path_factory.mktemp("http-fuzz"), services.redis_port, events=2_000)
    yield plan
    drop_prefix(store)


@pytest.fixture(scope="module")
def server(project):
    s = Server(create_app(project))
    with s as client:
        s.url = f"http://127.0.0.1:{s.port}"
        s.http = client
        yield s


@pytest.fixture(scope="module")
def logs(server):
    """The server's log records (attached once uvicorn has configured its loggers)."""
    handler = _Records()
    ours, uv = logging.getLogger("featureline"), logging.getLogger("uvicorn")  # uvicorn.error propagates to uvicorn
    level = ours.level
    ours.setLevel(logging.INFO)
    for lg in (ours, uv):
        lg.addHandler(handler)
    yield handler
    for lg in (ours, uv):
        lg.removeHandler(handler)
    ours.setLevel(level)


def check_answer(status: int, ctype: str, body: bytes, new_logs: list[logging.LogRecord], what: str) -> None:
    """What every answer to any client input must be."""
    assert status < 500, f"{what}: {status} {body[:300]!r}"
    if 400 <= status < 500:
        assert ctype.startswith("application/json"), f"{what}: {status} with content-type {ctype!r}: {body[:200]!r}"
        doc = json.loads(body)
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str), f"{what}: {status} {body[:200]!r}"
        assert len(body) <= MAX_ERROR_BODY, f"{what}: a {len(body):,}-byte error body: {body[:200]!r}..."
    lines = [r.getMessage() for r in new_logs]
    assert not any(r.exc_info for r in new_logs), f"{what}: traceback logged: {lines[:1]}"
    assert len(new_logs) <= 1 and all("\n" not in x for x in lines), f"{what}: {len(new_logs)} log records: {lines[:3]}"


# -- schemathesis: every operation of the served document, positive and negative ------------------


# a schema-violating request must be refused with one of these (413: over a documented limit)
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 404, 413, 422]
"""


@pytest.fixture(scope="module")
def api_schema(server):
    config = schemathesis.Config.from_str(CONFIG)
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config, timeout=10)


def test_the_document_lists_every_endpoint(api_schema):
    ops = {(method.upper(), path) for path, item in api_schema.raw_schema["paths"].items() for method in item}
    assert ops == OPERATIONS  # a new endpoint: add it to OPERATIONS, the fuzz below covers it


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, negative_data_rejection]


SCHEMA_VIOLATIONS = [
    ("/get-online-features", {"feature_service": "user_activity", "features": None, "entities": {"user_id": [1]}}),
    ("/features/online", {"service": "user_activity", "features": None, "entities": [{"user_id": 1}], "at": None}),
    ("/features/online", {"service": "user_activity", "features": ["not a ref"], "entities": [{"user_id": 1}]}),
    ("/features/online", {"service": "user_activity", "entities": [{"user_id": 1}], "full_feature_names": None}),
]


@pytest.mark.parametrize("path, body", SCHEMA_VIOLATIONS, ids=[str(i) for i in range(len(SCHEMA_VIOLATIONS))])
def test_what_the_document_forbids_is_refused(api_schema, server, path, body):
    """A body the served document rejects is answered 4xx (or the document says what is accepted):
    schemathesis' negative_data_rejection, on the cases its random runs found."""
    import jsonschema

    doc = api_schema.raw_schema
    req = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    valid = jsonschema.Draft202012Validator({**req, "components": doc.get("components", {})}).is_valid(body)
    r = server.http.post(path, json=body)
    assert valid or 400 <= r.status_code < 500, f"the document forbids {body}, the server answered {r.status_code}"


# negative cases only where there is an input to violate (the POST bodies; the GETs take none)
FUZZ_CASES = [(m, p, GenerationMode.POSITIVE) for m, p in sorted(OPERATIONS)] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in sorted(OPERATIONS) if m == "POST"
]


@pytest.mark.parametrize("method, path, mode", FUZZ_CASES, ids=lambda x: str(x))
def test_fuzz_from_openapi(api_schema, server, logs, method, path, mode):
    """Schemathesis' cases for the operation (valid, or violating its schema): no 500, the answer
    matches the document, and check_answer's invariants hold."""
    op = api_schema[path][method]
    has_input = "requestBody" in api_schema.raw_schema["paths"][path][method.lower()]
    assert has_input == (method == "POST")  # FUZZ_CASES' rule holds for the served document
    session = requests.Session()  # closed below: no finalizers left for the GC

    @settings(
        max_examples=EXAMPLES if has_input else 3,
        deadline=None,
        database=None,
        derandomize=not os.environ.get("FEATURELINE_HTTP_FUZZ_EXAMPLES"),
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.target, Phase.shrink],
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case):
        logs.records.clear()
        response = case.call(base_url=server.url, session=session, timeout=30)
        check_answer(
            response.status_code,
            (response.headers.get("content-type") or [""])[0],
            response.content,
            list(logs.records),
            f"{method} {path} {case.body!r:.300}",
        )
        case.validate_response(response, checks=CHECKS)

    with session:
        run()


# -- hand-made hostile requests --------------------------------------------------------------------

USERS = '[{"user_id": 1}]'
MIB = 1 << 20


def _nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def _body(**fields) -> bytes:
    """A request body with raw JSON text per field (so invalid or huge values can be written)."""
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()


SVC = '"user_activity"'
HOSTILE = {
    # nesting
    "nested array 10k in entities": ("/features/online", _body(service=SVC, entities=_nested(10_000))),
    "nested array 100k in entities": ("/features/online", _body(service=SVC, entities=_nested(100_000))),
    "nested object 10k": ("/features/online", _body(service=SVC, entities=USERS, at='{"a": ' * 10_000 + "1" + "}" * 10_000)),
    "nested array 100k top level": ("/get-online-features", _nested(100_000).encode()),
    "nested array 100k as join key": ("/features/online", _body(service=SVC, entities=f'[{{"user_id": {_nested(100_000)}}}]')),
    # numbers
    "at 1e30": ("/features/online", _body(service=SVC, entities=USERS, at="1e30")),
    "at -1e30": ("/features/online", _body(service=SVC, entities=USERS, at="-1e30")),
    "at 10**30": ("/features/online", _body(service=SVC, entities=USERS, at=str(10**30))),
    "at -10**30": ("/features/online", _body(service=SVC, entities=USERS, at=str(-(10**30)))),
    "at 2**63": ("/features/online", _body(service=SVC, entities=USERS, at=str(2**63))),
    "at -2**63": ("/features/online", _body(service=SVC, entities=USERS, at=str(-(2**63)))),
    "at 10**17": ("/features/online", _body(service=SVC, entities=USERS, at=str(10**17))),
    "at -10**17": ("/features/online", _body(service=SVC, entities=USERS, at=str(-(10**17)))),
    "at 400 digits": ("/features/online", _body(service=SVC, entities=USERS, at="9" * 400)),
    "at 1e400": ("/features/online", _body(service=SVC, entities=USERS, at="1e400")),
    "at NaN": ("/features/online", _body(service=SVC, entities=USERS, at="NaN")),
    "at Infinity": ("/features/online", _body(service=SVC, entities=USERS, at="-Infinity")),
    "at year 9999": ("/features/online", _body(service=SVC, entities=USERS, at='"9999-12-31T23:59:59.999999Z"')),
    "at year 1": ("/features/online", _body(service=SVC, entities=USERS, at='"0001-01-01T00:00:00+14:00"')),
    "at 3 MB string": ("/features/online", _body(service=SVC, entities=USERS, at='"' + "7" * (3 * MIB) + '"')),
    "join key 400 digits": ("/features/online", _body(service=SVC, entities=f'[{{"user_id": {"9" * 400}}}]')),
    "join key -400 digits": ("/get-online-features", _body(feature_service=SVC, entities=f'{{"user_id": [-{"9" * 400}]}}')),
    "join key 2**64": ("/features/online", _body(service=SVC, entities=f'[{{"user_id": {2**64}}}]')),
    "join key -2**63-1": ("/get-online-features", _body(feature_service=SVC, entities=f'{{"user_id": [{-(2**63) - 1}]}}')),
    "join key 1e400": ("/features/online", _body(service=SVC, entities='[{"user_id": 1e400}]')),
    # names
    "3 MB feature name": ("/features/online", _body(features=json.dumps(["user_transactions:" + "x" * (3 * MIB)]), entities=USERS)),
    "3 MB view name": ("/get-online-features", _body(features=json.dumps(["v" * (3 * MIB) + ":count_1h"]), entities='{"user_id": [1]}')),
    "3 MB service name": ("/features/online", _body(service=json.dumps("s" * (3 * MIB)), entities=USERS)),
    "3 MB join key name": ("/features/online", _body(service=SVC, entities=json.dumps([{"k" * (3 * MIB): 1}]))),
    "3 MB column name": ("/get-online-features", _body(feature_service=SVC, entities=json.dumps({"k" * (3 * MIB): [1]}))),
    "100k unknown features": (
        "/features/online",
        _body(features=json.dumps([f"user_transactions:c{i}" for i in range(100_000)]), entities=USERS),
    ),
    "10k repeats of a feature": ("/features/online", _body(features=json.dumps(["user_transactions:count_1h"] * 10_000), entities=USERS)),
    "NUL in service": ("/features/online", _body(service='"user_activity\\u0000"', entities=USERS)),
    "NUL in feature": ("/features/online", _body(features='["user_transactions:count_1h\\u0000"]', entities=USERS)),
    "raw NUL byte": ("/features/online", b'{"service": "user_\x00activity", "entities": []}'),
    "lone surrogate service": ("/features/online", _body(service='"\\ud800"', entities=USERS)),
    "lone surrogate feature": ("/features/online", _body(features='["user_transactions:\\udfff"]', entities=USERS)),
    "lone surrogate view": ("/get-online-features", _body(features='["\\ud800:count_1h"]', entities='{"user_id": [1]}')),
    "lone surrogate at": ("/features/online", _body(service=SVC, entities=USERS, at='"\\ud800"')),
    "lone surrogate join key name": ("/features/online", _body(service=SVC, entities='[{"\\ud800": 1}]')),
    "lone surrogate join key": ("/features/online", _body(service=SVC, entities='[{"user_id": "\\ud800"}]')),
    "lone surrogate object key": ("/features/online", b'{"\\ud800": 1, "service": "user_activity", "entities": []}'),
    # encodings and shapes
    "invalid UTF-8": ("/features/online", b'{"service": "\xff\xfe\xc3", "entities": []}'),
    "invalid UTF-8 in key": ("/get-online-features", b'{"feature_service": "user_activity", "entities": {"\xc0\xaf": [1]}}'),
    "UTF-16 body": ("/features/online", json.dumps({"service": "user_activity", "entities": [{"user_id": 1}]}).encode("utf-16")),
    "BOM": ("/features/online", b"\xef\xbb\xbf" + _body(service=SVC, entities=USERS)),
    "duplicate keys": (
        "/features/online",
        b'{"service": "user_activity", "service": "nope", "entities": [], "entities": {"user_id": [1]}}',
    ),
    "a string": ("/features/online", b'"hello"'),
    "null": ("/get-online-features", b"null"),
    "trailing garbage": ("/features/online", _body(service=SVC, entities=USERS) + b" }{"),
    "10^6 entities as rows": ("/features/online", _body(service=SVC, entities="[" + ",".join(["{}"] * 1_000_000) + "]")),
    "10^6 entities as columns": (
        "/get-online-features",
        _body(feature_service=SVC, entities='{"user_id": [' + ",".join(["1"] * 1_000_000) + "]}"),
    ),
    "10^6 nulls": ("/features/online", _body(service=SVC, entities="[" + ",".join(["null"] * 1_000_000) + "]")),
    "entities object of non-lists": ("/get-online-features", _body(feature_service=SVC, entities='{"user_id": {"a": 1}}')),
    "full_feature_names string": ("/features/online", _body(service=SVC, entities=USERS, full_feature_names='"yes"')),
    "features an object": ("/features/online", _body(features='{"a": 1}', entities=USERS)),
    "service and features": ("/features/online", _body(service=SVC, features='["user_transactions:count_1h"]', entities=USERS)),
}


@pytest.mark.parametrize("path, body", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_bodies(server, logs, path, body):
    logs.records.clear()
    r = server.http.post(path, content=body, headers={"content-type": "application/json"}, timeout=60)
    check_answer(r.status_code, r.headers.get("content-type", ""), r.content, list(logs.records), f"{path} {body[:80]!r}")


def test_huge_join_keys_and_times_are_refused(server):
    """Join keys outside int64 and read times outside a sane range are a 4xx, not a read."""
    for name in ("join key 400 digits", "join key 2**64", "join key -2**63-1", "at 10**17", "at -10**17"):
        path, body = HOSTILE[name]
        r = server.http.post(path, content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, f"{name}: {r.status_code} {r.text[:200]}"


@pytest.mark.parametrize("name", ["at year 9999", "at year 1", "at 2**63", "at -2**63"])
def test_a_time_at_the_edges_is_refused_or_answered_as_rfc3339(server, name):
    path, body = HOSTILE[name]
    r = server.http.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code < 500, r.text[:200]
    if r.status_code == 200:
        at = r.json()["at"]
        assert len(at.split("-")[0]) == 4 and dt.datetime.fromisoformat(at.replace("Z", "+00:00")), f"`at` {at!r} is not RFC 3339"


@pytest.mark.parametrize(
    "ctype",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin-1", None],
)
def test_content_types(server, logs, ctype):
    logs.records.clear()
    headers = {} if ctype is None else {"content-type": ctype}
    r = server.http.post("/features/online", content=_body(service=SVC, entities=USERS), headers=headers)
    check_answer(r.status_code, r.headers.get("content-type", ""), r.content, list(logs.records), f"content-type {ctype}")


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/features/online"), ("PUT", "/get-online-features"), ("POST", "/health"), ("GET", "/nope"), ("GET", "/features/online/x")],
)
def test_wrong_method_or_path_is_a_json_error(server, logs, method, path):
    logs.records.clear()
    r = server.http.request(method, path)
    assert r.status_code in (404, 405)
    check_answer(r.status_code, r.headers.get("content-type", ""), r.content, list(logs.records), f"{method} {path}")


def _raw(port: int, data: bytes, *, read_timeout: float = 10) -> bytes:
    """Send raw bytes, return what the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, rest = out.partition(b"\r\n\r\n")
                    n = next((int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")), None)
                    if n is not None and len(rest) >= n:
                        break
        except TimeoutError:
            pass
        return out


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1])


def _split(answer: bytes) -> tuple[int, dict, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.decode().strip().lower()] = v.decode().strip()
    if "content-length" in headers:  # the first answer's body (a pipelined answer may follow)
        body = body[: int(headers["content-length"])]
    return _status(answer), headers, body


REQ = b"POST /features/online HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
OK_BODY = _body(service=SVC, entities=USERS)
RAW = {
    "content-length -1": REQ + b"Content-Length: -1\r\n\r\n" + OK_BODY,
    "content-length not a number": REQ + b"Content-Length: abc\r\n\r\n" + OK_BODY,
    "content-length 30 digits": REQ + b"Content-Length: " + b"9" * 30 + b"\r\n\r\n" + OK_BODY,
    "content-length short": REQ + b"Content-Length: 5\r\n\r\n" + OK_BODY,
    "content-length twice": REQ + b"Content-Length: 2\r\nContent-Length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY,
    "chunked and content-length": REQ
    + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"%x\r\n" % len(OK_BODY)
    + OK_BODY
    + b"\r\n0\r\n\r\n",
    "bad chunk size": REQ + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + OK_BODY + b"\r\n0\r\n\r\n",
    "chunk size 2**64": REQ + b"Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n" + OK_BODY + b"\r\n0\r\n\r\n",
    "64 KiB header": REQ + b"X-Big: " + b"a" * 65536 + b"\r\nContent-Length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY,
    "1000 headers": REQ + b"".join(b"X-H%d: v\r\n" % i for i in range(1000)) + b"Content-Length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY,
    "64 KiB path": b"GET /health?" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP/0.9": b"GET /health\r\n\r\n",
    "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
}


@pytest.mark.parametrize("data", list(RAW.values()), ids=list(RAW))
def test_malformed_http(server, logs, data):
    """Broken framing is the HTTP layer's to refuse (400 or a closed connection), never a 500."""
    logs.records.clear()
    answer = _raw(server.port, data)
    if answer:
        status, headers, body = _split(answer)
        assert status < 500, answer[:300]
        if headers.get("content-type", "").startswith("application/json"):  # the app answered (not the HTTP layer's plain 400)
            check_answer(status, headers.get("content-type", ""), body, list(logs.records), repr(data[:60]))
    assert not any(r.exc_info for r in logs.records), [r.getMessage() for r in logs.records][:2]


def test_chunked_body_over_the_limit_is_refused_while_reading(server, logs):
    """A 40 MiB chunked body (no Content-Length) is answered 413 once the limit is passed, not
    after the whole body was read into memory."""
    logs.records.clear()
    chunk = b" " * (256 << 10)
    total = 40 * MIB
    sent = 0
    answered_at: list[int] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        head = b'{"service": "user_activity", "entities": ['
        s.sendall(REQ + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(head) + head + b"\r\n")
        answer = b""

        def read():
            nonlocal answer
            try:
                while chunk_in := s.recv(65536):
                    if not answer:
                        answered_at.append(sent)
                    answer += chunk_in
                    if b"\r\n\r\n" in answer:
                        return
            except OSError:
                pass

        t = threading.Thread(target=read, daemon=True)
        t.start()
        try:
            while sent < total and not answered_at:
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
            if not answered_at:
                s.sendall(b"1\r\n]\r\n1\r\n}\r\n0\r\n\r\n")
        except OSError:  # the server closed the connection after its 413
            pass
        t.join(30)
    assert answer, "no answer"
    assert _status(answer) == 413, answer[:300]
    assert answered_at[0] <= 16 * MIB, f"answered after {answered_at[0] / MIB:.0f} MiB of a 40 MiB body: it read the whole body first"
    assert not any(r.exc_info for r in logs.records)


def test_a_client_leaving_mid_body_logs_no_traceback(server, logs):
    """A client that sends half its body and hangs up is the client's problem: one line at most."""
    logs.records.clear()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(REQ + b"Content-Length: 1000\r\n\r\n" + OK_BODY[:10])
        time.sleep(0.2)
    for _ in range(50):  # the server notices the close on its loop
        time.sleep(0.02)
    assert server.http.get("/health").status_code == 200
    assert not any(r.exc_info for r in logs.records), [r.getMessage() for r in logs.records][:2]
    assert len(logs.records) <= 1


def test_oversized_content_length_is_refused_before_the_body(server):
    """A Content-Length over the limit is answered 413 at once, without waiting for a body that never comes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(REQ + b"Content-Length: %d\r\n\r\n" % (1 << 40))
        t0 = time.perf_counter()
        answer = s.recv(65536)
        assert _status(answer) == 413 and time.perf_counter() - t0 < 2
