"""The online store's interface: what the backfill, the stream, the server and the CLI need of
it, and nothing else. `online/store.py::OnlineStore` is the Redis implementation; no module
outside `online/` talks to Redis about features.

The store keeps, per entity and slot (`layout.py`: a windowed view's hop, or a latest-value
view), a block of tiles or a latest row (the Redis store keeps all of an entity's in one
value: `value.py`). It must give:

- reads as of t (`get`, `get_async`): the slot values of many entities in one round trip;
  the features are computed in the client (`read.py`);
- absolute writes (`write_slots`, the backfill): replace some slots of many entities, each
  with its expiry (`EntityWrites`);
- guarded merges (the stream): `merge_tiles` merges partial tiles into a slot atomically with
  a check and an update of the slot's last applied offset of the records' partition (so a
  record delivered twice counts once), `merge_latest` keeps the newest row, `claim` records
  the first holder of unique values, `mark_applied` records a partition's batch as complete;
  each guarded by a `state.Guard` (the store's life id and write count, checked atomically
  with the write: `state.py`);
- view resets (`reset_views`) and the store's metadata records (`read_state`,
  `begin_backfill`, `finish_backfill`, `ensure_for_stream`, `record_boundary`,
  `read_boundaries`, `get_record`/`set_record`).

A backend for another store implements these; docs/architecture.md says which files it
touches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass
class SlotWrites:
    """Absolute writes of one slot for many entities: equally long arrays of entity key
    strings (`layout.entity_key`), expiry times (ms since the epoch, int64) and values (binary:
    `TileLayout.pack_block`'s blocks, or latest rows msgpack [event_time, arrival, values])."""

    entity: str
    code: str
    ents: Any
    expire_ms: Any
    values: Any


@dataclass
class EntityWrites:
    """Absolute writes of some entities of one entity type: the slots `codes` are replaced for
    them by `writes` (a `SlotWrites` per slot with data; an entity absent from a slot's writes
    loses that slot). Every write of these slots to these entities is in this one batch, so a
    store keeping an entity's slots together writes each entity once."""

    entity: str
    codes: tuple[str, ...]
    writes: list[SlotWrites]


class OnlineBackend(ABC):
    prefix: str
    outage: Any = None  # a featureline.outage.Outage: set, guarded writes wait out the store's outages (the stream sets it)

    # -- reads ------------------------------------------------------------------------------
    @abstractmethod
    def get(self, service: str, entity_rows, *, at_us: int | None = None) -> dict[str, list]:
        """Features of `service` for each entity row as of `at_us` (default: now), as columns."""

    @abstractmethod
    async def get_async(self, conn, service: str, entity_rows, *, at_us: int | None = None) -> dict[str, list]:
        """`get` on an event loop, through `conn` (the backend's asynchronous connection)."""

    # -- absolute writes (the backfill) ---------------------------------------------------------
    @abstractmethod
    def write_slots(self, batches) -> int:
        """Apply `EntityWrites` (or functions returning one, called by the writer, so the caller
        computes the next batch meanwhile) in order; returns the number of slot values written.
        Raises the first error the store reports."""

    @abstractmethod
    def reset_views(self, views) -> int:
        """Remove every entity's values of the views' slots; returns how many were removed."""

    # -- guarded merges (the stream) ----------------------------------------------------------
    @abstractmethod
    def merge_tiles(
        self, layouts, items, *, tp: str, lo: int, hi: int, now_us: int | None = None, guard=None
    ) -> list[tuple[int, int, int]]:
        """Merge partial tiles of the `layouts` (slots of one entity type) for many entities,
        from records of partition `tp` with offsets [lo, hi]: items are (entity key, expiry
        ms of the offset record, [block per layout, b"" for none]). Returns (item, layout,
        stored offset) for the slots left alone because records up to `stored` were applied."""

    @abstractmethod
    def merge_latest(self, view: str, rows, *, guard=None) -> int:
        """rows: (entity key, event_time_us, arrival, [values]); each kept only if newer (by
        event time, then arrival) than the stored row. Returns how many were stored."""

    @abstractmethod
    def claim(self, contract: str, field: str, bucket: int, expire_ms: int, values: bytes, offsets: bytes, tp: str, guard=None) -> list:
        """Unique-value claims of one (contract, field, event-time bucket): `values` and their
        records' `offsets` (msgpack lists) of partition `tp`. Returns [index, holder, ...] of the
        values another record claimed first (`claims.py`)."""

    @abstractmethod
    def mark_applied(self, guard, next_offset: int) -> None:
        """A micro-batch of guard's partition is in the store in full."""

    # -- metadata -------------------------------------------------------------------------------
    @abstractmethod
    def read_state(self):
        """The store's marker (`state.StoreState`), or None when it holds no featureline data."""

    @abstractmethod
    async def read_state_async(self, conn):
        """`read_state` on an event loop, through `conn` (the server's /ready)."""

    @abstractmethod
    def begin_backfill(self) -> str:
        """A new store life in state `building`; returns its id."""

    @abstractmethod
    def finish_backfill(self, store_id: str) -> None:
        """State `ready`, if the store is still the life `store_id` (else `state.StoreLost`)."""

    @abstractmethod
    def ensure_for_stream(self, *, has_history: bool, group: str):
        """The state for a stream about to start (`state.ensure_for_stream`)."""

    @abstractmethod
    def guard(self, store_id: str, group: str, topic: str, partition: int):
        """The write guard of one partition's stream writes (`state.Guard`)."""

    @abstractmethod
    def record_boundary(self, plan, views, end_us: int) -> list[str]:
        """After a backfill at `end_us`: the stream continues each of the views' sources from there."""

    @abstractmethod
    def read_boundaries(self, plan, sources) -> tuple[dict, dict]:
        """Per source: the last backfill's boundary (None: none) and its epoch."""

    @abstractmethod
    def get_record(self, name: str) -> str | None:
        """A metadata record of the stream (e.g. its epoch marks), or None."""

    @abstractmethod
    def set_record(self, name: str, value: str) -> None:
        """Store a metadata record."""
