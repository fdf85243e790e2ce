"""A record's payload as text fit to show, for a contract that classifies fields.

Reasons never quote a classified field (see result.py); the payload itself stays raw
(dead letters are replayed from it). Where a payload is displayed, e.g. by
`featureline dead-letters`, `redact_payload` replaces classified fields' values:

    print(redact_payload(contract, dead_letter.value))
"""

from __future__ import annotations

import json

from ..plan import ContractPlan
from .decode import parse
from .result import redacted, withheld


def redact_payload(contract: ContractPlan, raw: bytes | str) -> str:
    """`raw` as JSON text with each classified field's value a placeholder ("<redacted: restricted, 24 chars>").

    A contract without classified fields gets the text back unchanged (bytes read as UTF-8,
    undecodable bytes replaced). For one with classified fields, a payload that is not a
    JSON object (malformed, too deep, not UTF-8) is withheld whole: "<withheld: ..., N bytes>".
    """
    labels = contract.redactions
    if not labels:
        return raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray, memoryview)) else str(raw)
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    try:
        obj, problem = parse(data)  # strict, depth-bounded: hostile bytes are a problem, not an exception
        if problem is not None or not isinstance(obj, dict):
            return withheld(data)
        for name, label in labels.items():
            if obj.get(name) is not None:
                obj[name] = redacted(label, obj[name])
        return json.dumps(obj, ensure_ascii=False)
    except Exception:
        return withheld(data)
