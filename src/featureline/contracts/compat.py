"""Breaking-change detection between two versions of a contract, with Confluent Schema Registry's modes.

Modes (the contract's `compatibility` customProperty), as Confluent defines them:

- `backward`: readers on the NEW contract read data written under the OLD one;
- `forward`: readers on the OLD contract read data written under the NEW one;
- `full`: both; `*_transitive`: the same rule against every earlier version
  (the caller compares against each, see `check_against_history`); `none`: nothing breaks.

`diff(old, new)` lists every change with a stable kebab-case `rule` and the set of
directions it `breaks`; `breaking(changes, mode)` keeps those that matter under a
mode. The rules are Avro's schema-resolution rules mapped onto ODCS properties
(`required`, the property customProperty `default`, logicalType + integer/number
`format`, `validValues` enums, `logicalTypeOptions` constraints), so that for every
case Avro can express, Avro's own checker agrees (tests/unit/test_contract_export.py
holds `to_avro` exports to it):

| change | rule | breaks |
|---|---|---|
| field added, optional or with a default | field-added | - |
| field added, required without default | required-field-added | backward |
| field removed, optional or with a default | field-removed | - |
| field removed, required without default | required-field-removed | forward |
| integer i32 -> i64, integer -> number, f32 -> f64 | type-widened | forward |
| i64 -> i32, number -> integer, f64 -> f32 | type-narrowed | backward |
| any other type change | type-changed | backward, forward |
| enum value(s) added | enum-value-added | forward |
| enum value(s) removed | enum-value-removed | backward |
| enum added to a field that had none | enum-added | backward |
| enum dropped | enum-removed | forward |
| required true -> false | made-nullable | forward |
| required false -> true | made-required | backward |
| constraint added or made stricter | constraint-tightened | backward |
| constraint removed or relaxed | constraint-loosened | forward |
| pattern / format / multipleOf replaced by an unrelated one | constraint-changed | backward, forward |
| eventTimeField changed | event-time-changed | backward, forward |
| keyFields changed (order counts) | key-fields-changed | backward, forward |
| default added / removed / changed | default-added, default-removed, default-changed | - |
| primaryKey changed | primary-key-changed | - |
| topic, compatibility, unknownFields, maxFutureSkew changed | topic-changed, compatibility-changed, unknown-fields-changed, max-future-skew-changed | - |
| contract id changed | id-changed | - |
| lower/upper bound rewritten with the same meaning (integer `minimum: 1` <-> `exclusiveMinimum: 0`) | constraint-restated | - |
| property description / contract name changed | description-changed, name-changed | - |

Choices (all deliberate, tested in tests/unit/test_contract_compat.py):

- Removing a field that is optional or has a default is compatible both ways, as in
  Avro: a new reader simply ignores it in old data, an old reader gets null / the
  default. Removing a required field without default breaks forward (old readers
  still need it) and nothing else.
- As in Avro, readers ignore fields they do not know, so adding an optional field is
  compatible both ways even when the contract says `unknownFields: reject`. That is
  not how featureline's own validator reads a closed contract: it rejects a record
  carrying a field the contract lacks (JSON Schema's "closed content model").
  `diff(old, new, closed_model=True)` applies that rule too: an added field breaks
  forward when the OLD contract rejects unknown fields (`field-added-to-closed-contract`),
  a removed field breaks backward when the NEW one does
  (`field-removed-from-closed-contract`), and `unknownFields` ignore -> reject breaks
  backward, reject -> ignore forward. The default (`closed_model=False`) is Avro's.
- Defaults matter, as in Avro, only when one side lacks the field; adding, removing
  or changing the default of a field both sides have breaks nothing (but is a schema
  change that needs a version bump).
- Lower bounds (`minimum`, `exclusiveMinimum`) are compared as one effective bound,
  and so are upper bounds, lengths likewise; for integers an exclusive bound is the
  next integer's inclusive one. `multipleOf` 2 -> 4 is a tightening (every multiple
  of 4 is one of 2) and 4 -> 2 a loosening; only unrelated steps (2 -> 3) break both.
- Enums compare as sets: reordering validValues is no change.
- Type changes between unrelated families (string <-> integer, timestamp -> string,
  date -> timestamp, ...) break both ways, and bounds are then not compared (their
  values are not comparable). Widening follows Avro's promotions
  (int -> long -> float -> double); integer formats compare by value range (i8..u64).
- Field order is not compared (Avro and JSON resolve fields by name).
- `schema_changed` is true for every change except `description-changed`,
  `name-changed` and `constraint-restated`: editing docs needs no version bump.
- `version_verdict` follows semver: breaking changes need the major number raised;
  for 0.y.z versions, raising the minor number counts as the major bump (as Cargo
  and npm read 0.x versions).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import Location
from ..plan import ARROW_TYPES, ContractPlan, FieldPlan
from .checks import INT_RANGES, _bound

BACKWARD = "backward"
FORWARD = "forward"
BOTH = frozenset({BACKWARD, FORWARD})
NONE: frozenset[str] = frozenset()
MODES = ("backward", "backward_transitive", "forward", "forward_transitive", "full", "full_transitive", "none")
#: Rules that do not change what a record may look like: no version bump needed.
NON_SCHEMA_RULES = frozenset({"description-changed", "name-changed", "constraint-restated"})

_INT_FORMAT = {
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "uint8": "u8",
    "uint16": "u16",
    "uint32": "u32",
    "uint64": "u64",
}
_FLOAT_RANK = {"float32": 0, "float64": 1}


@dataclass(frozen=True)
class Change:
    field: str | None
    rule: str  # stable kebab-case id, see the module docstring
    breaks: frozenset[str]  # subset of {"backward", "forward"}
    message: str
    location: Location | None = None

    @property
    def breaking(self) -> bool:
        return bool(self.breaks)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str
    major_bump: bool


class GitError(Exception):
    """git failed (not a repository, unknown ref, git missing); the message carries git's stderr."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


# --- diff -------------------------------------------------------------------------


def diff(old: ContractPlan, new: ContractPlan, *, closed_model: bool = False) -> list[Change]:
    """Every change from `old` to `new`: contract settings first, then fields in the new
    contract's order (changed or added), then removed fields in the old contract's order."""
    out: list[Change] = []
    cloc = new.location

    def contract_change(rule: str, breaks: frozenset[str], message: str, field: str | None = None) -> None:
        loc = cloc
        if field is not None and new.field(field) is not None:
            loc = new.field(field).location or cloc
        out.append(Change(field, rule, breaks, message, loc))

    if old.id != new.id:
        contract_change("id-changed", NONE, f"contract id changed from `{old.id}` to `{new.id}`")
    if old.name != new.name:
        contract_change("name-changed", NONE, f"contract name changed from {old.name!r} to {new.name!r}")
    if old.event_time_field != new.event_time_field:
        contract_change(
            "event-time-changed",
            BOTH,
            f"event time field changed from {_name(old.event_time_field)} to {_name(new.event_time_field)}: readers on either side place events in time differently",
            new.event_time_field,
        )
    if tuple(old.key_fields) != tuple(new.key_fields):
        contract_change(
            "key-fields-changed",
            BOTH,
            f"key fields changed from [{', '.join(old.key_fields)}] to [{', '.join(new.key_fields)}]: entities are identified differently",
        )
    if old.unknown_fields != new.unknown_fields:
        breaks = NONE
        if closed_model:
            breaks = frozenset({BACKWARD}) if new.unknown_fields == "reject" else frozenset({FORWARD})
        contract_change("unknown-fields-changed", breaks, f"unknownFields changed from {old.unknown_fields} to {new.unknown_fields}")
    if old.topic != new.topic:
        contract_change("topic-changed", NONE, f"topic changed from {_name(old.topic)} to {_name(new.topic)}")
    if old.compatibility != new.compatibility:
        contract_change("compatibility-changed", NONE, f"compatibility changed from {old.compatibility} to {new.compatibility}")
    if old.max_future_skew_us != new.max_future_skew_us:
        from ..timeutil import format_duration

        contract_change(
            "max-future-skew-changed",
            NONE,
            f"maxFutureSkew changed from {format_duration(old.max_future_skew_us)} to {format_duration(new.max_future_skew_us)}",
        )

    old_fields = {f.name: f for f in old.fields}
    new_names = {f.name for f in new.fields}
    for f in new.fields:
        before = old_fields.get(f.name)
        loc = f.location or cloc
        if before is None:
            out.extend(_added(f, loc))
            if closed_model and old.unknown_fields == "reject":
                out.append(
                    Change(
                        f.name,
                        "field-added-to-closed-contract",
                        frozenset({FORWARD}),
                        f"field `{f.name}` added, and readers on the old contract reject fields they do not know (unknownFields: reject)",
                        loc,
                    )
                )
        else:
            out.extend(_field_diff(before, f, loc))
    for f in old.fields:
        if f.name in new_names:
            continue
        out.extend(_removed(f, cloc))
        if closed_model and new.unknown_fields == "reject":
            out.append(
                Change(
                    f.name,
                    "field-removed-from-closed-contract",
                    frozenset({BACKWARD}),
                    f"field `{f.name}` removed, and readers on the new contract reject it in old records (unknownFields: reject)",
                    cloc,
                )
            )
    return out


def _name(x: str | None) -> str:
    return f"`{x}`" if x else "(none)"


def _added(f: FieldPlan, loc: Location | None) -> list[Change]:
    if f.required and not f.has_default:
        return [
            Change(
                f.name,
                "required-field-added",
                frozenset({BACKWARD}),
                f"required field `{f.name}` added without a default: old records lack it",
                loc,
            )
        ]
    why = "with a default" if f.has_default else "optional"
    return [Change(f.name, "field-added", NONE, f"field `{f.name}` added ({why})", loc)]


def _removed(f: FieldPlan, loc: Location | None) -> list[Change]:
    if f.required and not f.has_default:
        return [
            Change(
                f.name,
                "required-field-removed",
                frozenset({FORWARD}),
                f"required field `{f.name}` removed: readers on the old contract need it and have no default",
                loc,
            )
        ]
    why = "it had a default" if f.has_default else "it was optional"
    return [Change(f.name, "field-removed", NONE, f"field `{f.name}` removed ({why})", loc)]


def _field_diff(a: FieldPlan, b: FieldPlan, loc: Location | None) -> list[Change]:
    out: list[Change] = []
    n = b.name

    def add(rule: str, breaks: frozenset[str], message: str) -> None:
        out.append(Change(n, rule, breaks, message, loc))

    type_rule = _type_rule(a, b)
    if type_rule is not None:
        rule, breaks = type_rule
        verb = {"type-widened": "widened", "type-narrowed": "narrowed", "type-changed": "changed"}[rule]
        add(rule, breaks, f"type of `{n}` {verb} from {_type_name(a, b)} to {_type_name(b, a)}")

    if a.required and not b.required:
        add("made-nullable", frozenset({FORWARD}), f"`{n}` is no longer required: readers on the old contract reject its nulls")
    elif b.required and not a.required:
        add("made-required", frozenset({BACKWARD}), f"`{n}` is now required: old records may lack it or hold null")

    # enum
    if a.enum is not None and b.enum is not None:
        old_set, new_set = set(a.enum), set(b.enum)
        added = [v for v in b.enum if v not in old_set]
        removed = [v for v in a.enum if v not in new_set]
        if added:
            add(
                "enum-value-added",
                frozenset({FORWARD}),
                f"enum of `{n}` gained {_vals(added)}: readers on the old contract reject {'it' if len(added) == 1 else 'them'}",
            )
        if removed:
            add(
                "enum-value-removed",
                frozenset({BACKWARD}),
                f"enum of `{n}` lost {_vals(removed)}: old records may hold {'it' if len(removed) == 1 else 'them'}",
            )
    elif a.enum is None and b.enum is not None:
        add("enum-added", frozenset({BACKWARD}), f"`{n}` is now restricted to {_vals(b.enum)}")
    elif a.enum is not None and b.enum is None:
        add("enum-removed", frozenset({FORWARD}), f"`{n}` is no longer restricted to {_vals(a.enum)}")

    # bounds (only comparable within a type family)
    if type_rule is None or type_rule[0] != "type-changed":
        out.extend(_bound_changes(a, b, loc, lower=True))
        out.extend(_bound_changes(a, b, loc, lower=False))
    out.extend(_length_changes(a, b, loc, "minLength", a.min_length, b.min_length, lower=True))
    out.extend(_length_changes(a, b, loc, "maxLength", a.max_length, b.max_length, lower=False))
    out.extend(_multiple_of(a, b, loc))
    out.extend(_replaceable(n, loc, "pattern", a.pattern, b.pattern))
    if a.logical_type not in ("integer", "number") and b.logical_type not in ("integer", "number"):
        out.extend(_replaceable(n, loc, "format", a.format, b.format))
    if b.unique and not a.unique:
        add("constraint-tightened", frozenset({BACKWARD}), f"`{n}` is now unique: old data may repeat values")
    elif a.unique and not b.unique:
        add("constraint-loosened", frozenset({FORWARD}), f"`{n}` is no longer unique: readers on the old contract reject repeated values")

    if a.has_default and not b.has_default:
        add("default-removed", NONE, f"default of `{n}` removed (was {_v(a.default)})")
    elif b.has_default and not a.has_default:
        add("default-added", NONE, f"default {_v(b.default)} added to `{n}`")
    elif a.has_default and b.has_default and a.default != b.default:
        add("default-changed", NONE, f"default of `{n}` changed from {_v(a.default)} to {_v(b.default)}")
    if a.primary_key != b.primary_key:
        add("primary-key-changed", NONE, f"`{n}` is {'now' if b.primary_key else 'no longer'} part of the primary key")
    if (a.description or "") != (b.description or ""):
        add("description-changed", NONE, f"description of `{n}` changed")
    return out


def _type_rule(a: FieldPlan, b: FieldPlan) -> tuple[str, frozenset[str]] | None:
    if a.logical_type == b.logical_type and a.arrow_type == b.arrow_type:
        return None
    widened = ("type-widened", frozenset({FORWARD}))
    narrowed = ("type-narrowed", frozenset({BACKWARD}))
    changed = ("type-changed", BOTH)
    ta, tb = a.logical_type, b.logical_type
    if ta == tb == "integer":
        ra, rb = INT_RANGES.get(a.arrow_type), INT_RANGES.get(b.arrow_type)
        if ra is None or rb is None:
            return changed
        if rb[0] <= ra[0] and ra[1] <= rb[1]:
            return widened
        if ra[0] <= rb[0] and rb[1] <= ra[1]:
            return narrowed
        return changed
    if ta == tb == "number":
        return widened if _FLOAT_RANK.get(b.arrow_type, 1) > _FLOAT_RANK.get(a.arrow_type, 1) else narrowed
    if ta == "integer" and tb == "number":
        return widened
    if ta == "number" and tb == "integer":
        return narrowed
    if ta == tb:
        return None  # same logical type, another physical detail (never happens today)
    return changed


def _type_name(f: FieldPlan, other: FieldPlan) -> str:
    t = f.logical_type
    if t == "integer" and (f.arrow_type != ARROW_TYPES[t] or (other.logical_type == t and other.arrow_type != f.arrow_type)):
        return f"integer ({_INT_FORMAT.get(f.arrow_type, f.arrow_type)})"
    if t == "number" and (f.arrow_type != ARROW_TYPES[t] or (other.logical_type == t and other.arrow_type != f.arrow_type)):
        return f"number ({'f32' if f.arrow_type == 'float32' else 'f64'})"
    return t


def _vals(values: Iterable[Any]) -> str:
    return ", ".join(_v(v) for v in values)


def _v(x: Any) -> str:
    if isinstance(x, str):
        return repr(x)
    return str(x)


def _num(value: Any, logical_type: str) -> Any:
    """A bound as a comparable number: epoch us / days for times, the number otherwise."""
    if logical_type in ("timestamp", "date"):
        return _bound(value, logical_type)
    if logical_type == "time" and isinstance(value, str):
        import datetime as dt

        t = dt.time.fromisoformat(value)
        return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond
    if isinstance(value, bool):
        raise ValueError("boolean bound")
    if isinstance(value, (int, float)):
        return Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    raise ValueError(f"not a number: {value!r}")


def _effective(f: FieldPlan, lower: bool) -> tuple[Any, bool, str, Any] | None:
    """The tightest lower (or upper) bound of a field: (comparable value, exclusive, key, raw value)."""
    keys = (
        (("minimum", f.minimum, False), ("exclusiveMinimum", f.exclusive_minimum, True))
        if lower
        else (
            ("maximum", f.maximum, False),
            ("exclusiveMaximum", f.exclusive_maximum, True),
        )
    )
    best = None
    for key, raw, excl in keys:
        if raw is None:
            continue
        v = _num(raw, f.logical_type)
        if f.logical_type == "integer" and excl:  # x > 0  <=>  x >= 1 for integers
            v, excl = (Fraction(int(v // 1) + 1), False) if lower else (Fraction(-int((-v) // 1) - 1), False)
        cand = (v, excl, key, raw)
        if best is None or _tighter(cand, best, lower):
            best = cand
    return best


def _tighter(x, y, lower: bool) -> bool:
    if x[0] != y[0]:
        return x[0] > y[0] if lower else x[0] < y[0]
    return x[1] and not y[1]


def _bound_changes(a: FieldPlan, b: FieldPlan, loc: Location | None, *, lower: bool) -> list[Change]:
    n = b.name
    try:
        ea, eb = _effective(a, lower), _effective(b, lower)
    except (ValueError, TypeError):
        # incomparable values: report a raw difference as a change both ways
        keys = ("minimum", "exclusive_minimum") if lower else ("maximum", "exclusive_maximum")
        if any(getattr(a, k) != getattr(b, k) for k in keys):
            which = "lower" if lower else "upper"
            return [Change(n, "constraint-changed", BOTH, f"{which} bound of `{n}` changed and the values cannot be compared", loc)]
        return []
    if ea is None and eb is None:
        return []
    if ea is None:
        return [Change(n, "constraint-tightened", frozenset({BACKWARD}), f"{eb[2]} {_v(eb[3])} added to `{n}`", loc)]
    if eb is None:
        return [Change(n, "constraint-loosened", frozenset({FORWARD}), f"{ea[2]} {_v(ea[3])} of `{n}` removed", loc)]
    same_key = ea[2] == eb[2]
    if (ea[0], ea[1]) == (eb[0], eb[1]):
        if same_key and ea[3] == eb[3]:
            return []
        return [
            Change(
                n,
                "constraint-restated",
                NONE,
                f"{'lower' if lower else 'upper'} bound of `{n}` rewritten from {ea[2]} {_v(ea[3])} to {eb[2]} {_v(eb[3])} (same meaning)",
                loc,
            )
        ]
    tighter = _tighter(eb, ea, lower)
    rule, breaks = ("constraint-tightened", frozenset({BACKWARD})) if tighter else ("constraint-loosened", frozenset({FORWARD}))
    if same_key:
        verb = ("raised" if eb[0] > ea[0] else "lowered") if ea[0] != eb[0] else ("tightened" if tighter else "loosened")
        msg = f"{eb[2]} of `{n}` {verb} from {_v(ea[3])} to {_v(eb[3])}"
    else:
        msg = f"{'lower' if lower else 'upper'} bound of `{n}` {'tightened' if tighter else 'loosened'} from {ea[2]} {_v(ea[3])} to {eb[2]} {_v(eb[3])}"
    return [Change(n, rule, breaks, msg, loc)]


def _length_changes(a: FieldPlan, b: FieldPlan, loc, key: str, x: int | None, y: int | None, *, lower: bool) -> list[Change]:
    n = b.name
    if x == y:
        return []
    if x is None:
        return [Change(n, "constraint-tightened", frozenset({BACKWARD}), f"{key} {y} added to `{n}`", loc)]
    if y is None:
        return [Change(n, "constraint-loosened", frozenset({FORWARD}), f"{key} {x} of `{n}` removed", loc)]
    tighter = y > x if lower else y < x
    rule, breaks = ("constraint-tightened", frozenset({BACKWARD})) if tighter else ("constraint-loosened", frozenset({FORWARD}))
    return [Change(n, rule, breaks, f"{key} of `{n}` {'raised' if y > x else 'lowered'} from {x} to {y}", loc)]


def _multiple_of(a: FieldPlan, b: FieldPlan, loc) -> list[Change]:
    n, x, y = b.name, a.multiple_of, b.multiple_of
    if x == y:
        return []
    if x is None:
        return [Change(n, "constraint-tightened", frozenset({BACKWARD}), f"multipleOf {_v(y)} added to `{n}`", loc)]
    if y is None:
        return [Change(n, "constraint-loosened", frozenset({FORWARD}), f"multipleOf {_v(x)} of `{n}` removed", loc)]
    try:
        fx, fy = Fraction(str(x)), Fraction(str(y))
        if fx == fy:
            return []
        if (fy / fx).denominator == 1:  # every multiple of y is a multiple of x
            return [
                Change(
                    n, "constraint-tightened", frozenset({BACKWARD}), f"multipleOf of `{n}` changed from {_v(x)} to {_v(y)} (stricter)", loc
                )
            ]
        if (fx / fy).denominator == 1:
            return [
                Change(n, "constraint-loosened", frozenset({FORWARD}), f"multipleOf of `{n}` changed from {_v(x)} to {_v(y)} (looser)", loc)
            ]
    except (ValueError, ZeroDivisionError):
        pass
    return [Change(n, "constraint-changed", BOTH, f"multipleOf of `{n}` changed from {_v(x)} to {_v(y)}", loc)]


def _replaceable(n: str, loc, key: str, x: str | None, y: str | None) -> list[Change]:
    if x == y:
        return []
    if x is None:
        return [Change(n, "constraint-tightened", frozenset({BACKWARD}), f"{key} {_v(y)} added to `{n}`", loc)]
    if y is None:
        return [Change(n, "constraint-loosened", frozenset({FORWARD}), f"{key} {_v(x)} of `{n}` removed", loc)]
    return [Change(n, "constraint-changed", BOTH, f"{key} of `{n}` changed from {_v(x)} to {_v(y)}", loc)]


# --- modes ------------------------------------------------------------------------


def _directions(mode: str) -> frozenset[str]:
    if mode not in MODES:
        raise ValueError(f"unknown compatibility mode {mode!r}: one of {', '.join(MODES)}")
    base = mode.removesuffix("_transitive")
    return {"backward": frozenset({BACKWARD}), "forward": frozenset({FORWARD}), "full": BOTH, "none": NONE}[base]


def is_transitive(mode: str) -> bool:
    _directions(mode)
    return mode.endswith("_transitive")


def breaking(changes: Iterable[Change], mode: str) -> list[Change]:
    """The changes that break under `mode` (a transitive mode uses the same per-pair rule)."""
    dirs = _directions(mode)
    return [c for c in changes if c.breaks & dirs]


def schema_changed(old: ContractPlan, new: ContractPlan) -> bool:
    """Whether anything but documentation changed (see NON_SCHEMA_RULES): such a change needs a version bump."""
    return any(c.rule not in NON_SCHEMA_RULES for c in diff(old, new))


def check_against_history(
    new: ContractPlan, versions: list[ContractPlan], mode: str, *, closed_model: bool = False
) -> list[tuple[str, list[Change]]]:
    """Compare `new` with earlier versions (newest first, as `git_history` returns them).

    Non-transitive modes compare with the newest only, transitive ones with every
    version; `none` compares with nothing. Returns (old version string, breaking changes)
    for each version compared, empty lists included.
    """
    dirs = _directions(mode)
    if not dirs or not versions:
        return []
    chosen = versions if is_transitive(mode) else versions[:1]
    return [(old.version, breaking(diff(old, new, closed_model=closed_model), mode)) for old in chosen]


# --- versions ---------------------------------------------------------------------

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def _parse_version(v: str) -> tuple[int, int, int, tuple] | None:
    m = _SEMVER.match(str(v).strip())
    if m is None:
        return None
    pre: tuple = ()
    if m.group(4):
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in m.group(4).split("."))
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre


def _version_key(p: tuple[int, int, int, tuple]) -> tuple:
    major, minor, patch, pre = p
    # a release sorts after its pre-releases (semver precedence); build metadata is ignored
    return (major, minor, patch, 1 if not pre else 0, pre)


def _is_major_bump(a: tuple, b: tuple) -> bool:
    if b[0] > a[0]:
        return True
    return a[0] == 0 and b[0] == 0 and b[1] > a[1]  # 0.y.z: the minor number is the breaking one


def _next_major(a: tuple) -> str:
    return f"0.{a[1] + 1}.0" if a[0] == 0 else f"{a[0] + 1}.0.0"


def version_verdict(old: ContractPlan, new: ContractPlan, breaking_changes: list[Change], any_schema_change: bool) -> Verdict:
    """Is new.version right for these changes? (semver: breaking -> major bump; any schema change -> some bump)."""
    ov, nv = old.version, new.version
    a, b = _parse_version(ov), _parse_version(nv)
    if a is None or b is None:
        bad = ov if a is None else nv
        return Verdict(False, f"version {bad} is not a semantic version (MAJOR.MINOR.PATCH)", False)
    ka, kb = _version_key(a), _version_key(b)
    if kb < ka:
        return Verdict(False, f"version went down from {ov} to {nv}", False)
    major = _is_major_bump(a, b)
    n = len(breaking_changes)
    what = f"{n} breaking change{'s' if n != 1 else ''}"
    if kb == ka:
        if breaking_changes:
            return Verdict(
                False,
                f"schema changed but version {nv} was not bumped, and its {what} need a major version bump: {ov} -> {_next_major(a)}",
                False,
            )
        if any_schema_change:
            return Verdict(False, f"schema changed but version {nv} was not bumped", False)
        return Verdict(True, f"version {nv} unchanged and the schema did not change", False)
    if breaking_changes:
        if major:
            return Verdict(True, f"{what}, allowed by the major version bump {ov} -> {nv}", True)
        return Verdict(False, f"{what}: breaking changes need a major version bump: {ov} -> {_next_major(a)}", False)
    return Verdict(True, f"version bumped {ov} -> {nv}, no breaking changes", major)


# --- git --------------------------------------------------------------------------


def _git(args: list[str], cwd: str | os.PathLike) -> bytes:
    try:
        r = subprocess.run(["git", "-c", "core.quotepath=off", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError as e:
        raise GitError(f"git is not installed: {e}") from None
    except NotADirectoryError as e:
        raise GitError(f"cannot run git in {cwd}: {e}") from None
    if r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git {' '.join(args)} failed: {err}")
    return r.stdout


def _repo_path(path: str | os.PathLike, cwd: str | os.PathLike | None) -> tuple[Path, str]:
    """(repository top, path relative to it in git's / form)."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    if not base.is_dir():
        raise GitError(f"not a directory: {base}")
    p = Path(path)
    if not p.is_absolute():
        p = base / p
    top = Path(_git(["rev-parse", "--show-toplevel"], base).decode("utf-8").strip())
    real_top = Path(os.path.realpath(top))
    # the file may not exist any more: resolve its directory, which usually does
    real = Path(os.path.realpath(p.parent)) / p.name
    try:
        rel = real.relative_to(real_top)
    except ValueError:
        raise GitError(f"{path} is outside the git repository at {top}") from None
    return top, rel.as_posix()


def git_history(path: str | os.PathLike, ref: str | None = None, cwd: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """Committed versions of a file.

    With `ref`: [(ref, text of the file at ref)], or [] if the file did not exist there.
    Without: every committed version, newest first, as [(commit, text)], following
    renames (`git log --follow`) and skipping commits that deleted the file. `path` is
    relative to `cwd` (default: the current directory) or absolute. Raises GitError.
    """
    top, rel = _repo_path(path, cwd)
    if ref is not None:
        try:
            _git(["rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"], top)
        except GitError as e:
            raise GitError(f"unknown git ref {ref!r}: {e.message}") from None
        exists = subprocess.run(["git", "cat-file", "-e", f"{ref}:{rel}"], cwd=top, capture_output=True, check=False)
        if exists.returncode != 0:
            return []
        return [(ref, _text(_git(["show", f"{ref}:{rel}"], top), rel, ref))]

    raw = _git(["log", "--follow", "-z", "--format=%x00%H", "--name-status", "--", rel], top).decode("utf-8", "surrogateescape")
    out: list[tuple[str, str]] = []
    for commit, status, name in _parse_log(raw, rel):
        if status.startswith("D"):
            continue
        out.append((commit, _text(_git(["show", f"{commit}:{name}"], top), name, commit)))
    return out


def _text(data: bytes, name: str, commit: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise GitError(f"{name} at {commit[:12]} is not UTF-8 ({e.reason} at byte {e.start})") from None


_HASH = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")


def _parse_log(raw: str, rel: str) -> list[tuple[str, str, str]]:
    """`git log -z --format=%x00%H --name-status` -> [(commit, status, path at that commit)], newest first.

    Tokens: "", HASH, "\\nSTATUS", path[, new path], "", HASH, ... A commit without a
    status line (possible for merges) keeps the last name seen."""
    tokens = raw.split("\0")
    out: list[tuple[str, str, str]] = []
    current = rel
    i = 0
    while i < len(tokens):
        tok = tokens[i].strip("\n")
        if not _HASH.match(tok):
            i += 1
            continue
        commit = tok
        i += 1
        status = "M"
        if i < len(tokens) and tokens[i].startswith("\n") and tokens[i].strip("\n"):
            status = tokens[i].strip("\n")
            i += 1
            if status[:1] in ("R", "C"):
                old_name, new_name = tokens[i], tokens[i + 1]
                i += 2
                out.append((commit, status, new_name))
                current = old_name  # older commits knew the file by its old name
                continue
            current = tokens[i]
            i += 1
        out.append((commit, status, current))
    return out


__all__ = [
    "BACKWARD",
    "FORWARD",
    "MODES",
    "NON_SCHEMA_RULES",
    "Change",
    "GitError",
    "Verdict",
    "breaking",
    "check_against_history",
    "diff",
    "git_history",
    "is_transitive",
    "schema_changed",
    "version_verdict",
]
