"""A Kafka producer that checks each record against its contract before sending it.

For producer teams who want to fail fast, with the same rules and the same reasons
as ingestion (the records that would be dead-lettered are refused at the source):

    from featureline.contracts.producer import ContractProducer, ContractViolation

    producer = ContractProducer("transactions", bootstrap_servers="127.0.0.1:9092")
    try:
        producer.send({"txn_id": ..., "user_id": 42, ...}, key=b"42")
    except ContractViolation as e:
        print(e.reasons)       # [Reason(field, rule, value, message), ...]
    producer.flush()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..plan import ContractPlan
from .result import FATAL, Reason, failure


class ContractViolation(ValueError):
    def __init__(self, contract: str, version: str, reasons: tuple[Reason, ...]):
        self.contract = contract
        self.version = version
        self.reasons = reasons
        detail = "; ".join(f"{r.field or 'record'}: {r.message} [{r.rule}]" for r in reasons)
        super().__init__(f"record violates contract {contract} v{version}: {detail}")


def load_contract(contract: str | ContractPlan, project: str | Path = ".") -> ContractPlan:
    if isinstance(contract, ContractPlan):
        return contract
    from ..compiler import compile_contract_texts
    from .ci import _rel, discover

    plans, problems = compile_contract_texts({_rel(f): f for f in discover(None, Path(project))})
    if contract not in plans:
        raise KeyError(
            f"no contract `{contract}` (known: {', '.join(sorted(plans))})"
            + (f"; problems: {problems[0].render(snippet=False)}" if problems else "")
        )
    return plans[contract]


class ContractProducer:
    """Validate, encode (JSON) and send records; refuse invalid ones with their reasons."""

    def __init__(
        self,
        contract: str | ContractPlan,
        *,
        topic: str | None = None,
        project: str | Path = ".",
        producer: Any = None,
        **kafka_config: Any,
    ):
        import msgspec

        from .validator import ContractValidator

        self.contract = load_contract(contract, project)
        self.topic = topic or self.contract.topic
        if self.topic is None:
            raise ValueError(f"contract {self.contract.id} binds no topic: pass topic=")
        self.validator = ContractValidator(self.contract)
        self._encode = msgspec.json.Encoder().encode
        if producer is None:
            from kafka import KafkaProducer

            producer = KafkaProducer(**kafka_config)
        self.producer = producer
        self.sent = 0
        self.refused = 0

    def check(self, record: dict | bytes) -> bytes:
        """The record's JSON bytes if it follows the contract; else raise ContractViolation
        (also for a record that does not encode as JSON, or whose check raised: rule `internal`)."""
        if isinstance(record, (bytes, bytearray)):
            raw = bytes(record)
        else:
            try:
                raw = self._encode(record)
            except FATAL:
                raise
            except BaseException as e:
                self.refused += 1
                why = failure(e, withhold=bool(self.contract.redactions), rule="json", what="cannot encode the record as JSON")
                raise ContractViolation(self.contract.id, self.contract.version, (why,)) from None
        res = self.validator.validate_json([raw])
        if res.invalid:
            self.refused += 1
            raise ContractViolation(self.contract.id, self.contract.version, res.invalid[0].reasons)
        return raw

    def send(self, record: dict | bytes, *, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None):
        """Validate then send; returns kafka-python's future. Nothing is sent for an invalid record."""
        raw = self.check(record)
        fut = self.producer.send(self.topic, value=raw, key=key, headers=headers)
        self.sent += 1
        return fut

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout)

    def close(self) -> None:
        self.producer.close()

    def __enter__(self) -> ContractProducer:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
        self.close()
