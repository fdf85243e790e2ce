"""`featureline init DIR`: a minimal project (one contract, one source, one view, one service)."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import FeaturelineError


class ScaffoldError(FeaturelineError):
    """`featureline init` cannot write the project (the directory holds files; a bad name)."""

    exit_code = 2


PROJECT = """\
# featureline project settings. ${{VAR}} and ${{VAR:-default}} read the environment;
# secrets must be ${{VAR}} references, never literal values.
project: {name}

online_store:
  url: redis://127.0.0.1:${{FEATURELINE_REDIS_PORT:-6379}}/0

kafka:
  bootstrap_servers: 127.0.0.1:${{FEATURELINE_KAFKA_PORT:-9092}}

offline_store:
  path: data/offline
"""

CONTRACT = """\
# An Open Data Contract Standard (ODCS) v3 document: datacontract-cli reads it too.
# featureline's own settings live under customProperties.
apiVersion: v3.1.0
kind: DataContract
id: page_views
name: Page views
version: 1.0.0
status: draft
schema:
  - name: page_views
    physicalType: topic
    physicalName: page_views
    properties:
      - name: user_id
        logicalType: integer
        required: true
        logicalTypeOptions:
          minimum: 1
      - name: page
        logicalType: string
        required: true
        logicalTypeOptions:
          maxLength: 200
      - name: duration_ms
        logicalType: integer
        logicalTypeOptions:
          minimum: 0
      - name: event_time
        logicalType: timestamp
        required: true
customProperties:
  - property: compatibility
    value: backward
  - property: eventTimeField
    value: event_time
  - property: keyFields
    value: [user_id]
"""

FEATURES = """\
entities:
  - name: user
    join_keys: [user_id]

sources:
  - name: page_views
    contract: page_views
    batch:
      path: data/page_views/*.parquet
    stream:
      format: json        # topic from the contract: page_views

feature_views:
  - name: user_engagement
    entity: user
    source: page_views
    aggregations:
      - function: count
        windows: [1h, 24h]
      - column: duration_ms
        functions: [sum, mean]
        windows: [24h]

feature_services:
  - name: engagement
    features:
      - user_engagement:*
"""


def scaffold(directory: str | Path, *, name: str | None = None, force: bool = False) -> list[str]:
    d = Path(directory)
    if d.exists() and any(d.iterdir()) and not force:
        raise ScaffoldError(f"{d} is not empty (use --force to write into it)")
    name = name or re.sub(r"[^A-Za-z0-9_-]", "_", d.resolve().name) or "features"
    if not re.match(r"^[A-Za-z_]", name):
        name = f"p_{name}"
    files = {
        "featureline.yaml": PROJECT.format(name=name),
        "contracts/page_views.yaml": CONTRACT,
        "features/engagement.yaml": FEATURES,
        ".gitignore": "data/offline/\n",
    }
    written = []
    for rel, text in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        written.append(rel)
    return written
