"""The stream's contract check of one polled batch, run where the batch is read.

`ContractCheck` is the Kafka source's decoder for a stream topic (kafka_source.KafkaSourceConfig
.decoders): it runs in the partition's reader process (reader_proc.py), so JSON decoding and the
contract's checks use another core than the merges into Redis. Its result, `Checked`, travels
with the batch to `StreamApplier.apply`. A record is checked when it is read, at most one poll
before it is applied: rules that compare with the clock use the time of the check.

No record's content stops the reader: the validator turns whatever a record causes into a
reason (rule `internal` when a check raised), and if building the batch's valid rows still
fails, the batch is checked again with each valid row built alone (`path="isolate"`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..contracts.result import FATAL, Reason
from ..plan import ContractPlan

log = logging.getLogger(__name__)


@dataclass
class Checked:
    """valid rows (the contract's schema), their indexes in the batch, and the refused ones."""

    valid: pa.Table
    valid_index: np.ndarray
    invalid: dict[int, tuple[Reason, ...]]
    n_internal: int = 0  # refused because a check raised on them (rule `internal`): worth a metric


class ContractCheck:
    def __init__(self, contract: ContractPlan, validator=None):
        self.contract = contract
        self._validator = validator  # made where it runs (not pickled)

    def __getstate__(self):
        return {"contract": self.contract, "_validator": None}

    def __call__(self, records: pa.RecordBatch, now_us: int | None = None) -> Checked:
        import time

        if self._validator is None:
            from ..contracts.validator import ContractValidator

            self._validator = ContractValidator(self.contract)
        now = time.time_ns() // 1000 if now_us is None else now_us
        raws = [b"" if v is None else v for v in records.column("value").to_pylist()]
        try:
            res = self._validator.validate_json(raws, now=now)
            valid = res.valid
        except FATAL:
            raise
        except BaseException as e:
            log.warning(
                "contract %s: building a batch's valid rows raised %s; checked again row by row", self.contract.id, type(e).__name__
            )
            res = self._validator.validate_json(raws, now=now, path="isolate")
            valid = res.valid
        invalid = {row.index: row.reasons for row in res.invalid}
        return Checked(valid, np.asarray(res.valid_index, dtype=np.int64), invalid, res.n_internal)
