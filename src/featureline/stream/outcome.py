"""What one micro-batch did: counts, dead letters, timestamps (for the sinks and the metrics).

Kept apart from apply.py so the Kafka transaction process (deliver_proc.py) unpickles it
without importing the applier's DuckDB, Redis and contract engine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from ..contracts.result import Reason


@dataclass
class DeadLetter:
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    reasons: tuple[Reason, ...]


@dataclass
class Outcome:
    """The effect of one micro-batch, for the sinks and the metrics."""

    topic: str
    partition: int
    lo: int
    hi: int
    consumed: int = 0
    applied: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    late: int = 0
    internal: int = 0  # dead letters because a check failed on the record (rule `internal`)
    lost: int = 0  # offsets skipped before this batch over records deleted unread (--skip-lost)
    before_boundary: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    by_rule: Counter = field(default_factory=Counter)
    timestamps_ms: np.ndarray | None = None  # Kafka record timestamps of the applied records
    written_ms: int = 0  # when Redis acknowledged the batch's effects

    @property
    def tp(self) -> str:
        return f"{self.topic}:{self.partition}"
