"""Human-readable rendering of a compiled Plan (`featureline plan`)."""

from __future__ import annotations

from .plan import Plan
from .timeutil import format_duration


def render_plan(plan: Plan, only_view: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=220)
    pr = plan.project
    if only_view is None:
        console.print(f"[bold]project[/] {pr.name}  root={pr.root}")
        # secrets show as their references (the plan holds nothing else)
        password = f", password ${{{pr.redis_password_env}}}" if pr.redis_password_env else ""
        console.print(f"  online store  {pr.redis_url} (prefix {pr.redis_key_prefix!r}{password})", markup=False)
        sasl = f", sasl {pr.kafka_sasl_mechanism} user {pr.kafka_sasl_username}" if pr.kafka_sasl_mechanism else ""
        sasl += f", sasl_password ${{{pr.kafka_sasl_password_env}}}" if pr.kafka_sasl_password_env else ""
        console.print(
            f"  kafka         {pr.kafka_bootstrap} ({pr.kafka_security_protocol}, group {pr.kafka_consumer_group}{sasl})", markup=False
        )
        if pr.kafka_client:
            console.print(f"  kafka client  {', '.join(f'{k}={v}' for k, v in pr.kafka_client.items())}", markup=False)
        console.print(f"  offline store {pr.offline_path}")
        for c in plan.contracts.values():
            console.print(
                f"[bold]contract[/] {c.id} v{c.version}  compatibility={c.compatibility} event_time={c.event_time_field} "
                f"keys={','.join(c.key_fields) or '-'} topic={c.topic or '-'} unknown_fields={c.unknown_fields} "
                f"max_future_skew={format_duration(c.max_future_skew_us)}  ({c.file})"
            )
        for s in plan.sources.values():
            sides = []
            if s.batch:
                sides.append(f"batch {s.batch.format}: {s.batch.path or s.batch.database + ':' + s.batch.table}")
            if s.stream:
                sides.append(f"stream {s.stream.format}: topic {s.stream.topic}")
            console.print(f"[bold]source[/] {s.name}  contract={s.contract} event_time={s.event_time}  " + "; ".join(sides))
    for v in plan.views.values():
        if only_view and v.name != only_view:
            continue
        title = f"view {v.name}  ({v.kind}, entity {v.entity} by {', '.join(v.join_keys)}, source {v.source}"
        title += f", where {v.where})" if v.where else ")"
        t = Table(title=title, title_justify="left", show_lines=False)
        for col in ("feature", "function", "input", "type", "window", "hop", "ttl", "value as of t"):
            t.add_column(col, no_wrap=True)
        for f in v.features:
            t.add_row(
                f.name,
                (f.function or "latest") + (f" ({'k' if isinstance(f.param, int) else 'q'}={f.param:g})" if f.param is not None else ""),
                f.describe_input(),
                f.dtype,
                format_duration(f.window_us) if f.window_us else "",
                format_duration(f.hop_us) if f.hop_us else "",
                format_duration(f.ttl_us) if f.ttl_us else "",
                f.as_of_rule(),
            )
        console.print(t)
    if only_view is None:
        for s in plan.services.values():
            console.print(f"[bold]service[/] {s.name}  keys={', '.join(s.join_keys)}  {len(s.features)} features: {', '.join(s.features)}")
