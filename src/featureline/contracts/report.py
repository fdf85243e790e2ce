"""Render a contracts-check Report: text (people), json (tools), junit (CI test tabs), github (annotations)."""

from __future__ import annotations

import json
from collections import Counter

from .ci import Finding, Report

FORMATS = ("text", "json", "junit", "github")


def render(report: Report, fmt: str) -> str:
    return {"text": text, "json": as_json, "junit": junit, "github": github}[fmt](report)


def _summary(report: Report) -> str:
    errs = report.errors
    notices = len(report.findings) - len(errs)
    by_kind = Counter(f.kind for f in errs)
    parts = [f"{len(report.files)} contract file(s)"]
    if report.data_files:
        n = sum(r for _, r, _ in report.data_files.values())
        bad = sum(b for _, _, b in report.data_files.values())
        parts.append(f"{len(report.data_files)} data file(s), {n} records, {bad} invalid")
    if report.compared:
        parts.append(f"{len(report.compared)} compared with git")
    verdict = "FAILED" if errs else "ok"
    detail = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items()))
    tail = f": {len(errs)} error(s) ({detail})" if errs else ""
    if notices:
        tail += f"; {notices} notice(s)"
    return f"{verdict}: checked {', '.join(parts)}{tail}"


def text(report: Report) -> str:
    out = []
    for f in report.findings:
        head = f"{f.where()}: {f.severity}[{f.kind}/{f.rule}]"
        extra = []
        if f.contract:
            extra.append(f"contract {f.contract}")
        if f.field:
            extra.append(f"field {f.field}")
        if f.mode:
            extra.append(f"mode {f.mode}")
        if f.value is not None and f.kind == "data":
            extra.append(f"value {f.value!r}")
        out.append(f"{head} {f.message}" + (f"  ({'; '.join(extra)})" if extra else ""))
    for file, (cid, n, bad) in report.data_files.items():
        out.append(f"data {file}: {n} records against contract {cid}, {bad} invalid")
    for file, what in report.compared.items():
        out.append(f"compared {file} with {what}")
    out.append(_summary(report))
    return "\n".join(out)


def as_json(report: Report) -> str:
    return json.dumps(
        {
            "ok": not report.errors,
            "summary": _summary(report),
            "contracts": report.contracts,
            "files": report.files,
            "data": {f: {"contract": c, "records": n, "invalid": b} for f, (c, n, b) in report.data_files.items()},
            "compared": report.compared,
            "findings": [f.as_dict() for f in report.findings],
        },
        indent=2,
    )


def junit(report: Report) -> str:
    """One test case per contract file (lint, compatibility) and per data file."""
    import xml.etree.ElementTree as ET

    suites = ET.Element("testsuites", name="featureline contracts check")
    cases: dict[tuple[str, str], list[Finding]] = {}
    for f in report.files:
        cases[("lint", f)] = []
    for f in report.data_files:
        cases[("data", f)] = []
    for f in report.compared:
        cases[("compatibility", f)] = []
    for f in report.findings:
        kind = {"lint": "lint", "data": "data", "compat": "compatibility", "version": "compatibility"}[f.kind]
        cases.setdefault((kind, f.file), []).append(f)
    for kind in ("lint", "data", "compatibility"):
        mine = {k: v for k, v in cases.items() if k[0] == kind}
        if not mine:
            continue
        failures = sum(1 for v in mine.values() if any(x.severity == "error" for x in v))
        suite = ET.SubElement(suites, "testsuite", name=f"contracts.{kind}", tests=str(len(mine)), failures=str(failures), errors="0")
        for (_, file), found in mine.items():
            case = ET.SubElement(suite, "testcase", classname=f"contracts.{kind}", name=file)
            errs = [x for x in found if x.severity == "error"]
            if errs:
                fail = ET.SubElement(case, "failure", message=f"{len(errs)} problem(s)", type=kind)
                fail.text = "\n".join(f"{x.where()}: [{x.rule}] {x.message}" for x in errs)
            notes = [x for x in found if x.severity != "error"]
            if notes:
                out = ET.SubElement(case, "system-out")
                out.text = "\n".join(f"{x.where()}: [{x.rule}] {x.message}" for x in notes)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")


def _esc_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _esc_prop(s: str) -> str:
    return _esc_data(s).replace(":", "%3A").replace(",", "%2C")


def github(report: Report) -> str:
    """GitHub Actions workflow commands: each finding an annotation on its file and line."""
    out = []
    for f in report.findings:
        level = "error" if f.severity == "error" else "notice"
        props = [f"file={_esc_prop(f.file)}"]
        if f.line:
            props.append(f"line={f.line}")
        if f.col:
            props.append(f"col={f.col}")
        props.append(f"title={_esc_prop(f'featureline {f.kind}: {f.rule}' + (f' ({f.field})' if f.field else ''))}")
        out.append(f"::{level} {','.join(props)}::{_esc_data(f.message)}")
    out.append(_summary(report))
    return "\n".join(out)
