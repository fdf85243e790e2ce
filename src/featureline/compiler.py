"""Specs -> one immutable Plan, with every cross-check reported at once with file:line:col."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .aggregations import FUNCTIONS
from .errors import Problems, did_you_mean
from .expr import ExprError, compile_expr
from .plan import (
    ARROW_TYPES,
    BatchPlan,
    ContractPlan,
    EntityPlan,
    FeaturePlan,
    FieldPlan,
    Plan,
    ProjectPlan,
    ServePlan,
    ServicePlan,
    SourcePlan,
    StreamPlan,
    ViewPlan,
)
from .repo import LoadedRepo, Sourced, load_repo
from .secrets import ENV_REF, is_secret_key, ref_var, refusal, split_url
from .specs.contract import COMPATIBILITY_MODES, CONTRACT_SETTINGS, ContractSpec
from .timeutil import DAY, MINUTE, SECOND, default_hop, format_duration, parse_duration

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


def compile_project(start: str | Path = ".") -> Plan:
    """Load, cross-check and compile the project at or above `start`. Raises SpecError."""
    return Compiler(load_repo(start)).run()


def _kafka_settings() -> set[str]:
    """Every setting a kafka-python consumer, producer or admin client takes."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    return set(KafkaConsumer.DEFAULT_CONFIG) | set(KafkaProducer.DEFAULT_CONFIG) | set(KafkaAdminClient.DEFAULT_CONFIG)


def agg_output_type(function: str, input_type: str | None) -> str:
    return FUNCTIONS[function].output_type(input_type)


class Compiler:
    def __init__(self, repo: LoadedRepo):
        self.repo = repo
        self.root = repo.root
        self.p = Problems()
        self._broken_views: set[str] = set()  # views with problems: don't cascade into services
        self._bad_event_time: set[str] = set()  # contracts whose eventTimeField was reported

    def run(self) -> Plan:
        project = self._project()
        contracts = self._contracts()
        items = self._items()
        entities = self._entities(items["entities"])
        sources = self._sources(items["sources"], contracts)
        views = self._views(items["feature_views"], entities, sources, contracts)
        services = self._services(items["feature_services"], views, entities)
        entity_plans = self._entity_plans(entities, views, sources, contracts)
        self.p.raise_if_any()
        return Plan(project, entity_plans, contracts, sources, views, services)

    # -- project -------------------------------------------------------------------
    def _env(self, value: str | None, s: Sourced, *path) -> str | None:
        if value is None:
            return None

        def sub(m: re.Match) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            self.p.add(
                "missing-env",
                f"environment variable `{var}` is not set and has no default",
                s.loc(*path),
                f"set {var}, or write ${{{var}:-default}}",
            )
            return ""

        return ENV_REF.sub(sub, value)

    def _project(self) -> ProjectPlan:
        """Project settings; secrets stay `${VAR}` references (secrets.py resolves them when connecting)."""
        s = self.repo.project
        spec = s.spec
        kafka = spec.kafka
        redis_url, password_env, password_from = self._redis(s)
        tokens = [self._secret(t, s, ("serve", "auth_tokens", i), "FEATURELINE_TOKEN") for i, t in enumerate(spec.serve.auth_tokens)]
        return ProjectPlan(
            name=spec.project,
            root=str(self.root),
            redis_url=redis_url,
            redis_password_env=password_env,
            redis_key_prefix=spec.online_store.key_prefix,
            kafka_bootstrap=self._bootstrap(s),
            kafka_security_protocol=kafka.security_protocol,
            kafka_sasl_mechanism=kafka.sasl_mechanism,
            kafka_sasl_username=self._env(kafka.sasl_username, s, "kafka", "sasl_username"),
            kafka_sasl_password_env=self._secret(kafka.sasl_password, s, ("kafka", "sasl_password"), "KAFKA_PASSWORD"),
            kafka_consumer_group=kafka.consumer_group,
            kafka_client=self._kafka_client(s),
            offline_path=str((self.root / self._env(spec.offline_store.path, s, "offline_store", "path")).resolve()),
            redis_timeout_s=_seconds(spec.online_store.timeout),
            redis_password_from=password_from,
            serve=_serve_plan(spec.serve, tuple(t for t in tokens if t)),
        )

    def _secret(self, value, s: Sourced, at: tuple, example: str) -> str | None:
        """The variable of secret `value` (a bare `${VAR}`), or None; anything else is reported."""
        if value is None:
            return None
        why = refusal(value)
        if why:
            m = ENV_REF.fullmatch(value.strip()) if isinstance(value, str) else None
            var = m.group(1) if m else example  # ${VAR:-default}: keep its VAR
            self.p.add(
                "literal-secret",
                f"`{at[-1]}`: {why}",
                s.loc(*at),
                f"write `{at[-1]}: ${{{var}}}` and set {var} where featureline connects",
                secret=True,
            )
            return None
        return ref_var(value)

    def _redis(self, s: Sourced) -> tuple[str, str | None, str]:
        """The Redis URL without a password (other references expanded), the password's variable,
        and the setting that names it."""
        st = s.spec.online_store
        at = ("online_store", "url")
        hint = "write the password as a reference: redis://:${REDIS_PASSWORD}@host:6379/0, or `password: ${REDIS_PASSWORD}`"
        bare, password, params = split_url(st.url)
        for name in params:
            self.p.add(
                "literal-secret",
                f"`url`: query parameter `{name}` is a secret, and a URL may hold one only as a reference in its userinfo",
                s.loc(*at),
                hint,
                secret=True,
            )
        env, origin = None, "online_store.password"
        if password is not None:
            why = refusal(password)
            if why:
                self.p.add("literal-secret", f"`url`: the password in the URL's userinfo: {why}", s.loc(*at), hint, secret=True)
            env, origin = ref_var(password), "online_store.url"
        if st.password is not None:
            field_env = self._secret(st.password, s, ("online_store", "password"), "REDIS_PASSWORD")
            if password is not None:
                self.p.add(
                    "invalid-value",
                    "`password`: the Redis password is set twice, here and in `url`",
                    s.loc("online_store", "password"),
                    "keep one",
                    secret=True,
                )
            else:
                env = field_env
        url = self._env(bare, s, *at)
        if url != bare:  # did a variable bring a password (which the plan would then hold)?
            _, brought, brought_params = split_url(url)
            if brought is not None or set(brought_params) - set(params):
                names = ", ".join(f"${{{m.group(1)}}}" for m in ENV_REF.finditer(bare))
                self.p.add(
                    "literal-secret", f"`url`: {names} put a password in the URL, and the compiled plan would hold it", s.loc(*at), hint
                )
        return url, env, origin

    def _bootstrap(self, s: Sourced) -> str:
        raw = s.spec.kafka.bootstrap_servers
        out = self._env(raw, s, "kafka", "bootstrap_servers")
        if "@" in raw or "@" in out:
            msg = "`bootstrap_servers`: takes host:port[,host:port] without credentials"
            self.p.add(
                "invalid-value",
                msg,
                s.loc("kafka", "bootstrap_servers"),
                "credentials go in sasl_username and sasl_password: ${KAFKA_PASSWORD}",
                secret="@" in raw,
            )
        return out

    def _kafka_client(self, s: Sourced) -> dict:
        """kafka.client: known kafka-python settings only; secret-like ones kept as `${VAR}`."""
        client = s.spec.kafka.client
        known = _kafka_settings() if client else set()
        out: dict = {}
        for k, v in client.items():
            at = ("kafka", "client", k)
            if k not in known:
                self.p.add("unknown-setting", f"`{k}` is not a kafka-python client setting", s.loc(*at, key=True), did_you_mean(k, known))
            elif is_secret_key(k):
                if self._secret(v, s, at, f"KAFKA_{k.upper()}"):
                    out[k] = v.strip()
            else:
                out[k] = self._env(v, s, *at) if isinstance(v, str) else v
        return out

    # -- contracts -----------------------------------------------------------------
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
            from .contracts.regex import pattern_error

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
    def _items(self) -> dict[str, list[Sourced]]:
        out: dict[str, list[Sourced]] = {"entities": [], "sources": [], "feature_views": [], "feature_services": []}
        for f in self.repo.feature_files:
            for kind in out:
                for i, spec in enumerate(getattr(f.spec, kind)):
                    out[kind].append(Sourced(spec, f.doc, (kind, i)))
        return out

    def _unique(self, items: list[Sourced], what: str) -> dict[str, Sourced]:
        seen: dict[str, Sourced] = {}
        for s in items:
            if s.spec.name in seen:
                self.p.add("duplicate-name", f"{what} `{s.spec.name}` is already defined at {seen[s.spec.name].loc('name')}", s.loc("name"))
            else:
                seen[s.spec.name] = s
        return seen

    def _entities(self, items: list[Sourced]) -> dict[str, Sourced]:
        return self._unique(items, "entity")

    def _sources(self, items: list[Sourced], contracts: dict[str, ContractPlan]) -> dict[str, SourcePlan]:
        out: dict[str, SourcePlan] = {}
        for name, s in self._unique(items, "source").items():
            spec = s.spec
            c = contracts.get(spec.contract)
            if c is None:
                self.p.add(
                    "unknown-contract",
                    f"source `{name}` follows contract `{spec.contract}`, which is not defined",
                    s.loc("contract"),
                    did_you_mean(spec.contract, contracts),
                )
                continue
            et = spec.event_time or c.event_time_field
            if spec.event_time is None and c.id in self._bad_event_time:
                continue  # reported at the contract
            if et is None:
                self.p.add(
                    "no-event-time",
                    f"source `{name}` has no event-time column: set `event_time:` here or `eventTimeField` in contract `{c.id}`",
                    s.loc("name"),
                )
                continue
            f = c.field(et)
            if f is None:
                self.p.add(
                    "unknown-column",
                    f"event-time column `{et}` is not in contract `{c.id}` ({c.file})",
                    s.loc("event_time") if spec.event_time else s.loc("contract"),
                    did_you_mean(et, c.columns),
                )
                continue
            if f.logical_type != "timestamp":
                self.p.add(
                    "invalid-type",
                    f"event-time column `{et}` must be a timestamp, contract `{c.id}` says {f.logical_type}",
                    s.loc("event_time") if spec.event_time else s.loc("contract"),
                )
            batch = None
            if spec.batch is not None:
                b = spec.batch
                batch = BatchPlan(
                    format=b.resolved_format,
                    path=str(self.root / b.path) if b.path else None,
                    table=b.table,
                    database=str(self.root / b.database) if b.database else None,
                )
            stream = None
            if spec.stream is not None:
                topic = spec.stream.topic or c.topic
                if topic is None:
                    self.p.add(
                        "no-topic",
                        f"source `{name}` streams but names no topic, and contract `{c.id}` binds none",
                        s.loc("stream"),
                        "set `stream: {topic: ...}` or the contract's `topic` customProperty",
                    )
                    continue
                if spec.stream.format != "json":  # declared means enforced: the stream decodes JSON only
                    self.p.add(
                        "unsupported",
                        f"source `{name}`: stream format `{spec.stream.format}` is not read yet; the stream decodes JSON records",
                        s.loc("stream", "format"),
                        "produce JSON records (`format: json`, the default); decoding Avro is not built yet",
                    )
                    continue
                stream = StreamPlan(topic=topic, format=spec.stream.format)
                if any(fp.unique for fp in c.fields) and c.unique_within_us is None:
                    self.p.add(
                        "no-event-time",
                        f"source `{name}` streams contract `{c.id}`, which has unique properties but no eventTimeField: the stream keeps uniqueness per bucket of event time (uniqueWithin)",
                        s.loc("stream"),
                        f"set `eventTimeField` in contract `{c.id}`",
                    )
            out[name] = SourcePlan(name, c.id, et, batch, stream, s.loc("name"))
        return out

    def _views(self, items, entities, sources, contracts) -> dict[str, ViewPlan]:
        out: dict[str, ViewPlan] = {}
        for name, s in self._unique(items, "feature view").items():
            before = len(self.p.items)
            self._view(name, s, entities, sources, contracts, out)
            if len(self.p.items) > before:
                self._broken_views.add(name)
        return out

    def _view(self, name, s, entities, sources, contracts, out) -> None:
        if True:
            spec = s.spec
            ent = entities.get(spec.entity)
            if ent is None:
                self.p.add(
                    "unknown-entity",
                    f"feature view `{name}` uses entity `{spec.entity}`, which is not defined",
                    s.loc("entity"),
                    did_you_mean(spec.entity, entities),
                )
            src = sources.get(spec.source)
            if src is None:
                known = {s2.spec.name for s2 in self._items()["sources"]}
                if spec.source not in known:
                    self.p.add(
                        "unknown-source",
                        f"feature view `{name}` reads source `{spec.source}`, which is not defined",
                        s.loc("source"),
                        did_you_mean(spec.source, known),
                    )
                else:
                    self._broken_views.add(name)  # the source's own problem was reported where it is defined
                return
            columns = contracts[src.contract].columns
            ok = True
            if ent is not None:
                for key in ent.spec.join_keys:
                    if key not in columns:
                        ok = False
                        self.p.add(
                            "missing-key-column",
                            f"entity `{ent.spec.name}` joins on `{key}`, but source `{src.name}`'s contract `{src.contract}` has no such property",
                            s.loc("entity"),
                            did_you_mean(key, columns),
                        )
            where = None
            if spec.where is not None:
                try:
                    ce = compile_expr(spec.where, columns)
                    if ce.dtype not in ("boolean", "null"):
                        self.p.add("invalid-type", f"`where` must be a condition (boolean), this is {ce.dtype}", s.loc("where"))
                    where = ce.sql
                except ExprError as e:
                    self.p.add("invalid-expression", f"in `where`: {e}", s.loc("where"), e.hint)
            if spec.aggregations if hasattr(spec, "aggregations") else False:
                feats = self._windowed_features(s, columns)
                kind, ttl = "window", None
            else:
                kind = "latest"
                try:
                    ttl = parse_duration(spec.ttl)
                except ValueError as e:
                    self.p.add("invalid-duration", f"ttl: {e}", s.loc("ttl"))
                    ttl = None
                feats = self._latest_features(s, columns, ttl)
            if ent is None or not ok:
                return
            out[name] = ViewPlan(
                name, kind, ent.spec.name, tuple(ent.spec.join_keys), src.name, where, tuple(feats), ttl, spec.online, s.loc("name")
            )

    def _check_unique_feature(self, seen: dict, name: str, view: str, loc) -> bool:
        if name in seen:
            self.p.add("duplicate-name", f"feature `{name}` is defined twice in view `{view}` (first at {seen[name]})", loc)
            return False
        seen[name] = loc
        return True

    def _windowed_features(self, s: Sourced, columns: dict[str, str]) -> list[FeaturePlan]:
        view = s.spec.name
        out: list[FeaturePlan] = []
        seen: dict = {}
        for j, agg in enumerate(s.spec.aggregations):
            at = ("aggregations", j)
            input_type: str | None = None
            expr_sql = None
            if agg.column is not None:
                input_type = columns.get(agg.column)
                if input_type is None:
                    self.p.add(
                        "unknown-column",
                        f"column `{agg.column}` is not in the source's contract",
                        s.loc(*at, "column"),
                        did_you_mean(agg.column, columns),
                    )
                    continue
            elif agg.expr is not None:
                try:
                    ce = compile_expr(agg.expr, columns)
                except ExprError as e:
                    self.p.add("invalid-expression", f"in `expr`: {e}", s.loc(*at, "expr"), e.hint)
                    continue
                input_type, expr_sql = ce.dtype, ce.sql
            fns = agg.function_list
            fn_key = "function" if agg.function else "functions"
            bad = False
            for k, fn in enumerate(fns):
                agg_fn = FUNCTIONS[fn]
                if agg_fn.inputs is not None and input_type not in agg_fn.inputs:
                    what = f"column `{agg.column}`" if agg.column else "the expression"
                    self.p.add(
                        "invalid-aggregation",
                        f"`{fn}` needs a {agg_fn.input_kind} input, but {what} is {input_type}",
                        s.loc(*at, fn_key, *((k,) if agg.functions else ())),
                        agg_fn.hint,
                    )
                    bad = True
            hop = None
            if agg.hop is not None:
                try:
                    hop = parse_duration(agg.hop)
                except ValueError as e:
                    self.p.add("invalid-duration", f"hop: {e}", s.loc(*at, "hop"))
                    bad = True
            windows: list[tuple[str, int]] = []
            for k, w in enumerate(agg.windows):
                try:
                    wu = parse_duration(w)
                except ValueError as e:
                    self.p.add("invalid-duration", f"window: {e}", s.loc(*at, "windows", k))
                    bad = True
                    continue
                if hop is not None and hop > wu:
                    self.p.add("invalid-hop", f"hop {agg.hop} is longer than window {w}", s.loc(*at, "hop"))
                    bad = True
                if hop is not None and hop < SECOND:
                    self.p.add("invalid-hop", "hop must be at least 1s", s.loc(*at, "hop"))
                    bad = True
                windows.append((str(w).strip(), wu))
            if bad:
                continue
            single = len(fns) == 1 and len(windows) == 1
            base = agg.name or agg.column
            for fn in fns:
                for wtext, wu in windows:
                    if single and agg.name:
                        fname = agg.name
                    else:
                        fname = f"{base}_{fn}_{wtext}" if base else f"{fn}_{wtext}"
                    loc = s.loc(*at, "name" if agg.name else ("column" if agg.column else fn_key))
                    if not self._check_unique_feature(seen, fname, view, loc):
                        continue
                    out.append(
                        FeaturePlan(
                            name=fname,
                            view=view,
                            kind="window",
                            function=fn,
                            column=agg.column,
                            expr=expr_sql,
                            input_type=input_type,
                            dtype=agg_output_type(fn, input_type),
                            window_us=wu,
                            hop_us=hop or default_hop(wu),
                            location=loc,
                        )
                    )
        return out

    def _latest_features(self, s: Sourced, columns: dict[str, str], ttl: int | None) -> list[FeaturePlan]:
        out: list[FeaturePlan] = []
        seen: dict = {}
        for j, f in enumerate(s.spec.feature_list()):
            col = f.column or f.name
            loc = s.loc("features", j)
            if col not in columns:
                self.p.add(
                    "unknown-column",
                    f"column `{col}` is not in the source's contract",
                    s.loc("features", j, *(("column",) if f.column else ())),
                    did_you_mean(col, columns),
                )
                continue
            if not self._check_unique_feature(seen, f.name, s.spec.name, loc):
                continue
            out.append(FeaturePlan(f.name, s.spec.name, "latest", None, col, None, columns[col], columns[col], ttl_us=ttl, location=loc))
        return out

    def _services(self, items, views: dict[str, ViewPlan], entities) -> dict[str, ServicePlan]:
        out: dict[str, ServicePlan] = {}
        all_views = {s.spec.name for s in self._items()["feature_views"]}
        for name, s in self._unique(items, "feature service").items():
            refs: list[str] = []
            outputs: dict[str, str] = {}
            keys: list[str] = []
            for k, ref in enumerate(s.spec.features):
                loc = s.loc("features", k)
                view_name, sep, feat = ref.partition(":")
                if not sep or not view_name or not feat:
                    self.p.add("invalid-reference", f"`{ref}` is not a feature reference", loc, "write `view:feature` or `view:*`")
                    continue
                v = views.get(view_name)
                if view_name in self._broken_views:
                    continue  # the view's own problems were reported; don't cascade
                if v is None:
                    if view_name not in all_views:
                        self.p.add(
                            "unknown-view",
                            f"feature service `{name}` names view `{view_name}`, which is not defined",
                            loc,
                            did_you_mean(view_name, all_views),
                        )
                    continue
                if feat == "*":
                    chosen = [f.name for f in v.features]
                elif v.feature(feat) is None:
                    self.p.add(
                        "unknown-feature",
                        f"view `{view_name}` has no feature `{feat}`",
                        loc,
                        did_you_mean(feat, [f.name for f in v.features]),
                    )
                    continue
                else:
                    chosen = [feat]
                for fname in chosen:
                    full = f"{view_name}:{fname}"
                    if full in refs:
                        self.p.add("duplicate-feature", f"feature `{full}` is listed twice in service `{name}`", loc)
                        continue
                    if fname in outputs and outputs[fname] != view_name:
                        self.p.add(
                            "feature-name-clash",
                            f"services return features by name, and `{fname}` comes from both `{outputs[fname]}` and `{view_name}`",
                            loc,
                            "rename one of the features",
                        )
                        continue
                    outputs[fname] = view_name
                    refs.append(full)
                for key in v.join_keys:
                    if key not in keys:
                        keys.append(key)
            out[name] = ServicePlan(name, tuple(refs), tuple(keys), s.loc("name"))
        return out

    def _entity_plans(self, entities, views: dict[str, ViewPlan], sources, contracts) -> dict[str, EntityPlan]:
        out: dict[str, EntityPlan] = {}
        for name, s in entities.items():
            types: list[str | None] = [None] * len(s.spec.join_keys)
            for v in views.values():
                if v.entity != name:
                    continue
                cols = contracts[sources[v.source].contract].columns
                for i, key in enumerate(s.spec.join_keys):
                    t = cols.get(key)
                    if types[i] is None:
                        types[i] = t
                    elif t is not None and t != types[i]:
                        self.p.add(
                            "key-type-clash",
                            f"join key `{key}` of entity `{name}` is {types[i]} in one source and {t} in `{v.source}`",
                            v.location,
                        )
            out[name] = EntityPlan(name, tuple(s.spec.join_keys), tuple(t or "string" for t in types))
        return out


_MISSING = object()
__all__ = ["compile_project", "Compiler", "agg_output_type", "format_duration"]


def compile_contract_texts(texts: dict[str, str | Path]) -> tuple[dict[str, ContractPlan], list]:
    """Compile contracts given as {file name: YAML text, or the path of a file to read}, outside any project.

    For producers' CI: a repository of contracts without featureline.yaml, and old
    versions read from git. Returns the plans by id and the problems found (file:line).
    """
    from .errors import SpecError
    from .repo import _validate_doc
    from .specs.contract import ContractSpec
    from .yamlio import load_file, load_text

    problems = Problems()
    loaded: list[Sourced] = []
    for name, text in texts.items():
        try:
            doc = load_file(text, name) if isinstance(text, Path) else load_text(text, name)
        except SpecError as e:
            problems.extend(e.problems)
            continue
        s = _validate_doc(doc, ContractSpec, problems)
        if s is not None:
            loaded.append(s)
    c = Compiler(LoadedRepo(Path.cwd(), None, contracts=loaded))  # type: ignore[arg-type]
    c.p = problems
    plans = c._contracts()
    return plans, sorted(problems.items, key=lambda p: (p.location.file, p.location.line, p.location.col) if p.location else ("", 0, 0))


def _serve_plan(spec, tokens: tuple[str, ...]) -> ServePlan:
    return ServePlan(
        auth_token_envs=tokens,
        max_body=spec.max_body,
        max_entities=spec.max_entities,
        max_features=spec.max_features,
        timeout_s=_seconds(spec.timeout),
        header_timeout_s=_seconds(spec.header_timeout),
        body_timeout_s=_seconds(spec.body_timeout),
        refusal_delay_s=_seconds(spec.refusal_delay),
        keep_alive_s=_seconds(spec.keep_alive),
        max_connections=spec.max_connections,
        metrics_port=spec.metrics_port,
    )


def _seconds(text: str) -> float:
    """`500ms`, `5s`, `1m` -> seconds (the spec's pattern has checked the form)."""
    for unit, k in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * k
    raise ValueError(text)
