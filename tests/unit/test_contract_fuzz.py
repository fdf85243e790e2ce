"""Fuzzing the record boundary: hostile bytes through decode + check, for every example contract.

A short deterministic run here (`make test`; FL_FUZZ_EXAMPLES raises it); the long run is
`bench/fuzz_contracts.py --minutes 5`. What the fuzzer found is kept below as explicit cases.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from tests.contract_fuzz import MARK, batches, check_batch

from featureline.compiler import compile_project
from featureline.contracts import ContractValidator

pytestmark = pytest.mark.fuzz
REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000_000_000
PLAN = compile_project(REPO)
CONTRACTS = sorted(PLAN.contracts)
VALIDATORS = {name: ContractValidator(PLAN.contracts[name]) for name in CONTRACTS}
EXAMPLES = int(os.environ.get("FL_FUZZ_EXAMPLES", 40))


@pytest.mark.parametrize("name", CONTRACTS)
def test_fuzz_decode_and_check(name):
    v = VALIDATORS[name]

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])  # fmt: skip
    @given(batch=batches(v.contract))
    def run(batch):
        check_batch(v, batch, NOW)

    run()


# records the properties failed on before the fix (each one fixed): every contract gets each, between two good records
FOUND: list[tuple[str, bytes]] = [
    ("deep-in-a-string-field", b'{"country": ' + b"[" * 1000 + b"]" * 1000 + b"}"),  # RecursionError out of json.loads
    ("deep-unknown-field", b'{"zz": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"),  # the same, under an unknown key
    ("escaped-lone-surrogate", b'{"country": "\\ud800"}'),  # UnicodeEncodeError re-encoding the decoded value
    ("raw-surrogate-bytes", b'{"country": "\xed\xa0\x80"}'),  # json.loads read the bytes with surrogatepass
    ("year-10000-utc", b'{"updated_at": "9999-12-31T23:59:59-01:00", "event_time": "9999-12-31T23:59:59-01:00"}'),  # OverflowError
    ("space-in-timestamp", b'{"updated_at": " 2026-01-01T00:00:00Z", "event_time": " 2026-01-01T00:00:00Z"}'),  # the paths disagreed
]
# hostile records that held before too, kept as explicit cases
EDGES: list[tuple[str, bytes]] = [
    ("nan-token", b'{"country": NaN}'),  # now a `json` reason: json.loads took NaN, msgspec does not
    ("utf-16", '{"country": "DE"}'.encode("utf-16")),  # now a `json` reason: json.loads detected UTF-16
    ("bom", b'\xef\xbb\xbf{"country": "DE"}'),
    ("year-0-utc", b'{"updated_at": "0001-01-01T00:00:00+01:00", "event_time": "0001-01-01T00:00:00+01:00"}'),
    ("huge-int", b'{"user_id": 1' + b"0" * 400 + b', "merchant_id": -' + b"9" * 5000 + b"}"),
    ("huge-float", b'{"amount": 1e400, "risk_tier": -1e400}'),
    ("duplicate-keys", b'{"country": "DE", "country": 7, "country": "de"}'),
]
GOOD = {
    "transactions": b'{"txn_id": "123e4567-e89b-12d3-a456-426614174000", "user_id": 1, "merchant_id": 2, "amount": 1.5, "currency": "EUR", '
    b'"status": "approved", "customer_email": "' + MARK.encode() + b'@example.com", "event_time": "2026-01-01T00:00:00Z"}',
    "users": b'{"user_id": 1, "country": "DE", "signup_time": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}',
    "merchants": b'{"merchant_id": 1, "category": "fuel", "country": "DE", "risk_tier": 1, "updated_at": "2026-01-01T00:00:00Z"}',
}


@pytest.mark.parametrize("name", CONTRACTS)
def test_good_records_pass(name):
    res = VALIDATORS[name].validate_json([GOOD[name]], now=NOW)
    assert res.valid_index == [0], res.invalid


@pytest.mark.parametrize("name", CONTRACTS)
@pytest.mark.parametrize("what,raw", FOUND + EDGES, ids=[w for w, _ in FOUND + EDGES])
def test_fuzz_findings(name, what, raw):
    check_batch(VALIDATORS[name], [(GOOD[name], True), (raw, True), (GOOD[name].replace(b'": 1,', b'": 2,', 1), True)], NOW)
