"""Where the stream starts reading each partition, decided once at launch and never clamped silently.

Per partition: the consumer group's committed offset, else the start policy (earliest or
latest). When Redis says it has applied less than the group committed (it lost its last writes:
a crash restored from an AOF, a failover to a lagging replica), the stream starts where Redis
stands instead and replays the difference: the merges are idempotent and the dead letters of
those records, committed before, are not sent again (`dlq_from`).

A start outside the partition's [first, end] offsets stops the job (`OffsetRangeError`): below the
first offset, records were deleted before the stream read them (retention); with `skip_lost`
it starts at the first offset and counts the gap as lost.
"""

from __future__ import annotations

from .kafka_source import OffsetRangeError


def resolve_starts(
    config: dict,
    group: str,
    partitions,
    *,
    policy: str = "earliest",
    skip_lost: bool = False,
    applied: dict | None = None,
) -> tuple[dict[tuple[str, int], int], int, dict[tuple[str, int], int]]:
    """(start offset per (topic, partition), offsets skipped as lost, per partition the group's
    committed offset where the start is below it: no dead letters before that one).

    `applied`: per (topic, partition), the next offset after what Redis holds (None: unknown)."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    tps = [TopicPartition(t, p) for t, p in partitions]
    if not tps:
        return {}, 0, {}
    cfg = {k: v for k, v in config.items() if k in KafkaConsumer.DEFAULT_CONFIG}
    c = KafkaConsumer(group_id=group, enable_auto_commit=False, isolation_level="read_committed", **cfg)
    try:
        begin = c.beginning_offsets(tps, timeout_ms=30_000)
        end = c.end_offsets(tps, timeout_ms=30_000)
        committed = {tp: c.committed(tp, timeout_ms=30_000) for tp in tps}
    finally:
        c.close(autocommit=False)
    starts: dict[tuple[str, int], int] = {}
    dlq_from: dict[tuple[str, int], int] = {}
    lost = 0
    for tp in tps:
        key = (tp.topic, tp.partition)
        b, e, got = begin[tp], end[tp], committed[tp]
        if got is not None:
            start, why = got, f"committed by {group}"
        else:
            start, why = (b if policy == "earliest" else e), f"no committed offset, --start {policy}"
        have = (applied or {}).get(key)
        if have is not None and got is not None and have < got:
            start, why = have, f"Redis has applied up to {have:,}, {group} committed {got:,}"
            dlq_from[key] = got
        if start < b:
            if not skip_lost:
                raise OffsetRangeError.make(tp.topic, tp.partition, start, why, b, e)
            lost += b - start
            start = b
        elif start > e:
            raise OffsetRangeError.make(tp.topic, tp.partition, start, why, b, e)
        starts[key] = start
    return starts, lost, dlq_from


def committed_offsets(config: dict, group: str, partitions) -> dict[tuple[str, int], int | None]:
    """The group's committed offset per (topic, partition) (None: none)."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    cfg = {k: v for k, v in config.items() if k in KafkaConsumer.DEFAULT_CONFIG}
    c = KafkaConsumer(group_id=group, enable_auto_commit=False, **cfg)
    try:
        return {(t, p): c.committed(TopicPartition(t, p), timeout_ms=30_000) for t, p in partitions}
    finally:
        c.close(autocommit=False)
