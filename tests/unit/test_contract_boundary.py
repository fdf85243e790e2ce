"""The record boundary: whatever a record holds becomes a reason, on every path that checks records.

Issue 12: one record of nested arrays used to raise RecursionError out of the check (and kill
the stream's reader); a 1 MiB e-mail took minutes in Python's `re`; a 600 KiB value was copied
into reasons and headers; a `classification: restricted` field showed up in all of them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pytest

from featureline.compiler import compile_contract_texts, compile_project
from featureline.contracts import ContractValidator

# the documented limits (docs/contracts-runtime.md)
MAX_DEPTH = 128  # levels of nesting in one record
VALUE_CHARS = 256  # a reason's value, at most
MESSAGE_CHARS = 1024  # a reason's message, at most

REPO = Path(__file__).resolve().parents[2]
PATHS = ["record", "columnar"]
NOW = 1_800_000_000_000_000
GOOD = {
    "txn_id": "123e4567-e89b-12d3-a456-426614174000",
    "user_id": 1,
    "merchant_id": 2,
    "amount": 10.5,
    "currency": "EUR",
    "status": "approved",
    "customer_email": "someone@example.com",
    "event_time": "2026-01-01T00:00:00Z",
}
DEEP = b'{"txn_id": ' + b"[" * 1000 + b"]" * 1000 + b"}"  # 2 KB


@pytest.fixture(scope="module")
def plan():
    return compile_project(REPO)


@pytest.fixture(scope="module")
def txn(plan) -> ContractValidator:
    return ContractValidator(plan.contracts["transactions"])


def enc(record: dict) -> bytes:
    return json.dumps(record).encode()


def good(i: int = 0, **change) -> bytes:
    return enc({**GOOD, "txn_id": f"123e4567-e89b-12d3-a456-4266141740{i:02d}", **change})


def partition(res) -> list[int]:
    return sorted(res.valid_index + [r.index for r in res.invalid])


def contract(props: str, **settings) -> ContractValidator:
    extra = "".join(f"  - {{property: {k}, value: {v}}}\n" for k, v in settings.items())
    text = f"""\
apiVersion: v3.1.0
kind: DataContract
id: c
version: 1.0.0
status: active
schema:
  - name: c
    properties:
{props}
customProperties:
  - {{property: compatibility, value: none}}
{extra}"""
    plans, problems = compile_contract_texts({"c.yaml": text})
    assert not problems, problems
    return ContractValidator(plans["c"])


# -- 1. the record boundary --------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deep_nesting_is_a_json_reason_and_spares_the_batch(txn, path, depth):
    deep = b'{"txn_id": ' + b"[" * depth + b"]" * depth + b"}"
    res = txn.validate_json([good(0), deep, good(1)], now=NOW, path=path)
    assert res.valid_index == [0, 2] and res.valid.num_rows == 2
    (row,) = res.invalid
    assert row.index == 1 and row.raw == deep
    assert [(r.field, r.rule) for r in row.reasons] == [(None, "json")]
    assert f"nesting deeper than {MAX_DEPTH} levels" in row.reasons[0].message


@pytest.mark.parametrize("path", PATHS)
def test_nesting_limit_is_exact_in_object_fields(path):
    v = contract("      - {name: meta, logicalType: object}\n      - {name: tags, logicalType: array}", unknownFields="ignore")

    def nested(n: int) -> bytes:  # the record is level 1, `meta` holds n - 1 more
        return b'{"meta": ' + b'{"a": ' * (n - 2) + b"{}" + b"}" * (n - 2) + b"}"

    from featureline.contracts import decode

    assert decode.MAX_DEPTH == MAX_DEPTH
    ok, over = nested(MAX_DEPTH), nested(MAX_DEPTH + 1)
    ignored = b'{"other": ' + b"[" * 5000 + b"]" * 5000 + b"}"  # an unknown field msgspec would skip, recursing
    brackets_in_strings = enc({"meta": {"s": "[" * 5000}, "tags": ["{" * 5000]})
    res = v.validate_json([ok, over, ignored, brackets_in_strings], now=NOW, path=path)
    assert res.valid_index == [0, 3]
    assert [(r.index, [x.rule for x in r.reasons]) for r in res.invalid] == [(1, ["json"]), (2, ["json"])]


def _poison_checker(validator, monkeypatch, exc: BaseException):
    """Make the checks raise on the record whose txn_id is `poison` (a stand-in for any bug a value trips)."""
    inner = validator._row_checker

    def check(row, now, prior, seen, out):
        if row.txn_id == "poison":
            raise exc
        return inner(row, now, prior, seen, out)

    monkeypatch.setattr(validator, "_row_checker", check)
    monkeypatch.setattr(validator, "_row_checker_one", check)

    def columns(table, now):
        if "poison" in table.column("txn_id").to_pylist():
            raise exc
        return type(validator._arrow).violations(validator._arrow, table, now)

    monkeypatch.setattr(validator._arrow, "violations", columns)


@pytest.mark.parametrize("path", PATHS)
def test_a_check_that_raises_refuses_only_its_record_with_rule_internal(plan, monkeypatch, path):
    v = ContractValidator(plan.contracts["users"])  # classifies nothing: the exception's text is shown
    rows = [{"user_id": i, "country": "DE", "signup_time": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"} for i in (1, 2, 3)]
    raws = [enc(r) for r in rows]
    inner = v._row_checker

    def check(row, now, prior, seen, out):
        if row.user_id == 2:
            raise ZeroDivisionError("division by zero")
        return inner(row, now, prior, seen, out)

    monkeypatch.setattr(v, "_row_checker", check)
    real = v._arrow.violations
    monkeypatch.setattr(v._arrow, "violations", lambda table, now: 1 / 0 if 2 in table.column("user_id").to_pylist() else real(table, now))
    res = v.validate_json(raws, now=NOW, path=path)
    assert res.valid_index == [0, 2] and res.valid.column("user_id").to_pylist() == [1, 3]
    (row,) = res.invalid
    assert row.index == 1 and row.raw == raws[1]
    assert [(r.field, r.rule, r.message) for r in row.reasons] == [(None, "internal", "check failed: ZeroDivisionError: division by zero")]
    assert res.n_internal == 1 and [(r.field, r.rule) for r in row.reasons] == [(None, "internal")]
    assert v.fallbacks == (1 if path == "columnar" else 0)


def test_internal_reason_withholds_the_exception_text_when_fields_are_classified(txn, monkeypatch):
    _poison_checker(txn, monkeypatch, ValueError("invalid literal: 'secret@example.com'"))
    res = txn.validate_json([good(0, txn_id="poison")], now=NOW)
    (r,) = res.invalid[0].reasons
    assert r.rule == "internal" and r.message.startswith("check failed: ValueError") and "secret" not in r.message


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), MemoryError()])
def test_process_level_exceptions_are_not_turned_into_reasons(plan, monkeypatch, exc):
    v = ContractValidator(plan.contracts["transactions"])
    _poison_checker(v, monkeypatch, exc)
    with pytest.raises(type(exc)):
        v.validate_json([good(0, txn_id="poison")], now=NOW)


def test_stream_check_survives_poison_records(plan):
    from featureline.stream.check import ContractCheck

    values = [good(0), DEEP, None, b"\xff" * 10, good(1)]
    batch = pa.RecordBatch.from_pydict({"value": pa.array(values, pa.binary())})
    checked = ContractCheck(plan.contracts["transactions"])(batch, NOW)
    assert checked.valid_index.tolist() == [0, 4] and checked.valid.num_rows == 2
    assert sorted(checked.invalid) == [1, 2, 3]
    assert {i: [r.rule for r in why] for i, why in checked.invalid.items()} == {1: ["json"], 2: ["json"], 3: ["json"]}
    assert checked.n_internal == 0


def test_stream_check_falls_back_when_building_the_valid_rows_raises(plan, monkeypatch):
    from featureline.stream.check import ContractCheck

    check = ContractCheck(plan.contracts["transactions"])
    check(pa.RecordBatch.from_pydict({"value": pa.array([good(0)], pa.binary())}), NOW)  # makes the validator
    v = check._validator
    real = v._rows_to_table

    def rows_to_table(rows, *, final=False):
        if final and any(r.user_id == 666 for r in rows):
            raise pa.ArrowInvalid("a value Arrow refuses")
        return real(rows, final=final)

    monkeypatch.setattr(v, "_rows_to_table", rows_to_table)
    batch = pa.RecordBatch.from_pydict({"value": pa.array([good(0), good(1, user_id=666), good(2)], pa.binary())})
    checked = check(batch, NOW)
    assert checked.valid_index.tolist() == [0, 2] and checked.valid.num_rows == 2
    assert [r.rule for r in checked.invalid[1]] == ["internal"] and checked.n_internal == 1


def test_validate_table_spares_good_rows_of_a_table_a_check_raises_on(plan, monkeypatch):
    v = ContractValidator(plan.contracts["merchants"])
    table = pa.table({"merchant_id": [1, 2, 3], "category": ["fuel"] * 3, "country": ["DE"] * 3, "risk_tier": [1, 2, 3],
                      "updated_at": ["2026-01-01T00:00:00Z"] * 3})  # fmt: skip
    real = v._arrow.violations
    monkeypatch.setattr(v._arrow, "violations", lambda t, now: 1 / 0 if 2 in t.column("merchant_id").to_pylist() else real(t, now))
    res = v.validate_table(table, now=NOW)
    assert res.valid_index == [0, 2] and res.valid.column("merchant_id").to_pylist() == [1, 3]
    assert [(r.index, r.reasons[0].rule) for r in res.invalid] == [(1, "internal")]


def test_validate_table_fallback_keeps_unique(plan, monkeypatch):
    v = ContractValidator(plan.contracts["transactions"])
    ids = ["123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174001"]
    table = pa.table({**{k: [GOOD[k]] * 3 for k in GOOD if k != "txn_id"}, "txn_id": ids, "user_id": [1, 2, 3]})
    real = v._arrow.violations
    monkeypatch.setattr(v._arrow, "violations", lambda t, now: 1 / 0 if 3 in t.column("user_id").to_pylist() else real(t, now))
    res = v.validate_table(table, now=NOW)
    assert res.valid_index == [0] and res.valid.num_rows == 1
    assert [(r.index, [x.rule for x in r.reasons]) for r in res.invalid] == [(1, ["unique"]), (2, ["internal"])]


def test_invalid_utf8_in_a_table_is_a_type_reason(txn):
    currency = pa.array([b"\xff\xfe", b"EUR"], pa.binary()).view(pa.string())  # what a parquet file may hold
    table = pa.table({**{k: [GOOD[k]] * 2 for k in GOOD if k not in ("txn_id", "currency")},
                      "txn_id": ["123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174001"], "currency": currency})  # fmt: skip
    res = txn.validate_table(table, now=NOW)
    assert res.valid_index == [1]
    assert [(r.field, r.rule) for r in res.invalid[0].reasons] == [("currency", "type")]


def test_producer_check_refuses_instead_of_raising(plan):
    from featureline.contracts.producer import ContractProducer, ContractViolation

    p = ContractProducer(plan.contracts["transactions"], producer=object())
    with pytest.raises(ContractViolation) as e:
        p.check(DEEP)
    assert [(r.field, r.rule) for r in e.value.reasons] == [(None, "json")]
    with pytest.raises(ContractViolation) as e:
        p.check({**GOOD, "amount": object()})  # not JSON at all
    assert [r.rule for r in e.value.reasons] == ["json"] and "cannot encode the record as JSON: TypeError" in str(e.value)
    assert p.refused == 2


# -- 2. linear-time patterns ---------------------------------------------------------------

MiB = 1 << 20
HOSTILE_EMAIL = "a@" + "a." * (MiB // 2) + " "  # quadratic for a backtracking engine: every '.' is a split point
HOSTILE_FOR_PATTERN = "a" * MiB + "!"  # `[a-z]+$`, searched: a backtracking engine retries from every position


def best_of_3(fn) -> float:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


@pytest.fixture(scope="module")
def patterned():
    return contract('      - {name: s, logicalType: string, logicalTypeOptions: {pattern: "[a-z]+$"}}\n'
                    '      - {name: e, logicalType: string, logicalTypeOptions: {format: email}}')  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("field,value", [("e", HOSTILE_EMAIL), ("s", HOSTILE_FOR_PATTERN)], ids=["email", "pattern"])
def test_a_1mib_value_is_checked_in_linear_time(patterned, path, field, value):
    raws = [enc({field: value})]
    res = patterned.validate_json(raws, now=NOW, path=path)
    assert [(r.field, r.rule) for r in res.invalid[0].reasons] == [(field, "format" if field == "e" else "pattern")]
    assert best_of_3(lambda: patterned.validate_json(raws, now=NOW, path=path)) < 0.05


@pytest.mark.parametrize("field,value", [("e", HOSTILE_EMAIL), ("s", HOSTILE_FOR_PATTERN)], ids=["email", "pattern"])
def test_a_1mib_value_is_checked_in_linear_time_in_duckdb(patterned, field, value):
    import duckdb

    from featureline.contracts.sql_eval import violation

    (c,) = [c for c in patterned.checks if c.field == field]
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT ?::VARCHAR AS {field}", [value])
    sql = f"SELECT count(*) FROM t WHERE {violation(c, NOW)}"
    assert con.execute(sql).fetchone() == (1,)
    assert best_of_3(lambda: con.execute(sql).fetchone()) < 0.05


@pytest.mark.parametrize("path", PATHS)
def test_patterns_mean_the_same_on_both_paths(path):
    """RE2 semantics everywhere: `\\d` and `\\s` are ASCII, `$` is the end of the text."""
    v = contract('      - {name: n, logicalType: string, logicalTypeOptions: {pattern: "^\\\\d+$"}}\n'
                 '      - {name: w, logicalType: string, logicalTypeOptions: {pattern: "^\\\\S+$"}}')  # fmt: skip
    raws = [enc({"n": "123"}), enc({"n": "\u0663"}), enc({"n": "12\n"}), enc({"w": "a\u00a0b"}), enc({"w": "ab"})]
    res = v.validate_json(raws, now=NOW, path=path)
    assert res.valid_index == [0, 3, 4]  # U+00A0 is not ASCII whitespace, so \S takes it


def test_patterns_re2_refuses_are_compile_errors_with_their_line():
    text = (REPO / "contracts/transactions.yaml").read_text().replace('pattern: "^[A-Z]{2}$"', 'pattern: "^([A-Z])\\\\1$"')
    plans, problems = compile_contract_texts({"contracts/transactions.yaml": text})
    (p,) = problems
    assert p.code == "invalid-pattern" and "RE2" in p.message
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "([A-Z])" in ln)
    assert (p.location.file, p.location.line) == ("contracts/transactions.yaml", line)
    ContractValidator(plans["transactions"])  # the plan still builds a validator (the bad pattern is left out)


# -- 3. bounded reasons ----------------------------------------------------------------------

BIG = 600 * 1024


@pytest.mark.parametrize("path", PATHS)
def test_a_600kib_value_is_cut_in_reasons_and_headers(plan, txn, path):
    from featureline.contracts import result

    assert (result.VALUE_CHARS, result.MESSAGE_CHARS) == (VALUE_CHARS, MESSAGE_CHARS)
    from featureline.stream.outcome import DeadLetter, Outcome
    from featureline.stream.sinks import dead_letter_headers

    raws = [good(0, currency="X" * BIG, status="y" * BIG)]
    res = txn.validate_json(raws, now=NOW, path=path)
    reasons = res.invalid[0].reasons
    assert [(r.field, r.rule) for r in reasons] == [("currency", "enum"), ("status", "enum")]
    for r in reasons:
        assert len(r.value) == VALUE_CHARS and r.value.endswith(f"... ({BIG:,} chars)")
        assert len(r.message) <= MESSAGE_CHARS and f"'... ({BIG:,} chars) is not one of " in r.message
    out = Outcome("transactions", 0, 0, 1)
    headers = dead_letter_headers(plan.contracts["transactions"], out, DeadLetter(0, None, raws[0], 0, reasons))
    assert sum(len(v) for _, v in headers) < 4 * (VALUE_CHARS + MESSAGE_CHARS)


@pytest.mark.parametrize("path", PATHS)
def test_the_snippet_of_a_600kib_malformed_record_is_cut(plan, path):
    raw = b'{"country": "' + b"z" * BIG
    res = ContractValidator(plan.contracts["users"]).validate_json([raw], now=NOW, path=path)
    (r,) = res.invalid[0].reasons
    assert r.rule == "json" and r.value.startswith('{"country": "zzz') and r.value.endswith(f"... ({len(raw):,} bytes)")
    assert len(r.value) == VALUE_CHARS and len(r.message) <= MESSAGE_CHARS


def test_huge_numbers_are_cut_too(txn):
    res = txn.validate_json([good(0, user_id=int("9" * 4000))], now=NOW, path="record")
    (r,) = res.invalid[0].reasons
    assert (r.field, r.rule) == ("user_id", "type") and r.value.endswith("(4,000 digits)") and len(r.message) < MESSAGE_CHARS


# -- 4. classified fields are redacted -----------------------------------------------------

SECRET = "very.secret.person"


def test_classification_is_in_the_plan(plan):
    f = plan.contracts["transactions"].field("customer_email")
    assert f.classification == "restricted" and f.redacted
    assert plan.contracts["transactions"].redactions == {"customer_email": "restricted"}
    from dataclasses import replace

    for label, hidden in (("Public", False), ("INTERNAL", False), ("unclassified", False), ("confidential", True), ("", False), (None, False)):
        assert replace(f, classification=label).redacted is hidden, label


BAD_EMAILS = {"format": f"{SECRET} at example", "maxLength": f"{SECRET}@example.com" + "m" * 300}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rule", sorted(BAD_EMAILS))
def test_a_bad_classified_value_never_shows_in_reasons(txn, path, rule):
    email = BAD_EMAILS[rule]
    raws = [good(0, customer_email=email), good(1, customer_email=email), good(2, customer_email=12)]
    res = txn.validate_json(raws, now=NOW, path=path)
    assert [r.index for r in res.invalid] == [0, 1, 2]
    reasons = [r for row in res.invalid for r in row.reasons]
    assert rule in {r.rule for r in reasons} and ("customer_email", "type") in {(r.field, r.rule) for r in reasons}
    for r in reasons:
        assert SECRET not in json.dumps(r.as_dict())
        if r.field == "customer_email":
            assert r.value.startswith("<redacted: restricted, ")
    fmt = [r for r in reasons if r.rule == "format"]
    assert all(r.message == f"{r.value} is not a valid email" for r in fmt)
    assert res.invalid[0].raw == raws[0]  # the payload itself stays whole, for replay


@pytest.mark.parametrize("path", PATHS)
def test_record_level_reasons_withhold_the_bytes(txn, plan, path):
    broken = f'{{"customer_email": "{SECRET}@example.com", '.encode()
    res = txn.validate_json([broken, b"[1, 2]"], now=NOW, path=path)
    for row in res.invalid:
        (r,) = row.reasons
        assert r.value == f"<withheld: contract classifies fields, {len(row.raw):,} bytes>" and SECRET not in r.message
    users = ContractValidator(plan.contracts["users"]).validate_json([broken], now=NOW, path=path)
    assert SECRET in users.invalid[0].reasons[0].value  # nothing classified: the snippet helps the producer


def test_producer_violation_does_not_show_classified_values(plan):
    from featureline.contracts.producer import ContractProducer, ContractViolation

    p = ContractProducer(plan.contracts["transactions"], producer=object())
    for email in BAD_EMAILS.values():
        with pytest.raises(ContractViolation) as e:
            p.check({**GOOD, "customer_email": email})
        assert "customer_email" in str(e.value) and SECRET not in str(e.value)
        assert all(SECRET not in repr(r) for r in e.value.reasons)


def test_unique_claims_in_the_stream_are_redacted_too():
    from featureline.contracts.checks import Check

    r = Check("unique", "customer_email", None, "string", "restricted").reason(f"{SECRET}@example.com")
    assert r.value == "<redacted: restricted, 30 chars>" and SECRET not in r.message


def test_redact_payload(plan):
    from featureline.contracts.redact import redact_payload

    c = plan.contracts["transactions"]
    raw = enc({**GOOD, "customer_email": f"{SECRET}@example.com"})
    shown = json.loads(redact_payload(c, raw))
    assert shown == {**GOOD, "customer_email": "<redacted: restricted, 30 chars>"}
    dup = b'{"customer_email": "a@b.co", "customer_email": "' + SECRET.encode() + b'@x.io"}'
    for hostile in (dup, DEEP.replace(b"txn_id", b"customer_email"), f'{{"customer_email": "{SECRET}'.encode(), b"\xff" + SECRET.encode()):
        assert SECRET not in redact_payload(c, hostile)
    assert redact_payload(c, b"[1]") == "<withheld: contract classifies fields, 3 bytes>"
    assert redact_payload(c, enc({**GOOD, "customer_email": None})) == json.dumps({**GOOD, "customer_email": None})
    assert redact_payload(plan.contracts["users"], b'{"country": "DE"}') == '{"country": "DE"}'


@pytest.mark.parametrize("path", PATHS)
def test_unknown_fields_of_a_classifying_contract_are_redacted(txn, plan, path):
    raws = [good(0, customerEmail=f"{SECRET}@example.com")]  # a misspelt classified field
    (r,) = txn.validate_json(raws, now=NOW, path=path).invalid[0].reasons
    assert (r.field, r.rule, r.value) == ("customerEmail", "unknown_field", "<redacted: unknown field, 30 chars>")
    assert SECRET not in r.message
    table = pa.table({**{k: [v] for k, v in GOOD.items()}, "customerEmail": [f"{SECRET}@example.com"]})
    (r,) = txn.validate_table(table, now=NOW).invalid[0].reasons
    assert r.value == "<redacted: unknown field, 30 chars>"


def test_reasons_are_strict_json_even_for_numbers_beyond_float(txn):
    res = txn.validate_json([good(0, amount=1.0).replace(b"1.0", b"1e400")], now=NOW, path="record")
    (r,) = res.invalid[0].reasons
    assert (r.field, r.rule) == ("amount", "type")
    assert json.loads(json.dumps(r.as_dict(), allow_nan=False))["value"] == "inf"


def test_a_table_timestamp_beyond_year_9999_is_a_type_reason(plan):
    v = ContractValidator(plan.contracts["merchants"])
    ts = pa.array([1_700_000_000_000_000, 10**18], pa.timestamp("us", tz="UTC"))  # 2023, and year 33658
    table = pa.table({"merchant_id": [1, 2], "category": ["fuel"] * 2, "country": ["DE"] * 2, "risk_tier": [1, 2], "updated_at": ts})
    res = v.validate_table(table, now=NOW)
    assert res.valid_index == [0] and v.fallbacks == 0
    assert [(r.field, r.rule) for r in res.invalid[0].reasons] == [("updated_at", "type")]


@pytest.mark.parametrize("path", PATHS)
def test_unique_object_fields_compare_as_json_text(path):
    v = contract("      - {name: meta, logicalType: object, unique: true}")
    res = v.validate_json([b'{"meta": {"a": [1]}}', b'{"meta": {"a": [2]}}', b'{"meta": {"a": [1]}}'], now=NOW, path=path)
    assert res.valid_index == [0, 1]
    assert [(r.field, r.rule, r.value) for r in res.invalid[0].reasons] == [("meta", "unique", '{"a":[1]}')]
