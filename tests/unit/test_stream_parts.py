"""Pure parts of the stream: what ships to Beam workers, dead-letter headers, the counters' invariant."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from featureline.compiler import compile_project
from featureline.contracts.result import Reason
from featureline.stream.apply import DeadLetter, Outcome
from featureline.stream.metrics import StreamMetrics
from featureline.stream.pipeline import stream_sources
from featureline.stream.sinks import HEADER, dead_letter_headers, dlq_topic

REPO = Path(__file__).resolve().parents[2]


def test_the_compiled_plan_pickles_for_the_workers():
    plan = compile_project(REPO)
    again = pickle.loads(pickle.dumps(plan))
    assert again == plan
    assert again.views["user_transactions"].features == plan.views["user_transactions"].features
    assert stream_sources(again) == {"transactions": "transactions"}


def test_dead_letter_headers_name_contract_rule_field_and_source():
    plan = compile_project(REPO)
    contract = plan.contracts["transactions"]
    why = (Reason("amount", "minimum", -3.0, "-3.0 is below the minimum 0"), Reason("currency", "enum", "XXX", "'XXX' is not one of ..."))
    out = Outcome("transactions", 2, 100, 199)
    dl = DeadLetter(150, b"42", b'{"amount": -3}', 1_700_000_000_000, why)
    h = {k.removeprefix(HEADER): v.decode() for k, v in dead_letter_headers(contract, out, dl)}
    assert (h["topic"], h["partition"], h["offset"]) == ("transactions", "2", "150")
    assert (h["contract"], h["contract.version"]) == ("transactions", contract.version)
    assert (h["rule"], h["field"], h["message"]) == ("minimum", "amount", "-3.0 is below the minimum 0")
    assert [(r["field"], r["rule"]) for r in json.loads(h["reasons"])] == [("amount", "minimum"), ("currency", "enum")]
    assert dlq_topic("transactions") == "transactions.dlq"


def test_metrics_count_every_record_once():
    m = StreamMetrics()
    a = Outcome("t", 0, 0, 99, consumed=100, applied=90, dead_lettered=7, filtered=3, late=2)
    a.timestamps_ms, a.written_ms = np.array([1000, 1500]), 2000
    m.record(a)
    m.record(Outcome("t", 1, 0, 9, consumed=10, applied=10))
    assert m.balanced()
    assert m.next_offset == {("t", 0): 100, ("t", 1): 10}
    assert m.freshness() == (750.0, 995.0)
    assert "consumed 110 = applied 100 + dead-lettered 7 + filtered 3 | late 2" in m.line()
    m.record(Outcome("t", 0, 100, 100, consumed=1))  # a record not accounted for
    assert not m.balanced()


def test_two_readers_per_partition_only_when_cores_are_left_over():
    from featureline.stream.pipeline import auto_readers_per_partition

    assert auto_readers_per_partition(1, cores=2) == 2  # one partition on this machine: two readers take turns
    assert auto_readers_per_partition(2, cores=2) == 1
    assert auto_readers_per_partition(4, cores=2) == 1
    assert auto_readers_per_partition(3, cores=8) == 2
    assert auto_readers_per_partition(0, cores=8) == 1


def test_an_outage_is_one_line_down_and_one_back_with_doubling_capped_waits(capsys):
    import time

    from featureline.outage import Outage

    o = Outage("Redis (test)", first_s=0.1, max_s=0.5)
    began = time.monotonic() - 3.0  # the try that failed had been waiting 3 s
    waits = [o.failed(ConnectionError("refused"), since=began if i == 0 else None) for i in range(6)]
    assert waits == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    o.ok()
    o.ok()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "unreachable (ConnectionError: refused)" in lines[0]
    assert "back after 3." in lines[1] and "(6 tries)" in lines[1]
    assert o.count == 1 and not o.down
