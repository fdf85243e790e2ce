"""Online reads across a Redis restart: the read path keeps its own connections (online/pipe.py),
so after a kill -9 and a restart from the AOF every idle one is dead; the next read must find
that out, drop them all and answer from a fresh connection, sync and async alike."""

from __future__ import annotations

import asyncio
import threading

import pytest
from tests.integration.serving import make_project

from featureline.online.store import connect_async

pytestmark = pytest.mark.integration


def _rows(n):
    return [{"user_id": u, "merchant_id": u % 20 + 1} for u in range(1, n + 1)]


def test_reads_answer_the_same_after_redis_is_killed_and_restarted(tmp_path, private_redis):
    plan, engine, store, T = make_project(tmp_path, private_redis.port, events=3_000)
    private_redis.wait_aof_written()
    want = store.get("fraud_detection", _rows(30), at_us=T)
    # several idle read connections: concurrent reads each take one
    gate = threading.Barrier(4)

    def read():
        gate.wait()
        assert store.get("fraud_detection", _rows(30), at_us=T) == want

    threads = [threading.Thread(target=read) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(store._idle) >= 2

    async def reads(aredis, k):
        return await asyncio.gather(*(store.get_async(aredis, "fraud_detection", _rows(30), at_us=T) for _ in range(k)))

    async def scenario():
        aredis = connect_async(plan, timeout=5.0)
        try:
            assert all(r == want for r in await reads(aredis, 4))
            assert len(aredis.idle) >= 2
            private_redis.kill9()
            private_redis.start()
            # the first read after the restart meets dead connections: still the same answer
            assert all(r == want for r in await reads(aredis, 1))
            assert all(r == want for r in await reads(aredis, 4))
        finally:
            await aredis.aclose()

    asyncio.run(scenario())
    assert store.get("fraud_detection", _rows(30), at_us=T) == want  # the sync store's idle ones were dead too
    assert store.get("fraud_detection", _rows(30), at_us=T) == want
