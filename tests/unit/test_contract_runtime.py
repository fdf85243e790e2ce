"""The contract runtime: every rule passes and fails as documented, on both evaluation paths."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.bad_kinds import EXPECTED_BAD

from featureline.compiler import compile_project
from featureline.contracts import ContractValidator
from featureline.generator import BAD_KINDS, live_events
from featureline.timeutil import to_us

CONTRACT = """\
apiVersion: v3.1.0
kind: DataContract
id: things
version: 1.0.0
status: active
schema:
  - name: things
    properties:
      - {name: id, logicalType: string, required: true, unique: true, logicalTypeOptions: {format: uuid}}
      - {name: code, logicalType: string, logicalTypeOptions: {minLength: 2, maxLength: 4, pattern: "^[A-Z]+$"}}
      - {name: email, logicalType: string, logicalTypeOptions: {format: email}}
      - {name: site, logicalType: string, logicalTypeOptions: {format: uri}}
      - {name: ip, logicalType: string, logicalTypeOptions: {format: ipv4}}
      - {name: day, logicalType: string, logicalTypeOptions: {format: date}}
      - name: color
        logicalType: string
        quality:
          - {type: library, metric: invalidValues, arguments: {validValues: [red, green]}, mustBe: 0}
      - {name: n, logicalType: integer, logicalTypeOptions: {minimum: 0, maximum: 100, multipleOf: 5}}
      - {name: small, logicalType: integer, logicalTypeOptions: {format: i8}}
      - {name: x, logicalType: number, required: true, logicalTypeOptions: {exclusiveMinimum: 0, exclusiveMaximum: 1}}
      - {name: flag, logicalType: boolean}
      - {name: born, logicalType: date, logicalTypeOptions: {minimum: "2000-01-01"}}
      - {name: ts, logicalType: timestamp, required: true, logicalTypeOptions: {minimum: "2020-01-01T00:00:00Z"}}
      - {name: meta, logicalType: object}
      - {name: at, logicalType: time, logicalTypeOptions: {minimum: "08:00:00"}}
customProperties:
  - {property: eventTimeField, value: ts}
  - {property: maxFutureSkew, value: 1h}
"""
NOW = to_us("2026-01-01T00:00:00Z")
GOOD = {
    "id": "123e4567-e89b-12d3-a456-426614174000",
    "code": "ABC",
    "email": "a@b.co",
    "site": "https://example.com/x",
    "ip": "10.0.0.1",
    "day": "2024-02-29",
    "color": "red",
    "n": 15,
    "small": -5,
    "x": 0.5,
    "flag": True,
    "born": "2001-05-06",
    "ts": "2025-12-31T23:00:00Z",
    "meta": {"k": [1, 2]},
}


@pytest.fixture(scope="module")
def validator(tmp_path_factory) -> ContractValidator:
    d: Path = tmp_path_factory.mktemp("proj")
    (d / "featureline.yaml").write_text("project: t\n")
    (d / "contracts").mkdir()
    (d / "contracts/things.yaml").write_text(CONTRACT)
    return ContractValidator(compile_project(d).contracts["things"])


def run(v: ContractValidator, records: list, path: str):
    raws = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    return v.validate_json(raws, now=NOW, path=path)


PATHS = ["record", "table"]

# (change to the good record, expected (field, rule) reasons); None deletes the key
CASES = [
    ({}, []),
    ({"id": None}, [("id", "required")]),
    ({"id": "not-a-uuid"}, [("id", "format")]),
    ({"code": "A"}, [("code", "minLength")]),
    ({"code": "ABCDE"}, [("code", "maxLength")]),
    ({"code": "ab"}, [("code", "pattern")]),
    ({"code": "ab1"}, [("code", "pattern")]),
    ({"email": "nope"}, [("email", "format")]),
    ({"site": "no scheme"}, [("site", "format")]),
    ({"ip": "300.1.1.1"}, [("ip", "format")]),
    ({"day": "2024-13-01"}, [("day", "format")]),
    ({"color": "blue"}, [("color", "enum")]),
    ({"color": None}, []),  # optional: null is fine, the enum does not apply
    ({"n": -5}, [("n", "minimum")]),
    ({"n": 105}, [("n", "maximum")]),
    ({"n": 7}, [("n", "multipleOf")]),
    ({"n": 100}, []),  # bounds are inclusive
    ({"small": 200}, [("small", "maximum")]),  # i8
    ({"small": -129}, [("small", "minimum")]),
    ({"x": 0}, [("x", "exclusiveMinimum")]),
    ({"x": 1}, [("x", "exclusiveMaximum")]),
    ({"x": "0.5"}, [("x", "type")]),
    ({"n": 1.5}, [("n", "type")]),
    ({"n": True}, [("n", "type")]),
    ({"flag": "yes"}, [("flag", "type")]),
    ({"born": "1999-12-31"}, [("born", "minimum")]),
    ({"born": "yesterday"}, [("born", "type")]),
    ({"ts": "2019-12-31T23:59:59Z"}, [("ts", "minimum")]),
    ({"ts": "2026-01-01T01:00:00.000001Z"}, [("ts", "event_time_future")]),
    ({"ts": "2026-01-01T01:00:00Z"}, []),  # exactly at the skew: allowed
    ({"ts": "2025-12-31T23:00:00"}, []),  # naive = UTC
    ({"ts": "2025-12-31T23:00:00+05:00"}, []),
    ({"ts": "later"}, [("ts", "type")]),
    ({"ts": None}, [("ts", "required")]),
    ({"meta": [1]}, [("meta", "type")]),
    ({"at": "07:59:59"}, [("at", "minimum")]),
    ({"at": "08:00:00"}, []),
    ({"at": "09:00:00+05:00"}, []),  # an offset is dropped, as Arrow's time64 does
    ({"at": "8 am"}, [("at", "type")]),
    ({"extra": 1}, [("extra", "unknown_field")]),
    ({"x": -1, "n": 7, "color": "blue"}, [("color", "enum"), ("n", "multipleOf"), ("x", "exclusiveMinimum")]),
    ({"x": "a", "code": "a"}, [("code", "minLength"), ("code", "pattern"), ("x", "type")]),
]


def _record(change: dict) -> dict:
    r = dict(GOOD)
    for k, v in change.items():
        if v is None and k in ("id", "ts"):
            r.pop(k)
        else:
            r[k] = v
    return r


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("change,expected", CASES, ids=[json.dumps(c[0]) for c in CASES])
def test_rule(validator, path, change, expected):
    res = run(validator, [_record(change)], path)
    if not expected:
        assert res.invalid == [] and res.valid_index == [0]
        assert res.valid.num_rows == 1
        return
    assert res.valid_index == []
    (row,) = res.invalid
    assert sorted((r.field, r.rule) for r in row.reasons) == sorted(expected)
    assert all(r.message for r in row.reasons)
    assert row.raw == json.dumps(_record(change)).encode()


@pytest.mark.parametrize("path", PATHS)
def test_bound_messages_show_dates_and_times(validator, path):
    res = run(validator, [_record({"born": "1999-12-31", "at": "07:00:00"})], path)
    assert sorted(r.message for r in res.invalid[0].reasons) == ["'07:00:00' is below the minimum 08:00:00", "'1999-12-31' is below the minimum 2000-01-01"]


@pytest.mark.parametrize("path", PATHS)
def test_record_level_failures(validator, path):
    res = run(validator, [b'{"id": "x",', b"[1, 2]", b"", b"\xff\xfe", b"null"], path)
    assert [r.index for r in res.invalid] == [0, 1, 2, 3, 4]
    assert [[x.rule for x in r.reasons] for r in res.invalid] == [["json"], ["object"], ["json"], ["json"], ["object"]]


@pytest.mark.parametrize("path", PATHS)
def test_unique_within_batch_flags_later_occurrences(validator, path):
    a, b = _record({}), _record({"id": "123e4567-e89b-12d3-a456-426614174001"})
    res = run(validator, [a, b, a, a], path)
    assert res.valid_index == [0, 1]
    assert [(r.index, r.reasons[0].rule) for r in res.invalid] == [(2, "unique"), (3, "unique")]


def test_valid_table_has_the_contract_schema(validator):
    res = run(validator, [_record({}), _record({"id": "123e4567-e89b-12d3-a456-426614174009", "code": None, "meta": None})], "table")
    t = res.valid
    assert t.schema.field("small").type == pa.int8()
    assert t.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert t.schema.field("born").type == pa.date32()
    assert t.column("ts")[0].as_py() == dt.datetime(2025, 12, 31, 23, tzinfo=dt.UTC)
    assert t.column("meta").to_pylist() == ['{"k":[1,2]}', None]


def test_validate_table_casts_and_explains(validator):
    table = pa.table(
        {
            "id": ["123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174001"],
            "x": ["0.5", "abc"],  # strings, as a CSV reader gives them
            "n": ["10", "12"],
            "ts": ["2025-12-31T23:00:00Z", "2025-12-31 23:00:00"],
            "other": [None, "surprise"],
        }
    )
    res = validator.validate_table(table, now=NOW)
    assert res.valid_index == [0]
    (bad,) = res.invalid
    assert sorted((r.field, r.rule) for r in bad.reasons) == [("n", "multipleOf"), ("other", "unknown_field"), ("x", "type")]


# -- properties ---------------------------------------------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["red", "green", "ABC", "a@b.co", "2024-02-29", "10.0.0.1", "2025-12-31T23:00:00Z", "2026-02-01T00:00:00Z", GOOD["id"]]),
)
_records = st.one_of(
    st.fixed_dictionaries({}, optional={k: st.one_of(st.just(v), _values) for k, v in GOOD.items()}),
    st.dictionaries(st.sampled_from([*GOOD, "zzz"]), _values, max_size=5),
)
_raw = st.one_of(_records.map(lambda r: json.dumps(r).encode()), st.binary(max_size=12), st.just(json.dumps(GOOD).encode()))


@settings(max_examples=int(__import__("os").environ.get("FL_HYPOTHESIS_EXAMPLES", 150)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(_raw, max_size=25))
def test_valid_plus_invalid_is_input_and_paths_agree(validator, batch):
    results = {p: validator.validate_json(batch, now=NOW, path=p) for p in PATHS}
    for res in results.values():
        bad = [r.index for r in res.invalid]
        assert sorted(res.valid_index + bad) == list(range(len(batch)))
        assert all(r.reasons for r in res.invalid)
        assert all(r.raw == batch[r.index] for r in res.invalid)
        assert res.valid.num_rows == res.n_valid
    rec, tab = results["record"], results["table"]
    assert rec.valid_index == tab.valid_index
    assert [(r.index, r.reasons) for r in rec.invalid] == [(r.index, r.reasons) for r in tab.invalid]
    assert rec.valid.equals(tab.valid)


# -- the example contract and the generator's bad records ---------------------------



@pytest.mark.parametrize("path", PATHS)
def test_generator_bad_records_all_caught(path):
    plan = compile_project(Path(__file__).resolve().parents[2])
    v = ContractValidator(plan.contracts["transactions"])
    events = live_events(1500, start=dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC), bad_share=0.03)
    now = max(e.event_time_us for e in events if e.bad_kind is None) + 1
    res = v.validate_json([e.value for e in events], now=now, path=path)
    assert set(EXPECTED_BAD) == set(BAD_KINDS)
    invalid = {r.index: r for r in res.invalid}
    for i, e in enumerate(events):
        if e.bad_kind is None:
            assert i not in invalid, (e.value, invalid.get(i))
            continue
        assert i in invalid, e
        got = {(r.field, r.rule) for r in invalid[i].reasons}
        want = EXPECTED_BAD[e.bad_kind]
        # each bad record names its own rule first-class; uuid-format bad records may also repeat a txn_id
        assert got & want, (e.bad_kind, got)
        assert got <= want | {("txn_id", "unique")}, (e.bad_kind, got)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.uuids().map(str), st.text(alphabet="0123456789abcdefABCDEFg-_ ", min_size=30, max_size=40)), max_size=30))
def test_uuid_fast_path_agrees_with_the_regex(values):
    import pyarrow.compute as pc

    from featureline.contracts.arrow_eval import _not_uuid
    from featureline.contracts.checks import FORMAT_PATTERNS

    col = pa.array(values, pa.string())
    fast = [bool(x) for x in _not_uuid(col)] if len(values) else []
    ref = pc.fill_null(pc.invert(pc.match_substring_regex(col, FORMAT_PATTERNS["uuid"])), False).to_pylist()
    assert fast == ref


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["US", "de", "FR", "x", "", "GB1", "a@b.co", "no mail"])), min_size=256, max_size=600))
def test_regex_on_distinct_values_agrees_with_the_plain_regex(values):
    import pyarrow.compute as pc

    from featureline.contracts.arrow_eval import _regex_violations

    col = pa.array(values, pa.string())
    for pattern in ("^[A-Z]{2}$", r"^[^@\s]+@[^@\s]+\.[^@\s]+$"):
        fast = pc.fill_null(_regex_violations(col, pattern), False).to_pylist()
        ref = pc.fill_null(pc.invert(pc.match_substring_regex(col, pattern)), False).to_pylist()
        assert fast == ref
