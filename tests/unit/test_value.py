"""Store format 3's entity values (online/value.py): sections back to back, assembled vectorized."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from featureline.online.backend import SlotWrites
from featureline.online.value import assemble, into, pack


def _entries(v: bytes):
    from featureline.online.value import HEAD, HEADER

    out, p = [], 0
    while p < len(v):
        code, exp, n = HEADER.unpack_from(v, p)
        out.append((code.decode(), int(exp), v[p + HEAD : p + HEAD + n]))
        p += HEAD + n
    return out


def sections(v: bytes) -> dict:
    cols = {c: [None] for c in (b"aaaaa", b"bbbbb", b"ccccc", b"zzzzz")}
    into(v, cols, 0)
    return {c: col[0] for c, col in cols.items() if col[0] is not None}


def test_sections_round_trip_with_empty_and_binary_payloads():
    secs = [("aaaaa", 10, b""), ("bbbbb", 20, bytes(range(256)) * 3), ("ccccc", 5, b"\x00}:|")]
    v = pack(secs)
    assert sections(v) == {b"aaaaa": b"", b"bbbbb": bytes(range(256)) * 3, b"ccccc": b"\x00}:|"}
    assert _entries(v) == secs
    assert sections(b"") == {}
    cols = {b"bbbbb": [None, None]}  # only the codes asked for, at the row given
    into(v, cols, 1)
    assert cols == {b"bbbbb": [None, bytes(range(256)) * 3]}


@pytest.mark.parametrize("seed", range(5))
def test_assemble_groups_every_entitys_sections_into_one_value(seed):
    """Random slots over overlapping entity sets, entities in any order, some slots split in
    several writes: each entity gets one value with exactly its sections, its expiry the
    longest one's, entities in key order (one write: its order)."""
    rnd = random.Random(seed)
    codes = [f"c{i:04d}" for i in range(rnd.randint(1, 5))]
    want: dict[str, list] = {}
    writes = []
    for code in codes:
        ents = rnd.sample([f"e{i}" for i in range(40)], rnd.randint(0, 30))
        for part in (ents[: len(ents) // 2], ents[len(ents) // 2 :]) if rnd.random() < 0.5 else (ents,):
            exp = [rnd.randint(1, 10**13) for _ in part]
            vals = [rnd.randbytes(rnd.randint(0, 50)) for _ in part]
            writes.append(SlotWrites("user", code, pa.array(part, pa.string()), np.array(exp, np.int64), pa.array(vals, pa.binary())))
            for e, x, b in zip(part, exp, vals, strict=True):
                want.setdefault(e, []).append((code, x, b))
    got = assemble(writes)
    if not want:
        assert got is None
        return
    ents, expire, values = got
    nonempty = sum(1 for w in writes if len(w.ents))
    assert ents.to_pylist() == (sorted(want) if nonempty > 1 else list(want))
    for e, x, v in zip(ents.to_pylist(), expire.tolist(), values.to_pylist(), strict=True):
        assert sorted(_entries(v)) == sorted(want[e])
        assert x == max(s[1] for s in want[e])


def test_assemble_one_slot_keeps_its_order_and_chunked_arrays():
    w = SlotWrites("user", "zzzzz", pa.chunked_array([["b", "a"], ["c"]]), np.array([3, 2, 1]), pa.chunked_array([[b"1", b"2"], [b"3"]]))
    ents, expire, values = assemble([w])
    assert ents.to_pylist() == ["b", "a", "c"] and expire.tolist() == [3, 2, 1]
    assert [sections(v) for v in values.to_pylist()] == [{b"zzzzz": b"1"}, {b"zzzzz": b"2"}, {b"zzzzz": b"3"}]
