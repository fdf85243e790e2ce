"""Hostile records for the contract runtime, and the properties every batch of them must keep.

Shared by tests/unit/test_contract_fuzz.py (a short, deterministic run) and
bench/fuzz_contracts.py (a long one). Records are the contract's own valid records
(generated from its fields), mutated field by field (every JSON type, huge numbers,
NaN/Infinity tokens, lone surrogates, duplicate keys, 10 MiB strings, deep nesting)
and byte by byte (random bytes, invalid UTF-8, BOMs, truncation), plus random bytes.
"""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import strategies as st

from featureline.contracts.checks import INT_RANGES
from featureline.plan import ContractPlan, FieldPlan

MARK = "Zq7secret"  # put into classified fields' values only: must never appear in a reason
STATS: Counter = Counter()  # cases and records checked (the bench prints them)


class Token(str):
    """JSON text emitted as is (NaN, 1e400, "\\ud800", a 400-digit integer)."""


def emit(v) -> str:
    if isinstance(v, Token):
        return str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {emit(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list) and not isinstance(v, Pairs):
        return "[" + ", ".join(emit(x) for x in v) + "]"
    if isinstance(v, Pairs):  # an object with duplicate keys
        return "{" + ", ".join(f"{json.dumps(k)}: {emit(x)}" for k, x in v) + "}"
    return json.dumps(v, ensure_ascii=False)


class Pairs(list):
    """(key, value) pairs of one JSON object, keys possibly repeated."""


# -- values ------------------------------------------------------------------------------

TOKENS = [Token(t) for t in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400, "-" + "9" * 400, "1e-400",
                             '"\\ud800"', '"\\udfff"', '"a\\ud83d"', '"\\ud83d\\ude00"', "0.1e1", "-0", "1E2", "9223372036854775808",
                             "-9223372036854775809", "18446744073709551616", "true", "null", '"\\u0000"')]  # fmt: skip
TIMESTAMPS = ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01 00:00:00+01:00", "2026-01-01T00:00:00.123456789Z",
              "2026-01-01", "20260101T000000Z", "2026-W01-1", "2026-01-01T24:00:00Z", "2016-12-31T23:59:60Z", "0001-01-01T00:00:00+01:00",
              "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999Z", " 2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z ",
              "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+0100", "2026-01-01T00:00Z", "2026-01-01T00Z", "2026-02-30T00:00:00Z",
              "\u0662\u0660\u0662\u0666-01-01T00:00:00Z", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00,5Z", "yesterday", ""]  # fmt: skip
BIG = st.sampled_from([1 << 10, 1 << 16, 1 << 20, 10 << 20])
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.sampled_from(TOKENS),
    st.sampled_from(TIMESTAMPS),
)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3), max_leaves=8)


@st.composite
def huge(draw, mark: bool = False):
    """A value that is big or deep: a long string, a long array, deep nesting (`mark`: a long marked string)."""
    n = draw(BIG)
    if mark:
        return (MARK + "@x.") * (n // 12)
    kind = draw(st.sampled_from(["str", "deep-array", "deep-object", "wide", "brackets-in-string", "escapes"]))
    depth = draw(st.sampled_from([127, 128, 129, 1000, 100_000]))
    if kind == "str":
        return draw(st.sampled_from(["a", "a.", "é", "@", "\x00", "[", "\\"])) * n
    if kind == "deep-array":
        return Token("[" * depth + "]" * depth)
    if kind == "deep-object":
        return Token('{"a": ' * depth + "1" + "}" * depth)
    if kind == "wide":
        return [draw(st.integers(0, 9))] * (min(n, 1 << 16) // 4)
    if kind == "escapes":
        return Token('"' + "\\\\" * (n // 4) + '\\"' + '"')
    return "[{" * (n // 4)


def field_value(f: FieldPlan) -> st.SearchStrategy:
    """Values the contract accepts for `f` (mostly), to mutate from."""
    t = f.logical_type
    if f.enum is not None:
        return st.sampled_from(list(f.enum))
    if t == "integer":
        lo, hi = INT_RANGES.get(f.arrow_type, INT_RANGES["int64"])
        lo = max(lo, int(f.minimum)) if f.minimum is not None else lo
        hi = min(hi, int(f.maximum)) if f.maximum is not None else hi
        return st.integers(lo, hi) | st.sampled_from([lo, hi])
    if t == "number":
        lo = float(f.minimum if f.minimum is not None else f.exclusive_minimum if f.exclusive_minimum is not None else -1e12)
        hi = float(f.maximum if f.maximum is not None else f.exclusive_maximum if f.exclusive_maximum is not None else 1e12)
        inside = st.floats(lo, hi, allow_nan=False, exclude_min=f.exclusive_minimum is not None, exclude_max=f.exclusive_maximum is not None)
        return inside | st.sampled_from([lo, hi])
    if t == "timestamp":
        return st.datetimes(timezones=st.sampled_from([__import__("datetime").UTC])).map(lambda d: d.isoformat()) | st.sampled_from(TIMESTAMPS[:3])
    if t == "boolean":
        return st.booleans()
    if t == "date":
        return st.dates().map(lambda d: d.isoformat())
    if t == "time":
        return st.times().map(lambda x: x.isoformat()) | st.sampled_from(["12:00:00+01:00", "23:59:59.999999Z", "24:00:00"])
    if t == "string":
        if f.format == "uuid":
            return st.uuids().map(str)
        if f.format == "email":
            base = st.emails() | st.just("someone@example.com")
            return base.map(lambda e: f"{MARK}.{e}" if f.redacted else e)
        if f.pattern is not None:
            return st.from_regex(f.pattern, fullmatch=True, alphabet=st.characters(max_codepoint=0x7F)) | st.just("US")
        return st.text(max_size=8)
    return json_values


def mutation(f: FieldPlan) -> st.SearchStrategy:
    near = field_value(f)
    if f.redacted:  # a classified field's bad values carry the mark
        near = near | st.text(max_size=6).map(lambda s: f"{MARK}{s}") | st.just(MARK * 30) | st.just(f"{MARK} at example") | huge(mark=True)
    return st.one_of(near, json_values, st.sampled_from(TOKENS), st.sampled_from(TIMESTAMPS), huge())


# -- records -------------------------------------------------------------------------------


@st.composite
def record(draw, contract: ContractPlan) -> tuple[bytes, bool]:
    """(bytes, structured): a valid record of `contract`, mutated; structured = not mutated byte-wise."""
    fields = list(contract.fields)
    rec: dict = {f.name: draw(field_value(f)) for f in fields if f.required or draw(st.booleans())}
    mutated = draw(st.lists(st.sampled_from(fields), max_size=3, unique_by=lambda f: f.name)) if draw(st.integers(0, 2)) else []
    for f in mutated:
        action = draw(st.sampled_from(["replace", "replace", "drop", "null"]))
        if action == "replace":
            rec[f.name] = draw(mutation(f))
        elif action == "drop":
            rec.pop(f.name, None)
        else:
            rec[f.name] = None
    if mutated and draw(st.integers(0, 4)) == 0:
        rec[draw(st.text(max_size=5))] = draw(json_values)  # an unknown field, perhaps
    pairs = Pairs(rec.items())
    if mutated and pairs and draw(st.integers(0, 4)) == 0:  # a duplicate key, first or last wins?
        k, _ = draw(st.sampled_from(list(pairs)))
        pairs.insert(draw(st.integers(0, len(pairs))), (k, draw(mutation(contract.field(k)) if contract.field(k) else json_values)))
    raw = emit(pairs).encode("utf-8", "surrogatepass")
    if not mutated or draw(st.integers(0, 3)):
        return raw, True
    return draw(byte_mutation(raw)), False


@st.composite
def byte_mutation(draw, raw: bytes) -> bytes:
    b = bytearray(raw)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(b)))
        op = draw(st.sampled_from(["insert", "replace", "delete", "truncate", "bom", "utf16"]))
        junk = draw(st.binary(min_size=1, max_size=4) | st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x00", b'"', b"\\", b"[", b"}"]))
        if op == "insert":
            b[i:i] = junk
        elif op == "replace":
            b[i : i + len(junk)] = junk
        elif op == "delete":
            del b[i : i + draw(st.integers(1, 4))]
        elif op == "truncate":
            del b[i:]
        elif op == "bom":
            b[0:0] = b"\xef\xbb\xbf"
        else:
            return bytes(b).decode("utf-8", "replace").encode("utf-16")
    return bytes(b)


def batches(contract: ContractPlan, max_size: int = 8) -> st.SearchStrategy:
    """Lists of (raw, structured): mostly mutated records, some random bytes."""
    item = st.one_of(
        record(contract),
        record(contract),
        record(contract),
        st.binary(max_size=40).map(lambda b: (b, False)),
        st.sampled_from([b"", b"null", b"[]", b"{}", b'"x"', b"1", b"\xef\xbb\xbf{}", b"{" * 200_000]).map(lambda b: (b, False)),
    )
    return st.lists(item, min_size=1, max_size=max_size)


# -- properties ----------------------------------------------------------------------------


def check_batch(validator, batch: list[tuple[bytes, bool]], now: int) -> None:
    """The properties: no exception; valid + invalid = input; every refusal has a reason; reasons
    are bounded and show no classified value; the record and column paths agree."""
    raws = [raw for raw, _ in batch]
    n = len(raws)
    results = {p: validator.validate_json(raws, now=now, path=p) for p in ("record", "columnar")}
    for path, res in results.items():
        bad = [r.index for r in res.invalid]
        assert sorted(res.valid_index + bad) == list(range(n)), path
        assert res.n_input == n and len(set(bad)) == len(bad), path
        assert all(r.reasons for r in res.invalid), path
        assert all(r.raw == raws[r.index] for r in res.invalid), path
        assert res.valid.num_rows == res.n_valid, path
        assert res.valid.schema == validator.schema, path
        for row in res.invalid:
            for r in row.reasons:
                assert isinstance(r.message, str) and len(r.message) <= 1024, (path, r)
                json.dumps(r.as_dict(), allow_nan=False)  # dead-letter headers carry reasons as strict JSON
                assert not isinstance(r.value, str) or len(r.value) <= 256, (path, r)
                if validator.contract.redactions and batch[row.index][1]:
                    assert MARK not in json.dumps(r.as_dict()), (path, r)
    rec, col = results["record"], results["columnar"]
    assert rec.valid_index == col.valid_index, "the paths disagree on which records are valid"
    assert [(r.index, r.reasons) for r in rec.invalid] == [(r.index, r.reasons) for r in col.invalid], "the paths give other reasons"
    assert rec.valid.equals(col.valid), "the paths build other valid rows"
    STATS["cases"] += 1
    STATS["records"] += n
    STATS["invalid"] += rec.n_invalid
