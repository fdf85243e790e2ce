"""The online store behind its interface (online/backend.py): no module outside `online/`
reaches into Redis, so a backend is one class (docs/architecture.md)."""

from __future__ import annotations

import re
from pathlib import Path

import featureline
from featureline.online.backend import OnlineBackend
from featureline.online.store import OnlineStore

SRC = Path(featureline.__file__).parent
REDIS_IMPORT = re.compile(r"^\s*(import redis\b|from redis(?!\.exceptions)\b)", re.M)
CLIENT_USE = re.compile(r"\bstore\.client\b|\bstore\._|\bclient\.client\.")


def test_no_module_outside_online_talks_to_redis():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("online/"):
            continue
        text = path.read_text()
        bad += [f"{rel}: {m.group(0).strip()}" for m in REDIS_IMPORT.finditer(text)]
        bad += [f"{rel}: {m.group(0)}" for m in CLIENT_USE.finditer(text)]
    assert not bad, bad


def test_the_redis_store_implements_the_whole_interface():
    assert issubclass(OnlineStore, OnlineBackend)
    assert not getattr(OnlineStore, "__abstractmethods__", set())
    public = {n for n in vars(OnlineBackend) if not n.startswith("_") and callable(getattr(OnlineBackend, n))}
    assert public <= set(dir(OnlineStore))
