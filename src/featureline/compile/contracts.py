"""ODCS contracts -> ContractPlans: fields, types, options, quality rules, settings."""

from __future__ import annotations

from typing import Any

from ..errors import did_you_mean
from ..plan import (
    ARROW_TYPES,
    ContractPlan,
    FieldPlan,
)
from ..repo import Sourced
from ..specs.contract import COMPATIBILITY_MODES, CONTRACT_SETTINGS, ContractSpec
from ..timeutil import DAY, MINUTE, parse_duration

# logicalTypeOptions featureline enforces, per logicalType
TYPE_OPTIONS = {
    "string": {"minLength", "maxLength", "pattern", "format"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "format"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "format"},
    "timestamp": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format", "timezone", "defaultTimezone"},
    "date": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format"},
    "time": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format", "timezone", "defaultTimezone"},
    "boolean": set(),
    "object": set(),
    "array": set(),
}
STRING_FORMATS = ("email", "uuid", "uri", "hostname", "ipv4", "ipv6", "date", "date-time")
INT_FORMATS = {
    "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
    "u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64",
}  # fmt: skip


_MISSING = object()


class ContractPart:
    """Compiler steps (mixed into `compiler.Compiler`, which holds `p`, the problems, and `repo`)."""

    def _contracts(self) -> dict[str, ContractPlan]:
        out: dict[str, ContractPlan] = {}
        for s in self.repo.contracts:
            spec: ContractSpec = s.spec
            if spec.id in out:
                first = out[spec.id].location
                self.p.add("duplicate-name", f"contract id `{spec.id}` already defined at {first}", s.loc("id"))
                continue
            plan = self._contract(s)
            if plan is not None:
                out[spec.id] = plan
        return out

    def _contract(self, s: Sourced) -> ContractPlan | None:
        spec: ContractSpec = s.spec
        if len(spec.schema_) != 1:
            self.p.add(
                "contract-schema",
                f"contract `{spec.id}` must describe exactly one schema object (the event stream or table), found {len(spec.schema_)}",
                s.loc("schema", key=True),
            )
            return None
        obj = spec.schema_[0]
        fields: list[FieldPlan] = []
        names: dict[str, int] = {}
        for i, prop in enumerate(obj.properties):
            at = ("schema", 0, "properties", i)
            if prop.name in names:
                self.p.add("duplicate-name", f"property `{prop.name}` is defined twice in contract `{spec.id}`", s.loc(*at, "name"))
                continue
            names[prop.name] = i
            f = self._field(s, prop, at)
            if f is not None:
                fields.append(f)
        columns = {f.name: f for f in fields}

        # featureline's settings in customProperties
        settings: dict[str, Any] = {}
        for j, cp in enumerate(spec.customProperties):
            if cp.property in CONTRACT_SETTINGS:
                settings[cp.property] = (cp.value, ("customProperties", j, "value"))
            else:
                hint = did_you_mean(cp.property, CONTRACT_SETTINGS)
                if hint:
                    self.p.add(
                        "unknown-setting", f"unknown featureline setting `{cp.property}`", s.loc("customProperties", j, "property"), hint
                    )

        def setting(key, default):
            return settings.get(key, (default, ("customProperties",)))

        compat, at = setting("compatibility", "backward")
        if compat not in COMPATIBILITY_MODES:
            self.p.add(
                "invalid-value",
                f"compatibility must be one of {', '.join(COMPATIBILITY_MODES)}",
                s.loc(*at),
                did_you_mean(str(compat), COMPATIBILITY_MODES),
            )
        unknown, at = setting("unknownFields", "reject")
        if unknown not in ("reject", "ignore"):
            self.p.add("invalid-value", "unknownFields must be `reject` or `ignore`", s.loc(*at))
        skew, at = setting("maxFutureSkew", "5m")
        try:
            skew_us = parse_duration(skew)
        except ValueError as e:
            self.p.add("invalid-duration", str(e), s.loc(*at))
            skew_us = 5 * MINUTE
        etf, at = setting("eventTimeField", None)
        if etf is not None:
            f = columns.get(etf)
            if f is None:
                self.p.add(
                    "unknown-column",
                    f"eventTimeField `{etf}` is not a property of contract `{spec.id}`",
                    s.loc(*at),
                    did_you_mean(etf, columns),
                )
                self._bad_event_time.add(spec.id)
            elif f.logical_type != "timestamp":
                self.p.add("invalid-type", f"eventTimeField `{etf}` must have logicalType timestamp, not {f.logical_type}", s.loc(*at))
                self._bad_event_time.add(spec.id)
        unique_within_us = None
        within, at = setting("uniqueWithin", None)
        has_unique = any(f.unique for f in fields)
        if within is not None and etf is None:
            self.p.add(
                "invalid-value",
                "uniqueWithin needs the contract's eventTimeField: duplicates are looked for within buckets of event time",
                s.loc(*at),
            )
        elif within is not None and not has_unique:
            self.p.add(
                "invalid-value",
                "uniqueWithin is set but no property of the contract is unique",
                s.loc(*at),
                "remove it, or set `unique: true` on a property",
            )
        elif etf is not None and has_unique:
            try:
                unique_within_us = parse_duration(str(within if within is not None else "1d"))
            except ValueError as e:
                self.p.add("invalid-duration", str(e), s.loc(*at))
                unique_within_us = DAY
        keys, at = setting("keyFields", [])
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list):
            self.p.add("invalid-value", "keyFields must be a list of property names", s.loc(*at))
            keys = []
        for k, key in enumerate(keys):
            if key not in columns:
                self.p.add(
                    "unknown-column",
                    f"keyFields names `{key}`, which is not a property of contract `{spec.id}`",
                    s.loc(*at, k),
                    did_you_mean(str(key), columns),
                )
        topic, _ = setting("topic", None)
        if topic is None and (obj.physicalType or "").lower() == "topic":
            topic = obj.physicalName or obj.name
        return ContractPlan(
            id=spec.id,
            name=spec.name or spec.id,
            version=spec.version,
            compatibility=str(compat),
            fields=tuple(fields),
            event_time_field=etf,
            key_fields=tuple(str(k) for k in keys),
            topic=topic,
            samples=tuple(str(sv["path"]) for sv in spec.servers or () if sv.get("type") == "local" and sv.get("path")),
            unknown_fields=str(unknown),
            max_future_skew_us=skew_us,
            unique_within_us=unique_within_us,
            file=s.doc.file,
            location=s.loc("id"),
        )

    def _field(self, s: Sourced, prop, at: tuple) -> FieldPlan | None:
        t = prop.logicalType
        if t is None:
            self.p.add(
                "missing-type",
                f"property `{prop.name}` needs a logicalType for featureline to check it",
                s.loc(*at, "name"),
                f"one of {', '.join(TYPE_OPTIONS)}",
            )
            return None
        opts = dict(prop.logicalTypeOptions or {})
        for k in opts:
            if k not in TYPE_OPTIONS[t]:
                allowed = sorted(TYPE_OPTIONS[t])
                self.p.add(
                    "unknown-option",
                    f"logicalTypeOptions `{k}` does not apply to logicalType {t}",
                    s.loc(*at, "logicalTypeOptions", k, key=True),
                    did_you_mean(k, allowed) or (f"options for {t}: {', '.join(allowed)}" if allowed else f"{t} takes no options"),
                )
        arrow = ARROW_TYPES[t]
        fmt = opts.get("format")
        if fmt is not None:
            if t == "string" and fmt not in STRING_FORMATS:
                self.p.add(
                    "unknown-format",
                    f"featureline cannot check string format `{fmt}`",
                    s.loc(*at, "logicalTypeOptions", "format"),
                    did_you_mean(fmt, STRING_FORMATS) or f"supported: {', '.join(STRING_FORMATS)}",
                )
            elif t == "integer":
                if fmt not in INT_FORMATS:
                    self.p.add(
                        "unknown-format",
                        f"integer format must be one of {', '.join(INT_FORMATS)}",
                        s.loc(*at, "logicalTypeOptions", "format"),
                    )
                else:
                    arrow = INT_FORMATS[fmt]
            elif t == "number":
                if fmt not in ("f32", "f64"):
                    self.p.add("unknown-format", "number format must be f32 or f64", s.loc(*at, "logicalTypeOptions", "format"))
                elif fmt == "f32":
                    arrow = "float32"
        pattern = opts.get("pattern")
        if pattern is not None:
            from ..contracts.regex import pattern_error

            why = pattern_error(pattern)
            if why is not None:  # every engine runs patterns on RE2 (contracts/regex.py)
                self.p.add("invalid-pattern", f"pattern does not compile in RE2: {why}", s.loc(*at, "logicalTypeOptions", "pattern"))
                pattern = None
        enum = None
        for q, rule in enumerate(prop.quality):
            qat = (*at, "quality", q)
            if rule.type != "library":
                continue  # text/sql/custom rules belong to other tools; featureline checks library rules
            metric = rule.metric or rule.rule
            if metric not in ("invalidValues", "nullValues", "missingValues", "duplicateValues"):
                self.p.add(
                    "unsupported-rule",
                    f"featureline cannot enforce quality metric `{metric}` per record",
                    s.loc(*qat),
                    "supported: invalidValues (validValues), nullValues, missingValues, duplicateValues",
                )
                continue
            thresholds = [
                rule.mustBeGreaterThan,
                rule.mustBeGreaterOrEqualTo,
                rule.mustBeLessThan,
                rule.mustBeLessOrEqualTo,
                rule.mustBeBetween,
                rule.mustNotBeBetween,
                rule.mustNotBe,
            ]
            if any(x is not None for x in thresholds) or rule.mustBe not in (None, 0):
                self.p.add(
                    "unsupported-rule", "featureline enforces quality rules per record: use `mustBe: 0` (no offending rows)", s.loc(*qat)
                )
            if metric == "invalidValues":
                vals = (rule.arguments or {}).get("validValues")
                if not isinstance(vals, list) or not vals:
                    self.p.add("invalid-value", "invalidValues needs `arguments.validValues`, a non-empty list", s.loc(*qat))
                else:
                    enum = tuple(vals)
        minimum = opts.get("minimum")
        maximum = opts.get("maximum")
        default = prop.setting("default", _MISSING)
        return FieldPlan(
            name=prop.name,
            logical_type=t,
            arrow_type=arrow,
            required=prop.required,
            unique=prop.unique or any((r.metric or r.rule) == "duplicateValues" for r in prop.quality if r.type == "library"),
            primary_key=prop.primaryKey,
            minimum=minimum,
            maximum=maximum,
            exclusive_minimum=opts.get("exclusiveMinimum"),
            exclusive_maximum=opts.get("exclusiveMaximum"),
            multiple_of=opts.get("multipleOf"),
            min_length=opts.get("minLength"),
            max_length=opts.get("maxLength"),
            pattern=pattern,
            format=fmt,
            enum=enum,
            has_default=default is not _MISSING,
            default=None if default is _MISSING else default,
            description=prop.description,
            classification=prop.classification,
            location=s.loc(*at, "name"),
        )

    # -- feature files --------------------------------------------------------------
