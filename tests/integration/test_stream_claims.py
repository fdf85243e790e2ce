"""Uniqueness across micro-batches: the claim script of the stream (online/claims.py CLAIM) on the real Redis."""

from __future__ import annotations

import time
import uuid

import msgspec
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def claim(services):
    import redis

    from featureline.online.claims import CLAIM

    r = redis.Redis(host=services.redis_host, port=services.redis_port)
    sha = r.script_load(CLAIM)
    head = f"fl-test-claims-{uuid.uuid4().hex[:8]}"

    expire_at = int(time.time() * 1000) + 60_000

    def run(values, offsets, tp="t:0", bucket=1):
        got = r.evalsha(sha, 1, f"{head}:{bucket}", expire_at, msgspec.msgpack.encode(values), msgspec.msgpack.encode(offsets), tp)
        return {int(got[k]): got[k + 1].decode() for k in range(0, len(got), 2)}

    yield run, r, head
    r.delete(*(r.keys(f"{head}:*") or [f"{head}:none"]))


def test_first_record_wins_and_a_replay_keeps_its_claim(claim):
    run, r, head = claim
    assert run(["a", "b", "c"], [10, 11, 12]) == {}
    # another record with "b" (a producer's retry at offset 20) is a duplicate of offset 11
    assert run(["d", "b"], [19, 20]) == {1: "t:0:11"}
    # the same records again (a replay after a crash): their own claims, no duplicates
    assert run(["a", "b", "c"], [10, 11, 12]) == {}
    # another partition's record with "c": a duplicate of t:0:12
    assert run(["c"], [5], tp="t:3") == {0: "t:0:12"}
    assert r.hget(f"{head}:1", "d") == b"t:0:19"
    assert 0 < r.pttl(f"{head}:1") <= 60_000  # the bucket's claims expire when it can change nothing


def test_buckets_of_event_time_and_same_batch_and_large_batches(claim):
    run, r, head = claim
    assert run(["x"], [1], bucket=7) == {}
    assert run(["x"], [2], bucket=7) == {0: "t:0:1"}
    # another uniqueWithin bucket of event time: "x" may appear once there too
    assert run(["y", "x"], [2, 3], bucket=8) == {}
    # a value twice in one batch: the later one is the duplicate
    assert run(["z", "q", "z"], [4, 5, 6], bucket=8) == {2: "t:0:4"}
    assert abs(r.pexpiretime(f"{head}:8") - head_expiry(r, head)) <= 0
    # more values than one chunk of the script (3,000), duplicates across chunk borders
    vals = [f"v{i}" for i in range(7_000)] + ["v0", "v6999", "v3000"]
    offs = list(range(100, 100 + len(vals)))
    assert run(vals, offs, bucket=8) == {7_000: "t:0:100", 7_001: "t:0:7099", 7_002: "t:0:3100"}
    # offsets beyond 32 bits are written exactly
    assert run(["big"], [2**40 + 7], bucket=8) == {} and r.hget(f"{head}:8", "big") == f"t:0:{2**40 + 7}".encode()


def head_expiry(r, head) -> int:
    return r.pexpiretime(f"{head}:7")  # every bucket's hash gets the expiry the caller gives
