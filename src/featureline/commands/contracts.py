"""`featureline contracts ...`: producers' CI (check) and exports for other stacks."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(help="Data contracts: check them in CI, export them for producers.", no_args_is_help=True)


@app.command()
def check(
    paths: list[str] | None = typer.Argument(None, help="Contract files or directories (default: the project's contracts)."),
    data: list[str] | None = typer.Option(None, "--data", "-d", help="Sample data file (jsonl, csv, parquet); repeatable."),
    contract: str | None = typer.Option(None, "--contract", "-c", help="The contract the --data files follow (default: matched)."),
    against: str | None = typer.Option(None, "--against", help="Git ref to compare each contract with for breaking changes."),
    fmt: str = typer.Option("text", "--format", "-f", help="text, json, junit or github."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report to this file (still prints a summary)."),
) -> None:
    """Lint contracts, validate sample data, and find breaking changes. Exit 0 clean, 1 problems, 2 usage errors."""
    from ..contracts.ci import UsageError, run_check
    from ..contracts.report import FORMATS, render

    if fmt not in FORMATS:
        print(f"error: --format must be one of {', '.join(FORMATS)}", file=sys.stderr)
        raise typer.Exit(2)
    try:
        report = run_check(paths or None, data=data, contract=contract, against=against)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    text = render(report, fmt)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
        from ..contracts.report import _summary

        print(_summary(report))
    else:
        print(text)
    raise typer.Exit(report.exit_code)


@app.command()
def export(
    name: str = typer.Argument(..., help="Contract id."),
    fmt: str = typer.Option("jsonschema", "--format", "-f", help="jsonschema, avro or pydantic."),
    paths: list[str] | None = typer.Option(None, "--contracts", help="Contract files or directories (default: the project's)."),
) -> None:
    """Print a contract as JSON Schema, an Avro schema, or a pydantic model."""

    from ..compiler import compile_contract_texts
    from ..contracts import export as ex
    from ..contracts.ci import UsageError, _rel, discover

    try:
        files = discover(paths or None, Path.cwd())
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    plans, problems = compile_contract_texts({_rel(f): f for f in files})
    if name not in plans:
        for p in problems:
            print(p.render(), file=sys.stderr)
        print(f"error: no contract `{name}` (known: {', '.join(sorted(plans)) or 'none'})", file=sys.stderr)
        raise typer.Exit(2 if not problems else 1)
    c = plans[name]
    try:
        _print_export(c, fmt, ex)
    except ex.ExportError as e:
        print(f"error: cannot export {name} as {fmt}: {e}", file=sys.stderr)
        raise typer.Exit(1) from None


def _print_export(c, fmt: str, ex) -> None:
    import json

    if fmt == "jsonschema":
        print(json.dumps(ex.to_jsonschema(c), indent=2))
    elif fmt == "avro":
        print(json.dumps(ex.to_avro(c), indent=2))
    elif fmt == "pydantic":
        print(ex.to_pydantic(c))
    else:
        print("error: --format must be jsonschema, avro or pydantic", file=sys.stderr)
        raise typer.Exit(2)
