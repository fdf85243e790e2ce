"""The OpenAPI 3.1 document of `featureline serve` (served at /openapi.json, fuzzed by the tests)."""

from __future__ import annotations

from ..plan import Plan
from .reader import AT_RANGE_US, INT64, MAX_KEY_CHARS, MAX_NAME

_KEY_SCHEMAS = {
    "integer": {"type": "integer", "minimum": INT64[0], "maximum": INT64[1]},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "string": {"type": "string", "maxLength": MAX_KEY_CHARS},
}


def openapi(plan: Plan, max_entities: int, *, max_features: int = 500, auth: bool = False) -> dict:
    err = {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    key_props = {}
    for e in plan.entities.values():
        for k, t in zip(e.join_keys, e.key_types, strict=False):
            key_props[k] = _KEY_SCHEMAS.get(t, _KEY_SCHEMAS["string"])
    services = list(plan.services)
    entities = {
        "description": f"Entity rows (a list of objects of join keys) or columns (an object of lists); at most {max_entities} rows.",
        "oneOf": [
            {"type": "array", "maxItems": max_entities, "items": {"type": "object", "properties": key_props}},
            {"type": "object", "properties": {k: {"type": "array", "items": v} for k, v in key_props.items()}},
        ],
    }
    features = {
        "type": ["array", "null"],
        "maxItems": max_features,
        "items": {"type": "string", "pattern": "^[^:]+:[^:]+$", "maxLength": MAX_NAME},
        "description": 'Feature refs "view:feature" (instead of a service).',
    }

    def post(summary, req, resp_ref):
        return {
            "post": {
                "summary": summary,
                "requestBody": {"required": True, "content": {"application/json": {"schema": req}}},
                "responses": {
                    "200": {"description": "Feature values", "content": {"application/json": {"schema": {"$ref": resp_ref}}}},
                    "400": err,
                    "404": err,
                    "408": err,
                    "413": err,
                    "422": err,
                    "503": err,
                    **({"401": err} if auth else {}),
                },
                **({"security": [{"bearer": []}]} if auth else {}),
            }
        }

    def get(summary, ok, ctype="application/json", extra=None, guarded=True):
        responses = {"200": {"description": ok, "content": {ctype: {}}}}
        responses.update(extra or {})
        if auth and guarded:
            responses["401"] = err
            return {"get": {"summary": summary, "responses": responses, "security": [{"bearer": []}]}}
        return {"get": {"summary": summary, "responses": responses}}

    doc = {
        "openapi": "3.1.0",
        "info": {"title": f"featureline online features: {plan.project.name}", "version": "1"},
        "paths": {
            "/features/online": post(
                "A feature service's (or a feature list's) values for entity rows, as of now",
                {
                    "type": "object",
                    "properties": {
                        "service": {"type": ["string", "null"], "enum": [*services, None]},
                        "features": features,
                        "entities": entities,
                        "full_feature_names": {"type": "boolean", "default": False, "description": "Name features view__feature"},
                        "at": {
                            "type": ["string", "integer", "null"],
                            "maxLength": 64,
                            "minimum": AT_RANGE_US[0],
                            "maximum": AT_RANGE_US[1] - 1,
                            "description": "Read time (ISO 8601 or epoch microseconds); default now. For debugging.",
                        },
                    },
                    "required": ["entities"],
                },
                "#/components/schemas/FeaturesOnlineResponse",
            ),
            "/get-online-features": post(
                "Feast's feature server endpoint: same request and response shape",
                {
                    "type": "object",
                    "properties": {
                        "feature_service": {
                            "type": ["string", "null"],
                            "enum": [*services, None],
                            "description": "Wins over `features` (as in Feast)",
                        },
                        "features": features,
                        "entities": {"type": "object", "properties": {k: {"type": "array", "items": v} for k, v in key_props.items()}},
                        "full_feature_names": {"type": "boolean", "default": False},
                    },
                    "required": ["entities"],
                },
                "#/components/schemas/FeastResponse",
            ),
            "/health": get("The process is up", "Up", guarded=False),
            "/ready": get(
                "The online store holds featureline's data (a backfill or the stream wrote it, Redis did not lose it)",
                "Ready",
                extra={"503": err},
                guarded=False,
            ),
            "/metrics": get("Prometheus metrics", "Prometheus text format", "text/plain"),
            "/openapi.json": get("This document", "OpenAPI 3.1"),
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
                "FeaturesOnlineResponse": {
                    "type": "object",
                    "properties": {
                        "service": {"type": ["string", "null"]},
                        "at": {"type": "string", "format": "date-time", "description": "The read time: windowed values are exact as of it"},
                        "join_keys": {"type": "array", "items": {"type": "string"}},
                        "features": {"type": "array", "items": {"type": "string"}},
                        "rows": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "description": "join keys, then features by name; timestamps ISO 8601; null = no value",
                            },
                        },
                    },
                },
                "FeastResponse": {
                    "type": "object",
                    "properties": {
                        "metadata": {"type": "object", "properties": {"feature_names": {"type": "array", "items": {"type": "string"}}}},
                        "results": {
                            "type": "array",
                            "description": "One per name in metadata.feature_names (join keys first), each with one entry per entity row",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "values": {"type": "array"},
                                    "statuses": {"type": "array", "items": {"type": "string", "enum": ["PRESENT", "NOT_FOUND"]}},
                                    "event_timestamps": {"type": "array", "items": {"type": "string", "format": "date-time"}},
                                },
                            },
                        },
                    },
                },
            }
        },
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc
