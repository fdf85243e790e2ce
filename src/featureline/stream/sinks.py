"""The stream's Kafka-side sinks: dead letters to `<topic>.dlq`, offsets to the consumer group.

Dead letters carry the original key and value, and headers in Kafka Connect's DLQ style
(`<prefix>.<name>`, UTF-8 strings):

    featureline.errors.topic / .partition / .offset   where the record came from
    featureline.errors.contract / .contract.version    the contract it broke
    featureline.errors.rule / .field / .message        its first reason
    featureline.errors.reasons                         all reasons, as a JSON list of
                                                       {field, rule, value, message}
    featureline.errors.timestamp                       the record's Kafka timestamp (ms)
    featureline.errors.stub / .value.size              only on a stub: a record too large for the
                                                       dead-letter topic, sent without its value

Every header is bounded (`HEADER_MAX`, `REASONS_MAX`) and so is the whole dead letter (its
topic's max.message.bytes): one too large is sent as a stub (no value; the source
topic/partition/offset point at it, the reasons and the size say what it was).

Offsets are committed per partition as "next offset to read" (Kafka's convention), in the
same Kafka transaction as the batch's dead letters, after Redis acknowledged its merges
(the caller's order), so a crash at any point replays from the last commit, the idempotent
merges count nothing twice, and the dead letters of an aborted try are never read by a
`read_committed` consumer.
"""

from __future__ import annotations

import json

from ..plan import ContractPlan
from .errors import StreamStopped
from .outcome import Outcome

HEADER = "featureline.errors."


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def kafka_config(plan) -> dict:
    """kafka-python client settings from the project, secrets read now (for a client made now)."""
    from ..secrets import kafka_config as resolved

    return resolved(plan.project)


def kafka_settings(plan) -> dict:
    """The same with secrets as `${VAR}` references: what may be kept, pickled or printed
    (`secrets.resolve_kafka` reads them where the client is made)."""
    from ..secrets import kafka_settings as refs

    return refs(plan.project)


# Dead letters are bounded: each header value at most HEADER_MAX bytes, the reasons header at
# most REASONS_MAX (values and messages are cut where reasons are made, contracts/result.py),
# and the whole record below its topic's limit; one too large even so goes as a stub.
HEADER_MAX = 2048
REASONS_MAX = 16 * 1024
# max.message.bytes of the dead-letter topics featureline creates (Kafka's default is 1,048,588)
DLQ_MAX_MESSAGE_BYTES = 1_048_576
# record batch header, record framing and the producer's own accounting, with room to spare
RECORD_OVERHEAD = 4096
DEFAULT_MAX_REQUEST_SIZE = 1_048_576  # kafka-python's max_request_size
# the smallest dead-letter topic limit a stub always fits in (headers at their bounds)
MIN_DLQ_MESSAGE_BYTES = REASONS_MAX + 12 * HEADER_MAX + RECORD_OVERHEAD + 2 * HEADER_MAX


class Abandoned(RuntimeError):
    """The job that handed this batch over died during a retry: leave it to the job's restart."""


class DeadLetterError(StreamStopped):
    """A dead letter that cannot be written even as a stub (not worth retrying: the job stops)."""


class _TooLarge(Exception):
    pass


def _cut(text: str, limit: int) -> str:
    b = text.encode("utf-8")
    if len(b) <= limit:
        return text
    return b[: limit - 40].decode("utf-8", "ignore") + f"... ({len(b):,} bytes)"


def _reasons_json(reasons) -> str:
    """All reasons as JSON, at most REASONS_MAX bytes: as many as fit, then how many more."""
    items = [r.as_dict() for r in reasons]
    text = json.dumps(items, default=str)
    if len(text.encode()) <= REASONS_MAX:
        return text
    kept: list = []
    size = 64
    for it in items:
        n = len(json.dumps(it, default=str).encode()) + 2
        if size + n > REASONS_MAX:
            break
        kept.append(it)
        size += n
    more = len(items) - len(kept)
    kept.append({"field": None, "rule": "truncated", "value": None, "message": f"{more:,} more reasons not shown"})
    return json.dumps(kept, default=str)


def dead_letter_headers(contract: ContractPlan, out: Outcome, dl, *, stub_of: int | None = None) -> list[tuple[str, bytes]]:
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
        "reasons": _reasons_json(dl.reasons),
        "timestamp": str(dl.timestamp_ms),
    }
    if stub_of is not None:
        h["stub"] = "true"
        h["value.size"] = str(stub_of)
    return [(HEADER + k, _cut(v, REASONS_MAX if k == "reasons" else HEADER_MAX).encode("utf-8")) for k, v in h.items()]


def dead_letter_record(contract: ContractPlan, out: Outcome, dl, limit: int) -> tuple[bytes | None, bytes | None, list]:
    """(key, value, headers) of a dead letter of at most `limit` bytes: the record as it came, or,
    when that is too large, a stub (no value; its size in `featureline.errors.value.size`, the
    source topic/partition/offset and reasons as usual) so nothing disappears."""
    headers = dead_letter_headers(contract, out, dl)
    key, value = dl.key, dl.value
    if _size(key, value, headers) <= limit:
        return key, value, headers
    headers = dead_letter_headers(contract, out, dl, stub_of=len(value or b""))
    if key is not None and len(key) > HEADER_MAX:
        key = None
    if _size(key, None, headers) > limit:
        raise DeadLetterError(
            f"dead letter of {out.topic}:{out.partition}:{dl.offset} does not fit in {limit:,} bytes even as a stub: "
            f"raise max.message.bytes of {dlq_topic(out.topic)} (featureline creates it with {DLQ_MAX_MESSAGE_BYTES:,})"
        )
    return key, None, headers


def _size(key, value, headers) -> int:
    return len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers) + RECORD_OVERHEAD


def _bounded(fn, timeout_s: float, what: str):
    """fn() in a thread, waited for at most timeout_s: kafka-python's transaction calls wait
    without a timeout, and a broker outage must not hang the job. On timeout the caller drops
    the producer (its successor's init_transactions fences it, which ends the wait)."""
    import threading

    box: list = []
    done = threading.Event()

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box.append((False, e))
        finally:
            done.set()

    threading.Thread(target=run, name=f"featureline-{what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise TimeoutError(f"{what} did not finish within {timeout_s:.0f} s")
    ok, value = box[0]
    if not ok:
        raise value
    return value


class Deliver:
    """Dead letters and offsets of a micro-batch in one Kafka transaction, per source partition.

    For each (topic, partition) a transactional producer (id `featureline.<group>.<topic>.<partition>`)
    sends the batch's dead letters to `<topic>.dlq` and the next offset to the consumer group,
    then commits: both or neither. A restarted job's producer with the same id fences and aborts
    what a killed one left open, so a crash anywhere replays the batch and the dead-letter topic
    still holds each bad record once for `read_committed` readers (Kafka's exactly-once idiom);
    the Redis side of the replay is idempotent on its own (`online/merge.py`).

    A dead letter that fails to send aborts the transaction: the offsets never pass it. A failure
    (broker down, a timeout, an aborted transaction) is retried with backoff until it succeeds:
    the producer is made anew (fencing the old one, which completes or aborts its transaction),
    the group's committed offset tells whether the batch's commit had landed, and if not the batch
    is sent again. Not retried: a dead letter that cannot fit (DeadLetterError), and a producer
    fenced by another job with the same group (two jobs on one group: this one stops)."""

    def __init__(self, config: dict, group_id: str, contracts: dict[str, ContractPlan], *, call_timeout_s: float = 30.0, alive=None):
        self.config = {k: v for k, v in config.items()}
        self.group_id = group_id
        self.contracts = contracts  # topic -> contract
        self.call_timeout_s = call_timeout_s
        self.producers: dict[tuple[str, int], object] = {}
        self.limits: dict[str, int] = {}  # dead-letter topic -> bytes a record may take
        self.outage = None  # one per process: an outage is one line, whatever the partitions
        self.alive = alive or (lambda: True)  # False: the job is gone, stop retrying (its restart takes over)
        self._consumer = None

    def _producer(self, topic: str, partition: int):
        p = self.producers.get((topic, partition))
        if p is None:
            p = self.producers[(topic, partition)] = self._new_producer(topic, partition)
        return p

    def start(self, partitions) -> None:
        """Start (init_transactions) the producers of these (topic, partition)s, in parallel: each
        waits on the broker (coordinator lookup, fencing an earlier producer with its id)."""
        from concurrent.futures import ThreadPoolExecutor

        from kafka.errors import ProducerFencedError

        from ..outage import Outage, retrying, transient_errors

        def once() -> None:
            if not self.alive():
                raise Abandoned("the job is gone")
            todo = [tuple(tp) for tp in partitions if tuple(tp) not in self.producers]
            if not todo:
                return
            with ThreadPoolExecutor(min(8, len(todo))) as ex:
                made = list(ex.map(lambda tp: (tp, self._try_new_producer(*tp)), todo))
            self.producers.update((tp, p) for tp, p in made if not isinstance(p, BaseException))
            failed = [p for _, p in made if isinstance(p, BaseException)]
            for e in failed:
                if isinstance(e, ProducerFencedError):
                    raise e
            if failed:
                raise failed[0]

        if self.outage is None:
            self.outage = Outage("Kafka (the stream's dead letters and offset commits)")
        retrying(once, self.outage, transient_errors())

    def _try_new_producer(self, topic: str, partition: int):
        try:
            return self._new_producer(topic, partition)
        except Exception as e:  # noqa: BLE001 - start() retries
            return e

    def _producer_config(self) -> dict:
        from kafka import KafkaProducer

        cfg = {k: v for k, v in self.config.items() if k in KafkaProducer.DEFAULT_CONFIG}
        cfg.setdefault("retry_backoff_ms", 5)  # the transaction calls retry while the coordinator finishes the last one
        cfg.setdefault("linger_ms", 2)
        cfg.setdefault("max_block_ms", 10_000)  # init_transactions and metadata waits during an outage
        cfg.setdefault("request_timeout_ms", 10_000)
        cfg.setdefault("delivery_timeout_ms", 20_000)
        return cfg

    def _new_producer(self, topic: str, partition: int):
        from kafka import KafkaProducer

        p = KafkaProducer(acks="all", transactional_id=f"featureline.{self.group_id}.{topic}.{partition}", **self._producer_config())
        try:
            p.init_transactions()
        except BaseException:
            p.close(timeout=0)
            raise
        return p

    def _drop(self, topic: str, partition: int) -> None:
        p = self.producers.pop((topic, partition), None)
        if p is None:
            return
        try:
            _bounded(p.abort_transaction, 5, "abort")
        except BaseException:  # noqa: BLE001,S110 - the producer is dropped anyway; its successor fences it
            pass
        try:
            p.close(timeout=0)
        except Exception:  # noqa: S110
            pass

    def limit(self, topic: str) -> int:
        """Bytes one dead letter of `topic` may take: its dead-letter topic's max.message.bytes
        (looked up once) and the producer's max_request_size, less framing."""
        dlq = dlq_topic(topic)
        if dlq not in self.limits:
            topic_max = dlq_max_message_bytes(self.config, dlq)
            request_max = int(self.config.get("max_request_size", DEFAULT_MAX_REQUEST_SIZE))
            self.limits[dlq] = min(topic_max, request_max)
        return self.limits[dlq]

    def deliver(self, out: Outcome) -> None:
        import time

        from kafka.errors import ProducerFencedError

        from ..outage import Outage

        tp = (out.topic, out.partition)
        if self.outage is None:
            self.outage = Outage("Kafka (the stream's dead letters and offset commits)")
        outage = self.outage
        retry = resized = False
        while True:
            t_try = time.monotonic()
            try:
                if retry and self._committed(out) >= out.hi + 1:
                    break  # the commit had landed before the failure
                self._transaction(out)
                break
            except (DeadLetterError, ProducerFencedError):
                self._drop(*tp)
                raise
            except _TooLarge as e:
                # the broker refused a dead letter as too large: its topic's limit changed; look it up again, once
                self._drop(*tp)
                self.limits.pop(dlq_topic(out.topic), None)
                if resized:
                    raise DeadLetterError(
                        f"{e}; even sized to {dlq_topic(out.topic)}'s max.message.bytes as the broker reports it"
                    ) from None
                resized = retry = True
            except Exception as e:  # noqa: BLE001 - retried: the broker decides when it is back
                self._drop(*tp)
                retry = True
                time.sleep(outage.failed(e, since=t_try))
                if not self.alive():
                    raise Abandoned("the job is gone: its restart replays this batch") from None
        outage.ok()

    def _transaction(self, out: Outcome) -> None:
        from kafka.errors import MessageSizeTooLargeError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        p = self._producer(out.topic, out.partition)
        p.begin_transaction()
        futures = []
        if out.dead:
            topic, contract, limit = dlq_topic(out.topic), self.contracts[out.topic], self.limit(out.topic)
            for dl in out.dead:
                key, value, headers = dead_letter_record(contract, out, dl, limit)
                try:
                    futures.append(p.send(topic, key=key, value=value, headers=headers))
                except MessageSizeTooLargeError as e:  # the client's own limit (max_request_size)
                    raise _TooLarge(f"a dead letter to {topic} is too large for the producer ({e!r})") from None
        offsets = {TopicPartition(out.topic, out.partition): OffsetAndMetadata(out.hi + 1, "", -1)}
        # the offsets join the transaction while the dead letters are on their way (one round trip less)
        _bounded(lambda: p.send_offsets_to_transaction(offsets, self.group_id), self.call_timeout_s, "send-offsets")
        if futures:
            p.flush(timeout=self.call_timeout_s)
            for f in futures:  # every dead letter acknowledged, or the transaction is aborted with its offsets
                if not f.is_done:
                    raise TimeoutError(f"dead letters to {dlq_topic(out.topic)} not acknowledged within {self.call_timeout_s:.0f} s")
                if f.failed():
                    if isinstance(f.exception, MessageSizeTooLargeError):
                        raise _TooLarge(f"the broker refused a dead letter to {dlq_topic(out.topic)} as too large ({f.exception!r})")
                    raise RuntimeError(f"dead letter to {dlq_topic(out.topic)} failed: {f.exception!r}")
        _bounded(p.commit_transaction, self.call_timeout_s, "commit")

    def _committed(self, out: Outcome) -> int:
        """The group's committed offset of out's partition (-1: none), read after a new producer
        with the partition's transactional id completed or aborted the last transaction."""
        from kafka import KafkaConsumer
        from kafka.structs import TopicPartition

        self._producer(out.topic, out.partition)  # init_transactions: the last transaction is final now
        if self._consumer is None:
            cfg = {k: v for k, v in self.config.items() if k in KafkaConsumer.DEFAULT_CONFIG}
            self._consumer = KafkaConsumer(group_id=self.group_id, enable_auto_commit=False, **cfg)
        got = self._consumer.committed(TopicPartition(out.topic, out.partition), timeout_ms=10_000)
        return -1 if got is None else int(got)

    def close(self) -> None:
        for p in self.producers.values():
            try:
                p.close(timeout=5)
            except Exception:  # noqa: S110 - closing during an outage
                pass
        if self._consumer is not None:
            self._consumer.close(autocommit=False)


def dlq_max_message_bytes(config: dict, dlq: str) -> int:
    """max.message.bytes of a dead-letter topic (the broker's answer; Kafka's default if it has none)."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(**{k: v for k, v in config.items() if k in KafkaAdminClient.DEFAULT_CONFIG})
    try:
        got = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, dlq, {"max.message.bytes": None})], config_filter="all")
        value = got.get("topic", {}).get(dlq, {}).get("max.message.bytes", {}).get("value")
        return int(value) if value is not None else 1_048_588
    finally:
        admin.close()


class LagProbe:
    """Per partition: end offset - next offset to apply (for the metrics). `probe` asks in a
    thread of its own, so a slow or unreachable broker never holds up the stream."""

    def __init__(self, config: dict):
        self.config = config
        self._consumer = None
        self._busy = False

    def lag(self, next_offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        from kafka import KafkaConsumer
        from kafka.structs import TopicPartition

        if not next_offsets:
            return {}
        if self._consumer is None:
            self._consumer = KafkaConsumer(**{k: v for k, v in self.config.items() if k in KafkaConsumer.DEFAULT_CONFIG})
        tps = [TopicPartition(t, p) for t, p in next_offsets]
        ends = self._consumer.end_offsets(tps, timeout_ms=10_000)
        return {(tp.topic, tp.partition): max(0, ends[tp] - next_offsets[(tp.topic, tp.partition)]) for tp in tps}

    def probe(self, next_offsets: dict[tuple[str, int], int], on_lag) -> None:
        """on_lag(lag) from a thread when the broker answers; nothing if a probe is still out
        (errors are dropped: lag is informative, the stream's outage lines tell of the broker)."""
        import threading

        if self._busy:
            return
        self._busy = True

        def run() -> None:
            try:
                on_lag(self.lag(next_offsets))
            except Exception:  # noqa: S110 - see the docstring
                pass
            finally:
                self._busy = False

        threading.Thread(target=run, name="featureline-lag", daemon=True).start()

    def close(self) -> None:
        if self._consumer is not None and not self._busy:
            self._consumer.close()


def read_dead_letters(config: dict, topic: str, *, timeout_s: float = 10.0, contract: ContractPlan | None = None) -> list[dict]:
    """Every committed dead letter of `topic` (read from `<topic>.dlq` up to its end at call
    time, `read_committed`), as dicts: source partition/offset, contract, rule, field, message,
    reasons, key and value. With `contract`, the value is shown with its classified fields
    redacted (`contracts.redact.redact_payload`; the record in the topic stays as it was)."""
    from ..contracts.redact import redact_payload

    def show(value: bytes | None) -> str | None:
        if value is None:
            return None
        return redact_payload(contract, value) if contract is not None else value.decode("utf-8", "replace")

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
                            "value": show(m.value),
                            "stub": h.get("stub") == "true",
                        }
                    )
        return out
    finally:
        c.close()
