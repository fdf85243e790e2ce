"""Contract exports for producers in other stacks: JSON Schema, Avro, pydantic.

Each export must accept the generator's good records and reject the bad kinds it can
express; Avro's own compatibility checker must agree with compat.py wherever Avro can
express the change.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import avro.schema
import jsonschema
import pydantic
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from featureline.compiler import compile_contract_texts
from featureline.contracts.compat import breaking, diff
from featureline.contracts.export import ExportError, class_name, to_avro, to_jsonschema, to_pydantic
from featureline.generator import BAD_KINDS, live_events
from featureline.plan import ContractPlan

REPO = Path(__file__).resolve().parents[2]
TRANSACTIONS = (REPO / "contracts" / "transactions.yaml").read_text()
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

# Bad kinds no per-record schema can catch: a uniqueness across the batch and a clock-relative time.
NOT_PER_RECORD = {"duplicate_key", "future_event_time"}


@functools.cache
def plan(text: str, name: str = "c.yaml") -> ContractPlan:
    plans, problems = compile_contract_texts({name: text})
    assert not problems, [p.render(snippet=False) for p in problems]
    (only,) = plans.values()
    return only


@functools.cache
def events():
    evs = live_events(50 * len(BAD_KINDS), seed=11, start=START, bad_share=0.02)
    kinds = Counter(e.bad_kind for e in evs)
    assert set(BAD_KINDS) <= set(kinds)  # every bad kind is there
    return evs


def tx() -> ContractPlan:
    return plan(TRANSACTIONS, "contracts/transactions.yaml")


# --- JSON Schema ------------------------------------------------------------------------


def validator(schema: dict) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_jsonschema_accepts_good_records_and_rejects_every_expressible_bad_kind():
    schema = to_jsonschema(tx())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    v = validator(schema)
    rejected: dict[str, bool] = {}
    for ev in events():
        try:
            record = json.loads(ev.value)
        except ValueError:
            assert ev.bad_kind == "malformed_json"  # not JSON at all: refused before any schema
            rejected["malformed_json"] = True
            continue
        ok = v.is_valid(record)
        if ev.bad_kind is None:
            assert ok, list(v.iter_errors(record))
        else:
            rejected[ev.bad_kind] = rejected.get(ev.bad_kind, True) and not ok
    assert {k for k, r in rejected.items() if r} == set(BAD_KINDS) - NOT_PER_RECORD
    assert {k for k, r in rejected.items() if not r} == NOT_PER_RECORD


def test_jsonschema_shape_of_the_transactions_contract():
    s = to_jsonschema(tx())
    assert s["$id"] == "urn:featureline:contract:transactions:1.0.0"
    assert s["title"] == "Card transactions" and s["version"] == "1.0.0" and s["type"] == "object"
    assert s["required"] == ["txn_id", "user_id", "merchant_id", "amount", "currency", "status", "event_time"]
    p = s["properties"]
    assert p["event_time"]["type"] == "string" and p["event_time"]["format"] == "date-time"
    assert p["amount"] == {"type": "number", "minimum": 0, "maximum": 50000, "description": "Amount in the transaction's currency."}
    assert p["user_id"]["type"] == "integer" and p["user_id"]["minimum"] == 1 and p["user_id"]["maximum"] == 2**63 - 1
    assert p["currency"]["enum"] == ["EUR", "USD", "GBP", "CHF", "JPY"]
    assert p["channel"]["type"] == ["string", "null"] and p["channel"]["enum"] == ["pos", "ecom", "atm", None]
    assert p["customer_email"]["format"] == "email" and p["customer_email"]["maxLength"] == 254
    assert "unique" in p["txn_id"]["$comment"] and "5m in the future" in p["event_time"]["$comment"]


KINDS = """\
apiVersion: v3.1.0
kind: DataContract
id: kinds-of-things
version: 2.1.0
status: active
schema:
  - name: kinds
    properties:
      - {name: small, logicalType: integer, required: true, logicalTypeOptions: {format: i8}}
      - {name: u, logicalType: integer, logicalTypeOptions: {format: u16, exclusiveMinimum: 0, multipleOf: 5}}
      - {name: ratio, logicalType: number, logicalTypeOptions: {exclusiveMinimum: 0, exclusiveMaximum: 1}}
      - {name: code, logicalType: string, logicalTypeOptions: {minLength: 2, maxLength: 6, pattern: "^[A-Za-z.-]+$", format: hostname}}
      - {name: day, logicalType: date, logicalTypeOptions: {minimum: "2020-01-01"}}
      - {name: at, logicalType: time}
      - {name: flag, logicalType: boolean, required: true, customProperties: [{property: default, value: false}]}
      - {name: meta, logicalType: object}
      - {name: tags, logicalType: array}
      - {name: class, logicalType: string}
      - {name: user-id, logicalType: integer}
      - name: level
        logicalType: integer
        quality:
          - {type: library, metric: invalidValues, arguments: {validValues: [1, 2, 3]}, mustBe: 0}
      - name: kind
        logicalType: string
        customProperties: [{property: default, value: a-b}]
        quality:
          - {type: library, metric: invalidValues, arguments: {validValues: [a-b, c]}, mustBe: 0}
      - {name: ts, logicalType: timestamp, required: true}
customProperties:
  - {property: unknownFields, value: ignore}
  - {property: eventTimeField, value: ts}
"""
KINDS_GOOD = {"small": -5, "ts": "2026-01-01T00:00:00Z"}
KINDS_OK = [
    {},
    {"u": 65535, "ratio": 0.5, "code": "AB", "day": "2024-02-29", "at": "12:30:00", "flag": True, "meta": {"a": 1}, "tags": [1]},
    {"class": "x", "user-id": 7, "level": 2, "kind": "a-b", "extra": "ignored: the contract is open"},
    {"u": None, "ratio": None, "code": None, "level": None, "kind": None, "ts": "2026-01-01T00:00:00.123456+02:00"},
]
KINDS_BAD = [
    {"small": 128},
    {"small": True},
    {"small": None},
    {"ts": None},
    {"ts": "2026-01-01"},
    {"u": 0},
    {"u": 65540},
    {"u": 7},
    {"ratio": 1},
    {"ratio": "0.5"},
    {"code": "A"},
    {"code": "ABCDEFG"},
    {"code": "a_b"},
    {"code": "a..b"},  # matches the pattern, not the hostname format
    {"day": "2024-02-30x"},
    {"at": "noon"},
    {"flag": None},
    {"level": 4},
    {"kind": "d"},
    {"meta": [1]},
    {"tags": {"a": 1}},
]
# featureline and pydantic refuse 1.0 for an integer; JSON Schema calls it one (a number with no fraction)
KINDS_BAD_BUT_JSON_SCHEMA = [{"small": 1.0}, {"small": 2e0}]


def test_jsonschema_per_type_rules():
    c = plan(KINDS)
    s = to_jsonschema(c)
    assert "additionalProperties" not in s  # unknownFields: ignore
    assert "flag" not in s["required"] and s["properties"]["flag"]["default"] is False  # readers fill the default in
    assert s["properties"]["small"]["minimum"] == -128 and s["properties"]["small"]["maximum"] == 127
    assert s["properties"]["day"]["format"] == "date" and "minimum 2020-01-01" in s["properties"]["day"]["$comment"]
    v = validator(s)
    for extra in KINDS_OK:
        rec = {**KINDS_GOOD, **extra}
        assert v.is_valid(rec), (rec, list(v.iter_errors(rec)))
    for extra in KINDS_BAD:
        rec = {**KINDS_GOOD, **extra}
        assert not v.is_valid(rec), rec
    assert not v.is_valid({"ts": "2026-01-01T00:00:00Z"})  # small is required
    for extra in KINDS_BAD_BUT_JSON_SCHEMA:
        assert v.is_valid({**KINDS_GOOD, **extra})


# --- Avro -----------------------------------------------------------------------------------


def parse_avro(c: ContractPlan) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(to_avro(c)))


def test_avro_schema_of_the_transactions_contract():
    s = to_avro(tx())
    parse_avro(tx())
    assert s["type"] == "record" and s["name"] == "transactions" and s["namespace"] == "featureline.contracts"
    f = {x["name"]: x for x in s["fields"]}
    assert f["user_id"]["type"] == "long" and "default" not in f["user_id"]
    assert f["amount"]["type"] == "double"
    assert f["event_time"]["type"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert f["currency"]["type"] == {"type": "enum", "name": "transactions_currency", "symbols": ["EUR", "USD", "GBP", "CHF", "JPY"]}
    assert f["card_country"]["type"] == ["null", "string"] and f["card_country"]["default"] is None
    assert f["channel"]["type"][0] == "null" and f["channel"]["type"][1]["type"] == "enum"
    assert "pattern ^[A-Z]{2}$" in f["card_country"]["doc"]


def test_avro_per_type_rules():
    s = to_avro(plan(KINDS.replace("{name: user-id, logicalType: integer}", "{name: user_id, logicalType: integer}")))
    parse_avro(plan(KINDS.replace("{name: user-id, logicalType: integer}", "{name: user_id, logicalType: integer}")))
    assert s["name"] == "kinds_of_things"
    f = {x["name"]: x for x in s["fields"]}
    assert f["small"]["type"] == "int"
    assert f["u"]["type"] == ["null", "int"]
    assert f["user_id"]["type"] == ["null", "long"]
    assert f["day"]["type"] == ["null", {"type": "int", "logicalType": "date"}]
    assert f["at"]["type"] == ["null", {"type": "long", "logicalType": "time-micros"}]
    assert f["flag"] == {"name": "flag", "type": "boolean", "default": False}
    assert f["meta"]["type"] == ["null", "string"] and "JSON text" in f["meta"]["doc"]
    assert f["level"]["type"] == ["null", "long"] and "one of 1, 2, 3" in f["level"]["doc"]
    # `a-b` is no Avro name: a string, the values in the doc, and a non-null default goes first
    assert f["kind"]["type"] == ["string", "null"] and f["kind"]["default"] == "a-b"
    assert "not valid Avro names" in f["kind"]["doc"]


def test_avro_refuses_field_names_it_cannot_hold():
    with pytest.raises(ExportError, match="`user-id`"):
        to_avro(plan(KINDS))


AVRO_BASE = """\
apiVersion: v3.1.0
kind: DataContract
id: avro_things
version: 1.0.0
status: active
schema:
  - name: things
    properties:
      - {name: id, logicalType: string, required: true}
      - {name: n, logicalType: integer, required: true, logicalTypeOptions: {format: i32}}
      - {name: amount, logicalType: number, required: true}
      - {name: label, logicalType: string}
      - {name: note, logicalType: string, required: true}
      - {name: tier, logicalType: integer, required: true, customProperties: [{property: default, value: 1}]}
      - name: color
        logicalType: string
        required: true
        quality:
          - {type: library, metric: invalidValues, arguments: {validValues: [red, green]}, mustBe: 0}
      - {name: ts, logicalType: timestamp, required: true}
"""
TS = "      - {name: ts, logicalType: timestamp, required: true}\n"

# (case, edit of the text: old -> new); constraint rules (bounds, patterns) are not expressible in Avro
AVRO_CASES = [
    ("optional field added", (TS, TS + "      - {name: extra, logicalType: string}\n")),
    ("required field added", (TS, TS + "      - {name: extra, logicalType: integer, required: true}\n")),
    (
        "field with default added",
        (TS, TS + "      - {name: extra, logicalType: integer, required: true, customProperties: [{property: default, value: 0}]}\n"),
    ),
    ("optional field removed", ("      - {name: label, logicalType: string}\n", "")),
    ("required field removed", ("      - {name: note, logicalType: string, required: true}\n", "")),
    (
        "field with default removed",
        ("      - {name: tier, logicalType: integer, required: true, customProperties: [{property: default, value: 1}]}\n", ""),
    ),
    ("int -> long", ("format: i32", "format: i64")),
    ("long -> int", None),  # the reverse of the row above
    (
        "integer -> number",
        (
            "name: n, logicalType: integer, required: true, logicalTypeOptions: {format: i32}",
            "name: n, logicalType: number, required: true",
        ),
    ),
    ("number -> integer", ("name: amount, logicalType: number", "name: amount, logicalType: integer")),
    ("string -> integer", ("name: label, logicalType: string", "name: label, logicalType: integer")),
    ("timestamp -> string", ("name: ts, logicalType: timestamp", "name: ts, logicalType: string")),
    ("enum value added", ("[red, green]", "[red, green, blue]")),
    ("enum value removed", ("[red, green]", "[red]")),
    ("enum value replaced", ("[red, green]", "[red, blue]")),
    ("made nullable", ("{name: note, logicalType: string, required: true}", "{name: note, logicalType: string}")),
    ("made required", ("{name: label, logicalType: string}", "{name: label, logicalType: string, required: true}")),
    ("default changed", ("{property: default, value: 1}", "{property: default, value: 2}")),
]


def avro_compatible(reader: ContractPlan, writer: ContractPlan) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(parse_avro(reader), parse_avro(writer))
    return result.compatibility is SchemaCompatibilityType.compatible


@pytest.mark.parametrize("case,change", AVRO_CASES, ids=[c[0] for c in AVRO_CASES])
def test_avro_checker_agrees_with_compat(case, change):
    if change is None:  # long -> int
        old, new = plan(AVRO_BASE.replace("format: i32", "format: i64")), plan(AVRO_BASE)
    else:
        assert change[0] in AVRO_BASE
        old, new = plan(AVRO_BASE), plan(AVRO_BASE.replace(change[0], change[1], 1))
    changes = diff(old, new)
    assert changes, "the case must change something"
    ours_backward_ok = not breaking(changes, "backward")
    ours_forward_ok = not breaking(changes, "forward")
    # backward: new readers read old data; forward: old readers read new data
    assert avro_compatible(reader=new, writer=old) == ours_backward_ok, [c.message for c in changes]
    assert avro_compatible(reader=old, writer=new) == ours_forward_ok, [c.message for c in changes]
    full_ok = ours_backward_ok and ours_forward_ok
    assert (not breaking(changes, "full")) == full_ok


def test_avro_agreement_cases_cover_both_directions():
    """The table exercises compatible, backward-only, forward-only and both-ways breaks."""
    seen = set()
    for _, change in AVRO_CASES:
        if change is None:
            old, new = plan(AVRO_BASE.replace("format: i32", "format: i64")), plan(AVRO_BASE)
        else:
            old, new = plan(AVRO_BASE), plan(AVRO_BASE.replace(change[0], change[1], 1))
        ch = diff(old, new)
        seen.add((bool(breaking(ch, "backward")), bool(breaking(ch, "forward"))))
    assert seen == {(False, False), (True, False), (False, True), (True, True)}


# --- pydantic -----------------------------------------------------------------------------------


def load_model(c: ContractPlan) -> type[pydantic.BaseModel]:
    src = to_pydantic(c)
    ns: dict = {"__name__": "generated_model"}
    exec(compile(src, "<generated>", "exec", dont_inherit=True), ns)  # not under this file's `from __future__ import annotations`
    return ns[class_name(c.id)]


def test_pydantic_model_accepts_good_records_and_rejects_every_expressible_bad_kind():
    src = to_pydantic(tx())
    assert "class Transactions(BaseModel):" in src
    assert 'model_config = ConfigDict(extra="forbid", strict=True)' in src
    assert "currency: Literal['EUR', 'USD', 'GBP', 'CHF', 'JPY']" in src
    assert "card_country: Annotated[str, Field(pattern='^[A-Z]{2}$')] | None = None" in src
    assert "event_time: datetime.datetime" in src
    model = load_model(tx())
    rejected: dict[str, bool] = {}
    for ev in events():
        try:
            model.model_validate_json(ev.value)
            ok = True
        except pydantic.ValidationError:
            ok = False
        if ev.bad_kind is None:
            assert ok, ev.value
        else:
            rejected[ev.bad_kind] = rejected.get(ev.bad_kind, True) and not ok
    assert {k for k, r in rejected.items() if r} == set(BAD_KINDS) - NOT_PER_RECORD
    assert {k for k, r in rejected.items() if not r} == NOT_PER_RECORD


def test_pydantic_per_type_rules():
    c = plan(KINDS)
    src = to_pydantic(c)
    assert "class KindsOfThings(BaseModel):" in src
    assert "extra=" not in src  # unknownFields: ignore
    assert "class_: str | None = Field(default=None, alias='class')" in src
    assert "user_id: " in src and "alias='user-id'" in src
    model = load_model(c)
    for extra in KINDS_OK:
        rec = {**KINDS_GOOD, **extra}
        model.model_validate_json(json.dumps(rec))
    for extra in KINDS_BAD + KINDS_BAD_BUT_JSON_SCHEMA:
        rec = {**KINDS_GOOD, **extra}
        with pytest.raises(pydantic.ValidationError):
            model.model_validate_json(json.dumps(rec))
    with pytest.raises(pydantic.ValidationError):  # date minimum is checked here (JSON Schema cannot)
        model.model_validate_json(json.dumps({**KINDS_GOOD, "day": "2019-12-31"}))
    m = model.model_validate_json(json.dumps(KINDS_GOOD))
    assert m.flag is False and m.kind == "a-b"  # defaults filled in
    dumped = json.loads(m.model_dump_json(by_alias=True))
    assert dumped["user-id"] is None and dumped["class"] is None


def test_pydantic_model_is_usable_from_python():
    model = load_model(tx())
    rec = model(
        txn_id="123e4567-e89b-12d3-a456-426614174000",
        user_id=1,
        merchant_id=2,
        amount=10,
        currency="EUR",
        status="approved",
        event_time=START,
    )
    assert json.loads(rec.model_dump_json())["amount"] == 10.0
    with pytest.raises(pydantic.ValidationError):
        model(txn_id="x", user_id=1, merchant_id=2, amount=10, currency="EUR", status="approved", event_time=START)


def test_pydantic_python_names_do_not_clash():
    text = AVRO_BASE.replace(TS, TS + "      - {name: user-id, logicalType: integer}\n      - {name: user_id, logicalType: string}\n")
    src = to_pydantic(plan(text))
    assert "    user_id: str | None = None" in src and "    user_id_: " in src and "alias='user-id'" in src
    m = load_model(plan(text)).model_validate_json(
        json.dumps(
            {"id": "x", "n": 1, "amount": 1, "note": "", "color": "red", "ts": "2026-01-01T00:00:00Z", "user-id": 5, "user_id": "five"}
        )
    )
    assert (m.user_id_, m.user_id) == (5, "five")


def test_class_names():
    assert class_name("transactions") == "Transactions"
    assert class_name("card-txn_v2") == "CardTxnV2"
    assert class_name("2fa.events") == "Contract2faEvents"
