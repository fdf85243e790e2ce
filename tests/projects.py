"""Scratch copies of the example repo for tests, edits of its YAML, and value comparison."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_project(tmp: Path, services, *, topic: str | None = None) -> Path:
    """A copy of the example repo on its own Redis key prefix and consumer group (and topic)."""
    tag = uuid.uuid4().hex[:8]
    text = (REPO / "featureline.yaml").read_text()
    text = text.replace("key_prefix: fl", f"key_prefix: s{tag}").replace("${FEATURELINE_REDIS_PORT:-6379}", str(services.redis_port))
    text = text.replace("${FEATURELINE_KAFKA_PORT:-9092}", str(services.kafka_port)).replace("consumer_group: featureline-payments", f"consumer_group: g{tag}")
    (tmp / "featureline.yaml").write_text(text)
    shutil.copytree(REPO / "features", tmp / "features")
    shutil.copytree(REPO / "contracts", tmp / "contracts")
    if topic is None:
        return tmp
    ent = tmp / "features" / "entities.yaml"
    src = ent.read_text()
    assert "    stream:\n      format: json" in src
    ent.write_text(src.replace("    stream:\n      format: json", f"    stream:\n      topic: {topic}\n      format: json"))
    return tmp


def same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(b))
    return a == b


def add_views(features_file: Path, yaml: str) -> None:
    """Add `yaml` (feature views, then `feature_services:`) to the example's user_features.yaml:
    the views among its feature_views (before `user_profile`), the services at the end."""
    views, _, services = yaml.partition("feature_services:")
    head, _, tail = features_file.read_text().partition("\n  - name: user_profile")
    features_file.write_text(head + "\n" + views + "\n  - name: user_profile" + tail + "\nfeature_services:" + services)


def value_sections(v: bytes) -> dict[bytes, bytes]:
    """An entity's value in the online store (online/value.py) -> {slot code: payload}."""
    from featureline.online.value import HEAD, HEADER

    out, p = {}, 0
    while p < len(v):
        code, _, n = HEADER.unpack_from(v, p)
        out[code] = v[p + HEAD : p + HEAD + n]
        p += HEAD + n
    return out
