"""Is a Kafka broker (or cluster) really usable? Used by scripts/services and
by the test helpers in tests/integration/faults.py.

    python services/kafka/health.py BOOTSTRAP TOPIC [--brokers 1,2,3] [--timeout S]

Healthy means: (with --brokers) every listed broker is registered, not
fenced and accepts connections on its own address; a message produced to TOPIC with acks=all is read back; and an offset
commit for a consumer group succeeds (the group coordinator works). TOPIC is
created by the broker on first use (auto.create.topics.enable), with the
broker's default replication factor.

Exit status: 0 healthy, 1 not healthy (the reason on stdout), 2 kafka-python
is not importable.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
import uuid

HEALTH_TOPIC = "__featureline_health"
HEALTH_GROUP = "featureline-health"


class NotHealthy(Exception):
    """The broker or cluster is not usable yet; the message says why."""


def registered_brokers(bootstrap: str, timeout_s: float = 10.0) -> dict[int, tuple[str, int]]:
    """The brokers the cluster reports as registered and not fenced: id ->
    (host, port).

    Retried until ``timeout_s``: the client may first pick a broker that has
    just died but is not fenced yet.
    """
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="featureline-health",
                request_timeout_ms=5000,
            )
            try:
                brokers = admin.describe_cluster()["brokers"]
            finally:
                admin.close()
            return {b["broker_id"]: (b["host"], b["port"]) for b in brokers if not b.get("is_fenced")}
        except Exception:  # noqa: BLE001
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def check(bootstrap: str, topic: str = HEALTH_TOPIC, brokers: set[int] | None = None, timeout_s: float = 15.0) -> None:
    """Raise NotHealthy unless the broker(s) at ``bootstrap`` work end to end."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    try:
        if brokers:
            seen = registered_brokers(bootstrap, timeout_s=min(timeout_s, 10.0))
            missing = sorted(set(brokers) - set(seen))
            if missing:
                raise NotHealthy(f"brokers {missing} are not registered (registered and unfenced: {sorted(seen)})")
            # Right after a kill -9 and restart, the dead process's
            # registration still counts until its session expires; the new
            # process opens its client port only once it has registered.
            for broker in sorted(brokers):
                host, port = seen[broker]
                try:
                    socket.create_connection((host, port), timeout=2).close()
                except OSError as exc:
                    raise NotHealthy(f"broker {broker} is registered but {host}:{port} does not accept connections ({exc})") from exc
    except NotHealthy:
        raise
    except Exception as exc:  # noqa: BLE001 - any client error means "not yet"
        raise NotHealthy(f"describe cluster: {type(exc).__name__}: {exc}") from exc

    token = uuid.uuid4().hex.encode()
    producer = consumer = None
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="featureline-health",
            acks="all",
            bootstrap_timeout_ms=5000,
            max_block_ms=int(timeout_s * 1000 * 2 / 3),
        )
        sent = producer.send(topic, value=token, headers=[("check", b"1")]).get(timeout=timeout_s)
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="featureline-health",
            group_id=HEALTH_GROUP,
            enable_auto_commit=False,
            bootstrap_timeout_ms=5000,
        )
        tp = TopicPartition(topic, sent.partition)
        consumer.assign([tp])
        consumer.seek(tp, sent.offset)
        deadline = time.monotonic() + timeout_s * 2 / 3
        found = False
        while not found and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                found = found or any(r.value == token for r in records)
        if not found:
            raise NotHealthy(f"produced to {topic}[{sent.partition}]@{sent.offset} but could not read it back")
        consumer.commit({tp: OffsetAndMetadata(sent.offset + 1, "", -1)})
    except NotHealthy:
        raise
    except Exception as exc:  # noqa: BLE001
        raise NotHealthy(f"{type(exc).__name__}: {exc}") from exc
    finally:
        try:
            if consumer is not None:
                consumer.close(autocommit=False)
            if producer is not None:
                producer.close(timeout=2)
        except Exception:  # noqa: BLE001
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic", nargs="?", default=HEALTH_TOPIC)
    parser.add_argument("--brokers", default="", help="comma-separated broker ids that must be registered")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per step")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    try:
        import kafka  # noqa: F401
    except ImportError as exc:
        print(f"kafka-python is not importable ({exc})")
        return 2
    brokers = {int(b) for b in args.brokers.split(",") if b.strip()}
    try:
        check(args.bootstrap, args.topic, brokers or None, args.timeout)
    except NotHealthy as exc:
        print(exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
