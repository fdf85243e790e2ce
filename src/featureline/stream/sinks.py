"""The stream's Kafka-side sinks: dead letters to `<topic>.dlq`, offsets to the consumer group.

Dead letters carry the original key and value, and headers in Kafka Connect's DLQ style
(`<prefix>.<name>`, UTF-8 strings):

    featureline.errors.topic / .partition / .offset   where the record came from
    featureline.errors.contract / .contract.version    the contract it broke
    featureline.errors.rule / .field / .message        its first reason
    featureline.errors.reasons                         all reasons, as a JSON list of
                                                       {field, rule, value, message}
    featureline.errors.timestamp                       the record's Kafka timestamp (ms)

Offsets are committed per partition as "next offset to read" (Kafka's convention), in the
same Kafka transaction as the batch's dead letters, after Redis acknowledged its merges
(the caller's order), so a crash at any point replays from the last commit, the idempotent
merges count nothing twice, and the dead letters of an aborted try are never read by a
`read_committed` consumer.
"""

from __future__ import annotations

import json

from ..plan import ContractPlan
from .outcome import Outcome

HEADER = "featureline.errors."


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def kafka_config(plan) -> dict:
    """kafka-python client settings from the project (bootstrap, security, extra client options)."""
    import os

    p = plan.project
    cfg: dict = {"bootstrap_servers": p.kafka_bootstrap, "security_protocol": p.kafka_security_protocol}
    if p.kafka_sasl_mechanism:
        cfg["sasl_mechanism"] = p.kafka_sasl_mechanism
        cfg["sasl_plain_username"] = p.kafka_sasl_username
        if p.kafka_sasl_password_env:
            cfg["sasl_plain_password"] = os.environ.get(p.kafka_sasl_password_env)
    cfg.update(dict(p.kafka_client))
    return cfg


def dead_letter_headers(contract: ContractPlan, out: Outcome, dl) -> list[tuple[str, bytes]]:
    first = dl.reasons[0]
    h = {
        "topic": out.topic,
        "partition": str(out.partition),
        "offset": str(dl.offset),
        "contract": contract.id,
        "contract.version": contract.version,
        "rule": first.rule,
        "field": first.field or "",
        "message": first.message,
        "reasons": json.dumps([r.as_dict() for r in dl.reasons], default=str),
        "timestamp": str(dl.timestamp_ms),
    }
    return [(HEADER + k, v.encode("utf-8")) for k, v in h.items()]


class Deliver:
    """Dead letters and offsets of a micro-batch in one Kafka transaction, per source partition.

    For each (topic, partition) a transactional producer (id `featureline.<group>.<topic>.<partition>`)
    sends the batch's dead letters to `<topic>.dlq` and the next offset to the consumer group,
    then commits: both or neither. A restarted job's producer with the same id fences and aborts
    what a killed one left open, so a crash anywhere replays the batch and the dead-letter topic
    still holds each bad record once for `read_committed` readers (Kafka's exactly-once idiom);
    the Redis side of the replay is idempotent on its own (`online/merge.py`)."""

    def __init__(self, config: dict, group_id: str, contracts: dict[str, ContractPlan]):
        self.config = {k: v for k, v in config.items()}
        self.group_id = group_id
        self.contracts = contracts  # topic -> contract
        self.producers: dict[tuple[str, int], object] = {}
        self.errors: list[BaseException] = []

    def _producer(self, topic: str, partition: int):
        p = self.producers.get((topic, partition))
        if p is None:
            p = self.producers[(topic, partition)] = self._new_producer(topic, partition)
        return p

    def start(self, partitions) -> None:
        """Start (init_transactions) the producers of these (topic, partition)s, in parallel: each
        waits on the broker (coordinator lookup, fencing an earlier producer with its id)."""
        from concurrent.futures import ThreadPoolExecutor

        todo = [tuple(tp) for tp in partitions if tuple(tp) not in self.producers]
        if not todo:
            return
        with ThreadPoolExecutor(min(8, len(todo))) as ex:
            made = list(ex.map(lambda tp: (tp, self._new_producer(*tp)), todo))
        self.producers.update(made)

    def _new_producer(self, topic: str, partition: int):
        from kafka import KafkaProducer

        cfg = {k: v for k, v in self.config.items() if k in KafkaProducer.DEFAULT_CONFIG}
        cfg.setdefault("retry_backoff_ms", 5)  # the transaction calls retry while the coordinator finishes the last one
        cfg.setdefault("linger_ms", 2)
        p = KafkaProducer(acks="all", transactional_id=f"featureline.{self.group_id}.{topic}.{partition}", **cfg)
        p.init_transactions()
        return p

    def deliver(self, out: Outcome) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        p = self._producer(out.topic, out.partition)
        p.begin_transaction()
        try:
            if out.dead:
                topic, contract = dlq_topic(out.topic), self.contracts[out.topic]
                for dl in out.dead:
                    p.send(topic, key=dl.key, value=dl.value, headers=dead_letter_headers(contract, out, dl)).add_errback(
                        self.errors.append
                    )
            p.send_offsets_to_transaction({TopicPartition(out.topic, out.partition): OffsetAndMetadata(out.hi + 1, "", -1)}, self.group_id)
            p.commit_transaction()
        except BaseException:
            try:
                p.abort_transaction()
            except Exception:  # noqa: S110 - the original error is the one to report
                pass
            raise
        if self.errors:
            err, self.errors = self.errors[0], []
            raise RuntimeError(f"dead-letter produce failed: {err!r}")

    def close(self) -> None:
        for p in self.producers.values():
            p.close()


class LagProbe:
    """Per partition: end offset - next offset to apply (for the metrics)."""

    def __init__(self, config: dict):
        self.config = config
        self._consumer = None

    def lag(self, next_offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        from kafka import KafkaConsumer
        from kafka.structs import TopicPartition

        if not next_offsets:
            return {}
        if self._consumer is None:
            self._consumer = KafkaConsumer(**{k: v for k, v in self.config.items() if k in KafkaConsumer.DEFAULT_CONFIG})
        tps = [TopicPartition(t, p) for t, p in next_offsets]
        ends = self._consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): max(0, ends[tp] - next_offsets[(tp.topic, tp.partition)]) for tp in tps}

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


def read_dead_letters(config: dict, topic: str, *, timeout_s: float = 10.0) -> list[dict]:
    """Every committed dead letter of `topic` (read from `<topic>.dlq` up to its end at call
    time, `read_committed`), as dicts: source partition/offset, contract, rule, field, message,
    reasons, key and value."""
    import time

    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    cfg = {k: v for k, v in config.items() if k in KafkaConsumer.DEFAULT_CONFIG}
    c = KafkaConsumer(enable_auto_commit=False, isolation_level="read_committed", **cfg)
    try:
        parts = c.partitions_for_topic(dlq_topic(topic)) or set()
        tps = [TopicPartition(dlq_topic(topic), p) for p in sorted(parts)]
        if not tps:
            return []
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        out: list[dict] = []
        deadline = time.monotonic() + timeout_s
        while any(c.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                for m in recs:
                    h = {k.removeprefix(HEADER): v.decode("utf-8", "replace") for k, v in (m.headers or []) if k.startswith(HEADER)}
                    out.append(
                        {
                            "source": f"{h.get('topic')}:{h.get('partition')}:{h.get('offset')}",
                            "contract": f"{h.get('contract')} v{h.get('contract.version')}",
                            "field": h.get("field") or None,
                            "rule": h.get("rule"),
                            "message": h.get("message"),
                            "reasons": json.loads(h["reasons"]) if "reasons" in h else [],
                            "key": m.key.decode("utf-8", "replace") if m.key is not None else None,
                            "value": m.value.decode("utf-8", "replace") if m.value is not None else None,
                        }
                    )
        return out
    finally:
        c.close()
