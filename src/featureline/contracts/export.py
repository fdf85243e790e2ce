"""Export a contract for producers in other stacks: JSON Schema, Avro, a pydantic model.

    from featureline.contracts.export import to_jsonschema, to_avro, to_pydantic
    to_jsonschema(plan.contracts["transactions"])   # dict, JSON Schema draft 2020-12
    to_avro(plan.contracts["transactions"])         # dict, an Avro record schema
    to_pydantic(plan.contracts["transactions"])     # str, Python source of a pydantic v2 model

Each export is meant to accept what featureline's validator accepts, per record.
What a per-record schema cannot say is left out and named in a comment (`$comment`,
Avro `doc`, the model's docstring): uniqueness within a batch, the maximum future
skew of event times, and (JSON Schema, pydantic) bounds on timestamps.

Choices:

- A field that is required but has a default (property customProperty `default`)
  may be absent: readers fill the default in (docs/specs.md). So it is not in JSON
  Schema's `required`, it has a default in Avro and in the pydantic model.
- Formats are enforced, not just annotated: JSON Schema 2020-12 treats `format` as an
  annotation by default, so each string format also becomes a `pattern` (featureline's
  own regular expression for it; `allOf` when the field has a pattern of its own).
  Timestamps ask for RFC 3339 date-times (`2024-05-01T12:00:00Z`, offset optional):
  featureline reads a few more ISO 8601 spellings, producers should not write them.
- Integers carry their range (int64 unless the `format` says i8..u64), as featureline
  holds them in Arrow. JSON Schema counts `1.0` as an integer (a number without a
  fraction); featureline and the pydantic model refuse it. JSON Schema `pattern`s are
  ECMA-262 regular expressions; featureline's patterns (RE2 syntax) mean the same there.
- Avro: integer -> long (int for i8/i16/i32/u8/u16), number -> double (float for
  f32), timestamp -> long timestamp-micros, date -> int date, time -> long
  time-micros, object/array -> string (JSON text). Enums become Avro enums when every
  value is a valid Avro name, else the base type, with the values in `doc`. Optional
  fields are `["null", T]` with default null (`[T, "null"]` when the default is not
  null, as Avro wants the default to match the first branch). Constraints (bounds,
  lengths, patterns) are not expressible in Avro; they are listed in the field's `doc`.
- pydantic: `strict=True` (no "12.3" -> 12.3 coercion, as featureline's decoder),
  `extra="forbid"` when the contract rejects unknown fields; validate JSON records with
  `Model.model_validate_json(raw)` (strict mode reads ISO times only from JSON).
"""

from __future__ import annotations

import datetime as dt
import json
import keyword
import re
from typing import Any

from ..plan import ContractPlan, FieldPlan
from ..timeutil import to_us
from .checks import FORMAT_PATTERNS, INT_RANGES

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
AVRO_NAMESPACE = "featureline.contracts"
# RFC 3339 time of day, offset optional (featureline reads naive times as UTC)
TIME_PATTERN = r"^\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:[Zz]|[+-]\d{2}:\d{2})?$"
_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def python_regex(pattern: str) -> str:
    """A pattern for Python's `re` (the generated pydantic model) that means what it means in RE2.

    In Python `$` also matches before a final newline; in RE2 (and ECMA-262, which
    ODCS names) only at the very end. A trailing unescaped `$` becomes `\\Z`.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + r"\Z"
    return pattern


class ExportError(ValueError):
    """The contract cannot be expressed in the target format (e.g. a field name Avro refuses)."""


# --- shared -----------------------------------------------------------------------


def _int_range(f: FieldPlan) -> tuple[int, int]:
    return INT_RANGES.get(f.arrow_type, INT_RANGES["int64"])


def _optional_on_wire(f: FieldPlan) -> bool:
    """May a record leave the field out? (Optional, or required with a default readers fill in.)"""
    return not f.required or f.has_default


def _unexpressed(c: ContractPlan, f: FieldPlan, *, bounds_of: tuple[str, ...]) -> list[str]:
    """What featureline checks of the field that a per-record schema cannot say (bounds of the types in `bounds_of`)."""
    out = []
    if f.unique:
        out.append("unique within a batch")
    if f.logical_type in bounds_of:
        for key, v in (
            ("minimum", f.minimum),
            ("maximum", f.maximum),
            ("exclusiveMinimum", f.exclusive_minimum),
            ("exclusiveMaximum", f.exclusive_maximum),
        ):
            if v is not None:
                out.append(f"{key} {v}")
    if f.name == c.event_time_field:
        from ..timeutil import format_duration

        out.append(f"at most {format_duration(c.max_future_skew_us)} in the future")
    return out


def _enum_values(f: FieldPlan) -> list:
    return list(f.enum) if f.enum is not None else []


# --- JSON Schema --------------------------------------------------------------------


def to_jsonschema(c: ContractPlan) -> dict:
    """A JSON Schema (draft 2020-12) for one record of the contract."""
    props: dict[str, Any] = {}
    required: list[str] = []
    notes: list[str] = []
    for f in c.fields:
        props[f.name] = _json_property(f)
        if not _optional_on_wire(f):
            required.append(f.name)
        extra = _unexpressed(c, f, bounds_of=("timestamp", "date", "time"))
        if extra:
            props[f.name]["$comment"] = "featureline also checks: " + "; ".join(extra)
            notes.append(f"{f.name}: {'; '.join(extra)}")
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:featureline:contract:{c.id}:{c.version}",
        "title": c.name,
        "description": f"One record of data contract `{c.id}` version {c.version} (exported by featureline).",
        "version": c.version,
        "type": "object",
        "properties": props,
        "required": required,
    }
    if c.unknown_fields == "reject":
        schema["additionalProperties"] = False
    if notes:
        schema["$comment"] = "Not expressible per record, featureline checks it at ingestion: " + " | ".join(notes)
    return schema


def _json_property(f: FieldPlan) -> dict:
    t = f.logical_type
    p: dict[str, Any] = {}
    patterns: list[str] = []
    if t == "integer":
        p["type"] = "integer"
        lo, hi = _int_range(f)
        p["minimum"] = lo if f.minimum is None else max(f.minimum, lo)
        p["maximum"] = hi if f.maximum is None else min(f.maximum, hi)
    elif t == "number":
        p["type"] = "number"
        if f.minimum is not None:
            p["minimum"] = f.minimum
        if f.maximum is not None:
            p["maximum"] = f.maximum
    elif t == "boolean":
        p["type"] = "boolean"
    elif t == "timestamp":
        p.update(type="string", format="date-time")
        patterns.append(FORMAT_PATTERNS["date-time"])
    elif t == "date":
        p.update(type="string", format="date")
        patterns.append(FORMAT_PATTERNS["date"])
    elif t == "time":
        p["type"] = "string"  # JSON Schema's `time` format requires an offset; featureline does not
        patterns.append(TIME_PATTERN)
    elif t == "object":
        p["type"] = "object"
    elif t == "array":
        p["type"] = "array"
    else:
        p["type"] = "string"
    if t in ("integer", "number"):
        if f.exclusive_minimum is not None:
            p["exclusiveMinimum"] = f.exclusive_minimum
        if f.exclusive_maximum is not None:
            p["exclusiveMaximum"] = f.exclusive_maximum
        if f.multiple_of is not None:
            p["multipleOf"] = f.multiple_of
    if t == "string":
        if f.min_length is not None:
            p["minLength"] = f.min_length
        if f.max_length is not None:
            p["maxLength"] = f.max_length
        if f.format is not None:
            p["format"] = f.format
            if f.format in FORMAT_PATTERNS:
                patterns.append(FORMAT_PATTERNS[f.format])
    if f.pattern is not None:
        patterns.insert(0, f.pattern)
    if patterns:
        p["pattern"] = patterns[0]
        if len(patterns) > 1:
            p["allOf"] = [{"pattern": x} for x in patterns[1:]]
    if f.enum is not None:
        p["enum"] = _enum_values(f)
    if not f.required:  # optional fields may be null
        p["type"] = [p["type"], "null"]
        if "enum" in p:
            p["enum"] = [*p["enum"], None]
    if f.has_default:
        p["default"] = f.default
    if f.description:
        p["description"] = f.description
    return p


# --- Avro ---------------------------------------------------------------------------


def avro_name(text: str) -> str:
    """A valid Avro name from any text: other characters become `_`, a leading digit gets `_` before it."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    if not name or name[0].isdigit():
        name = "_" + name
    return name


def to_avro(c: ContractPlan, *, namespace: str = AVRO_NAMESPACE) -> dict:
    """An Avro record schema for the contract (raises ExportError for a field name Avro refuses)."""
    record = avro_name(c.id)
    fields = []
    for f in c.fields:
        if not _AVRO_NAME.match(f.name):
            raise ExportError(f"field `{f.name}` of contract `{c.id}` is not a valid Avro name ([A-Za-z_][A-Za-z0-9_]*)")
        fields.append(_avro_field(c, record, f))
    return {
        "type": "record",
        "name": record,
        "namespace": namespace,
        "doc": f"{c.name}: data contract `{c.id}` version {c.version} (exported by featureline)",
        "fields": fields,
    }


def _avro_type(record: str, f: FieldPlan, notes: list[str]) -> Any:
    t = f.logical_type
    if t == "integer":
        base: Any = "int" if f.arrow_type in ("int8", "int16", "int32", "uint8", "uint16") else "long"
    elif t == "number":
        base = "float" if f.arrow_type == "float32" else "double"
    elif t == "boolean":
        base = "boolean"
    elif t == "timestamp":
        base = {"type": "long", "logicalType": "timestamp-micros"}
    elif t == "date":
        base = {"type": "int", "logicalType": "date"}
    elif t == "time":
        base = {"type": "long", "logicalType": "time-micros"}
    elif t in ("object", "array"):
        base = "string"
        notes.append(f"JSON text ({t})")
    else:
        base = "string"
    if f.enum is not None:
        values = _enum_values(f)
        if t == "string" and all(isinstance(v, str) and _AVRO_NAME.match(v) for v in values) and len(set(values)) == len(values):
            return {"type": "enum", "name": f"{record}_{f.name}", "symbols": values}
        why = "not valid Avro names" if t == "string" else f"{t} values"
        notes.append(
            f"one of {', '.join(map(str, values))} (kept as {base if isinstance(base, str) else base['type']}: the values are {why}, so not an Avro enum)"
        )
    return base


def _avro_default(f: FieldPlan) -> Any:
    v = f.default
    if v is None:
        return None
    t = f.logical_type
    if t == "timestamp":
        return to_us(v if not isinstance(v, dt.date) or isinstance(v, dt.datetime) else str(v))
    if t == "date":
        d = v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v))
        return (d - dt.date(1970, 1, 1)).days
    if t == "time":
        tm = v if isinstance(v, dt.time) else dt.time.fromisoformat(str(v))
        return ((tm.hour * 60 + tm.minute) * 60 + tm.second) * 1_000_000 + tm.microsecond
    if t in ("object", "array"):
        return v if isinstance(v, str) else json.dumps(v)
    if t == "number":
        return float(v)
    return v


def _constraint_notes(f: FieldPlan) -> list[str]:
    out = []
    for key, v in (
        ("minimum", f.minimum),
        ("maximum", f.maximum),
        ("exclusiveMinimum", f.exclusive_minimum),
        ("exclusiveMaximum", f.exclusive_maximum),
        ("multipleOf", f.multiple_of),
        ("minLength", f.min_length),
        ("maxLength", f.max_length),
        ("pattern", f.pattern),
        ("format", f.format if f.logical_type == "string" else None),
    ):
        if v is not None:
            out.append(f"{key} {v}")
    if f.unique:
        out.append("unique within a batch")
    return out


def _avro_field(c: ContractPlan, record: str, f: FieldPlan) -> dict:
    notes: list[str] = []
    base = _avro_type(record, f, notes)
    out: dict[str, Any] = {"name": f.name}
    if f.required:
        out["type"] = base
        if f.has_default and f.default is not None:
            out["default"] = _avro_default(f)
    elif f.has_default and f.default is not None:
        out["type"] = [base, "null"]
        out["default"] = _avro_default(f)
    else:
        out["type"] = ["null", base]
        out["default"] = None
    notes += _constraint_notes(f)
    if f.name == c.event_time_field:
        from ..timeutil import format_duration

        notes.append(f"event time, at most {format_duration(c.max_future_skew_us)} in the future")
    doc = f.description or ""
    if notes:
        doc = (doc.rstrip(".") + ". " if doc else "") + "featureline checks: " + "; ".join(notes)
    if doc:
        out["doc"] = doc
    return out


# --- pydantic -----------------------------------------------------------------------


def class_name(contract_id: str) -> str:
    """`card-transactions_v2` -> `CardTransactionsV2`."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", contract_id) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Contract"
    if name[0].isdigit():
        name = "Contract" + name
    return name


_BASEMODEL_ATTRS = frozenset(
    {
        "copy",
        "dict",
        "json",
        "schema",
        "schema_json",
        "validate",
        "construct",
        "fields",
        "parse_obj",
        "parse_raw",
        "parse_file",
        "from_orm",
        "update_forward_refs",
    }
)


def _py_name(name: str) -> str:
    if name.isidentifier() and not keyword.iskeyword(name) and not name.startswith(("_", "model_")) and name not in _BASEMODEL_ATTRS:
        return name
    py = re.sub(r"\W", "_", name).lstrip("_") or "field"
    if py[0].isdigit():
        py = "f_" + py
    if keyword.iskeyword(py) or py.startswith("model_") or py in _BASEMODEL_ATTRS:
        py = py + "_"
    if py.startswith("model_"):
        py = "f_" + py
    return py


def _py_default(f: FieldPlan) -> str:
    v = f.default
    if v is None:
        return "None"
    t = f.logical_type
    if t == "timestamp":
        from ..timeutil import from_us

        return repr(from_us(to_us(str(v) if not isinstance(v, dt.datetime) else v)))
    if t == "date":
        return repr(v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)))
    if t == "time":
        return repr(v if isinstance(v, dt.time) else dt.time.fromisoformat(str(v)))
    if t == "number" and isinstance(v, int) and not isinstance(v, bool):
        return repr(float(v))
    return repr(v)


def _py_type(f: FieldPlan, helpers: set[str]) -> str:
    """The annotation of the field's non-null value."""
    t = f.logical_type
    if f.enum is not None:
        return f"Literal[{', '.join(repr(v) for v in f.enum)}]"
    base = {
        "string": "str",
        "integer": "int",
        "number": "float",
        "boolean": "bool",
        "timestamp": "datetime.datetime",
        "date": "datetime.date",
        "time": "datetime.time",
        "object": "dict[str, Any]",
        "array": "list[Any]",
    }[t]
    args: list[str] = []
    if t == "integer":
        lo, hi = _int_range(f)
        args.append(f"ge={lo if f.minimum is None else max(f.minimum, lo)!r}")
        args.append(f"le={hi if f.maximum is None else min(f.maximum, hi)!r}")
    elif t in ("number", "date"):
        conv = (lambda v: repr(dt.date.fromisoformat(str(v)))) if t == "date" else repr
        if f.minimum is not None:
            args.append(f"ge={conv(f.minimum)}")
        if f.maximum is not None:
            args.append(f"le={conv(f.maximum)}")
    if t in ("integer", "number", "date"):
        conv = (lambda v: repr(dt.date.fromisoformat(str(v)))) if t == "date" else repr
        if f.exclusive_minimum is not None:
            args.append(f"gt={conv(f.exclusive_minimum)}")
        if f.exclusive_maximum is not None:
            args.append(f"lt={conv(f.exclusive_maximum)}")
    if t in ("integer", "number") and f.multiple_of is not None:
        args.append(f"multiple_of={f.multiple_of!r}")
    extra: list[str] = []
    if t == "string":
        if f.min_length is not None:
            args.append(f"min_length={f.min_length!r}")
        if f.max_length is not None:
            args.append(f"max_length={f.max_length!r}")
        fmt = FORMAT_PATTERNS.get(f.format) if f.format else None
        if f.pattern is not None:
            args.append(f"pattern={f.pattern!r}")
            if fmt is not None:
                helpers.add(f.format)
                extra.append(f"AfterValidator(_format({f.format!r}))")
        elif fmt is not None:
            args.append(f"pattern={fmt!r}")
    if not args and not extra:
        return base
    meta = [f"Field({', '.join(args)})"] if args else []
    return f"Annotated[{base}, {', '.join(meta + extra)}]"


def to_pydantic(c: ContractPlan) -> str:
    """Python source of a pydantic v2 model of one record of the contract."""
    name = class_name(c.id)
    helpers: set[str] = set()
    lines: list[str] = []
    aliased = False
    notes: list[str] = []
    taken = {f.name for f in c.fields if _py_name(f.name) == f.name}
    for f in c.fields:
        ann = _py_type(f, helpers)
        py = _py_name(f.name)
        if py != f.name:
            while py in taken:
                py += "_"
            taken.add(py)
        field_args: list[str] = []
        if py != f.name:
            aliased = True
            field_args.append(f"alias={f.name!r}")
        if f.description:
            field_args.append(f"description={f.description!r}")
        if f.required:
            default = _py_default(f) if f.has_default else None
        else:
            ann = f"{ann} | None"
            default = _py_default(f) if f.has_default else "None"
        if field_args:
            rhs = f"Field({', '.join(([f'default={default}'] if default is not None else []) + field_args)})"
        else:
            rhs = default
        lines.append(f"    {py}: {ann}" + (f" = {rhs}" if rhs is not None else ""))
        extra = _unexpressed(c, f, bounds_of=("timestamp", "time"))
        if extra:
            notes.append(f"{f.name}: {'; '.join(extra)}")

    config = ["strict=True"]
    if c.unknown_fields == "reject":
        config.insert(0, 'extra="forbid"')
    if aliased:
        config.append("populate_by_name=True")
    doc = [f'    """{c.name}: one record of data contract `{c.id}` version {c.version}.']
    if notes:
        doc.append("")
        doc.append("    featureline also checks (not expressible here):")
        doc.extend(f"    - {n}" for n in notes)
    if aliased:
        doc.append("")
        doc.append("    Some fields are renamed in Python; dump with `model_dump(by_alias=True)`.")
    doc.append('    """')

    out = [
        f'"""Generated by featureline from data contract `{c.id}` version {c.version}. Do not edit.',
        "",
        "Validate a JSON record with `Model.model_validate_json(raw)` (strict mode).",
        '"""',
        "",
        "import datetime",
        *(["import re"] if helpers else []),
        "from typing import Annotated, Any, Literal",
        "",
        f"from pydantic import {'AfterValidator, ' if helpers else ''}BaseModel, ConfigDict, Field",
        "",
    ]
    if helpers:
        formats = {k: python_regex(FORMAT_PATTERNS[k]) for k in sorted(helpers)}
        out += [
            f"_FORMATS = {{k: re.compile(v) for k, v in {formats!r}.items()}}",
            "",
            "",
            "def _format(name):",
            "    def check(value):",
            "        if _FORMATS[name].search(value) is None:",
            '            raise ValueError(f"not a valid {name}")',
            "        return value",
            "",
            "    return check",
            "",
        ]
    out += [
        "",
        f"class {name}(BaseModel):",
        *doc,
        "",
        f"    model_config = ConfigDict({', '.join(config)})",
        "",
        *lines,
        "",
    ]
    return "\n".join(out)


__all__ = ["ExportError", "avro_name", "class_name", "to_avro", "to_jsonschema", "to_pydantic"]
