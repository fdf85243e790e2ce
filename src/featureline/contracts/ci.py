"""`featureline contracts check`: what a producer's CI runs before a merge.

Three checks, all reported at once:
- lint: every contract parses as ODCS and passes featureline's rules (file:line:col);
- data (`--data`): sample files (jsonl, csv, parquet) validated against their contract,
  each violation naming file:line, field, rule and value;
- compatibility (`--against REF`): each contract compared with its version at a git
  ref (or, for *_transitive modes, with every committed version in git history) under
  its compatibility mode, and its version bump checked.
The result is a `Report`; `report.py` renders it as text, json, junit or GitHub annotations.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Problem


class UsageError(Exception):
    """A problem with how the command was called (exit code 2), not with the contracts."""


@dataclass(frozen=True)
class Finding:
    kind: str  # lint | data | compat | version
    file: str
    line: int | None
    col: int | None
    rule: str
    message: str
    contract: str | None = None
    field: str | None = None
    value: Any = None
    mode: str | None = None
    severity: str = "error"  # error | notice

    def where(self) -> str:
        return self.file + (f":{self.line}" if self.line else "") + (f":{self.col}" if self.col and self.line else "")

    def as_dict(self) -> dict:
        from .result import _jsonable

        return {
            "kind": self.kind,
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "contract": self.contract,
            "field": self.field,
            "rule": self.rule,
            "mode": self.mode,
            "value": _jsonable(self.value),
            "message": self.message,
        }


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    contracts: list[str] = field(default_factory=list)  # ids checked
    files: list[str] = field(default_factory=list)  # contract files
    data_files: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # file -> (contract, records, invalid)
    compared: dict[str, str] = field(default_factory=dict)  # contract file -> what it was compared with

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0


def discover(paths: list[str] | None, start: Path) -> list[Path]:
    """Contract files: the given files/directories, else the project's contracts, else ./contracts."""
    if paths:
        out: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                out.extend(sorted(p.rglob("*.yaml")) + sorted(p.rglob("*.yml")))
            elif p.is_file():
                out.append(p)
            else:
                raise UsageError(f"no such file or directory: {p}")
        return out
    from ..errors import SpecError
    from ..repo import PROJECT_FILE, find_root
    from ..yamlio import load_file

    globs = ["contracts/*.yaml", "contracts/**/*.yaml"]
    try:
        root = find_root(start)
        doc = load_file(root / PROJECT_FILE)
        if isinstance(doc.data, dict) and isinstance(doc.data.get("contracts"), list):
            globs = [str(g) for g in doc.data["contracts"]]
    except SpecError:
        root = start
    seen: dict[Path, None] = {}
    for g in globs:
        for p in sorted(root.glob(g)):
            if p.is_file():
                seen.setdefault(p, None)
    if not seen:
        raise UsageError(f"no contracts found under {root / 'contracts'} (pass contract files or directories)")
    return list(seen)


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def run_check(
    paths: list[str] | None = None,
    *,
    data: list[str] | None = None,
    contract: str | None = None,
    against: str | None = None,
    now: int | None = None,
    start: Path | None = None,
) -> Report:
    from ..compiler import compile_contract_texts

    start = start or Path.cwd()
    files = discover(paths, start)
    report = Report(files=[_rel(f) for f in files])
    plans, problems = compile_contract_texts({_rel(f): f for f in files})
    report.findings.extend(_lint_finding(p) for p in problems)
    report.contracts = sorted(plans)
    if contract is not None and contract not in plans:
        from ..errors import did_you_mean

        hint = did_you_mean(contract, plans)
        raise UsageError(
            f"--contract {contract}: no such contract" + (f" ({hint})" if hint else f"; known: {', '.join(sorted(plans)) or 'none'}")
        )
    for path in expand_data(data or ()):
        _check_data(path, plans, contract, now, report)
    if against is not None:
        _check_against(against, plans, report)
    return report


def expand_data(patterns) -> list[Path]:
    """--data values, each a file or a glob (quoted in CI so every platform expands it alike)."""
    import glob

    out: list[Path] = []
    for pat in patterns:
        if any(ch in pat for ch in "*?["):
            hits = sorted(glob.glob(pat, recursive=True))
            if not hits:
                raise UsageError(f"--data {pat}: no file matches")
            out.extend(Path(h) for h in hits)
        else:
            out.append(Path(pat))
    return out


def _lint_finding(p: Problem) -> Finding:
    loc = p.location
    msg = p.message + (f" ({p.hint})" if p.hint else "")
    return Finding("lint", loc.file if loc else "", loc.line if loc else None, loc.col if loc else None, p.code, msg)


# -- sample data ----------------------------------------------------------------------


def match_contract(path: Path, plans: dict, flag: str | None):
    """--contract, else a contract whose `servers` (type local) path matches, else the file's name."""
    if flag is not None:
        return plans[flag]
    rel = _rel(path)
    for c in plans.values():
        if any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(str(path), g) for g in c.samples):
            return c
    for name in (path.stem, path.stem.split(".")[0], path.parent.name):
        if name in plans:
            return plans[name]
    raise UsageError(
        f"cannot tell which contract {rel} follows: pass --contract ID, name the file after the contract, "
        "or list it in the contract's `servers` (type: local, path: <glob>)"
    )


def _check_data(path: Path, plans: dict, flag: str | None, now: int | None, report: Report) -> None:
    from .validator import ContractValidator

    if not path.is_file():
        raise UsageError(f"--data {path}: no such file")
    c = match_contract(path, plans, flag)
    v = ContractValidator(c)
    rel = _rel(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        lines = path.read_bytes().split(b"\n")
        numbered = [(i + 1, ln.rstrip(b"\r")) for i, ln in enumerate(lines) if ln.strip()]
        res = v.validate_json([b for _, b in numbered], now=now)
        where = [n for n, _ in numbered]
    elif suffix == ".csv":
        import pyarrow as pa
        import pyarrow.csv as pcsv

        with open(path, "rb") as fh:
            header = fh.readline().decode("utf-8", "replace").strip().split(",")
        opts = pcsv.ConvertOptions(column_types={h: pa.string() for h in header}, strings_can_be_null=True)
        try:
            table = pcsv.read_csv(path, convert_options=opts)
        except pa.ArrowInvalid as e:
            report.findings.append(Finding("data", rel, None, None, "csv", f"unreadable CSV: {e}", c.id))
            return
        res = v.validate_table(table, now=now)
        where = [i + 2 for i in range(table.num_rows)]  # line 1 is the header
    elif suffix in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            report.findings.append(Finding("data", rel, None, None, "parquet", f"unreadable Parquet: {e}", c.id))
            return
        res = v.validate_table(table, now=now)
        where = [i + 1 for i in range(table.num_rows)]  # row numbers
    else:
        raise UsageError(f"--data {rel}: unknown format {suffix!r} (use .jsonl, .csv or .parquet)")
    report.data_files[rel] = (c.id, res.n_input, res.n_invalid)
    rows = suffix in (".parquet", ".pq")  # parquet has rows, not lines: say which row
    for row in res.invalid:
        n = where[row.index]
        for r in row.reasons:
            what = (f"row {n}: " if rows else "") + (f"`{r.field}`: " if r.field else "")
            report.findings.append(Finding("data", rel, n, None, r.rule, f"{what}{r.message}", c.id, r.field, r.value))


# -- compatibility ----------------------------------------------------------------------


def _check_against(ref: str, plans: dict, report: Report) -> None:
    from ..compiler import compile_contract_texts
    from . import compat

    for c in plans.values():
        transitive = c.compatibility.endswith("_transitive")
        try:
            versions = compat.git_history(c.file) if transitive else compat.git_history(c.file, ref)
        except compat.GitError as e:
            raise UsageError(str(e)) from None
        if transitive:
            report.compared[c.file] = f"{len(versions)} committed versions"
        else:
            report.compared[c.file] = ref if versions else f"{ref} (new file there)"
        for commit, text in versions:
            label = f"{c.file}@{commit[:12]}"
            old_plans, _ = compile_contract_texts({label: text})
            old = old_plans.get(c.id) or (next(iter(old_plans.values())) if len(old_plans) == 1 else None)
            if old is None:
                continue  # that version did not compile: nothing to compare with
            changes = compat.diff(old, c)
            broken = compat.breaking(changes, c.compatibility)
            verdict = compat.version_verdict(old, c, broken, compat.schema_changed(old, c))
            against_what = commit if not transitive else f"version {old.version} ({commit[:12]})"
            allowed = verdict.ok and verdict.major_bump
            for ch in broken:
                loc = ch.location
                msg = f"{ch.message}: breaks {c.compatibility} compatibility against {against_what}"
                report.findings.append(
                    Finding(
                        "compat",
                        c.file,
                        loc.line if loc else None,
                        loc.col if loc else None,
                        ch.rule,
                        f"{msg}; allowed: {verdict.message}" if allowed else msg,
                        c.id,
                        ch.field,
                        None,
                        c.compatibility,
                        severity="notice" if allowed else "error",
                    )
                )
            if not verdict.ok:
                loc = c.location
                report.findings.append(
                    Finding("version", c.file, loc.line if loc else None, None, "version", verdict.message, c.id, mode=c.compatibility)
                )
