"""The aggregation registry: every engine asks here what an aggregation is and does.

An aggregation's module holds its accumulators and functions (`base.py` has the interface);
registering it is adding the module below. The order of `_STATE_MODULES` fixes the order of
accumulators in a tile, which names the tile slots in Redis (`online/layout.py::slot_code`):
append, never reorder, or stored tiles would no longer be found.
"""

from __future__ import annotations

from . import count, ddsketch, distinct, hll, lastfirst, lastk, minmax, sums, topk, variance
from .base import Accumulator, Function

_STATE_MODULES = (count, sums, minmax, variance, lastfirst, distinct, lastk, hll, ddsketch, topk)  # tile order: append only
_FUNCTION_MODULES = (count, sums, minmax, lastfirst, variance, distinct, lastk, topk, hll, ddsketch)  # the order docs and errors list them in

ACCUMULATORS: dict[str, Accumulator] = {a.kind: a for m in _STATE_MODULES for a in m.ACCUMULATORS}
FUNCTIONS: dict[str, Function] = {f.name: f for m in _FUNCTION_MODULES for f in m.FUNCTIONS}
FUNCTION_NAMES: tuple[str, ...] = tuple(FUNCTIONS)
ACC_ORDER: tuple[str, ...] = tuple(k for k in ACCUMULATORS if k != "cnt")  # per input, after `cnt`

__all__ = ["ACCUMULATORS", "ACC_ORDER", "FUNCTIONS", "FUNCTION_NAMES", "Accumulator", "Function"]
