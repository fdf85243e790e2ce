"""Entities, sources, feature views and services -> their plans, cross-checked."""

from __future__ import annotations

from ..aggregations import FUNCTIONS
from ..errors import did_you_mean
from ..expr import ExprError, compile_expr
from ..plan import (
    BatchPlan,
    ContractPlan,
    EntityPlan,
    FeaturePlan,
    ServicePlan,
    SourcePlan,
    StreamPlan,
    ViewPlan,
)
from ..repo import Sourced
from ..timeutil import SECOND, default_hop, parse_duration


def _settings(agg, fn: str) -> list:
    """The feature settings an aggregation gives fn: [k], each percentile, or [None]."""
    name = FUNCTIONS[fn].param
    v = getattr(agg, name) if name else None
    return list(v) if isinstance(v, list) else [v]


def agg_output_type(function: str, input_type: str | None) -> str:
    return FUNCTIONS[function].output_type(input_type)


class FeaturePart:
    """Compiler steps (mixed into `compiler.Compiler`, which holds `p`, the problems, and `repo`)."""

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
            single = len(fns) == 1 and len(windows) == 1 and len(_settings(agg, fns[0])) == 1
            base = agg.name or agg.column
            for fn in fns:
                for param in _settings(agg, fn):
                    for wtext, wu in windows:
                        part = FUNCTIONS[fn].feature_part(param)
                        if single and agg.name:
                            fname = agg.name
                        else:
                            fname = f"{base}_{part}_{wtext}" if base else f"{part}_{wtext}"
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
                                param=param,
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
