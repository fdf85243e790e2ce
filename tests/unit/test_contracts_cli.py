"""`featureline contracts check` as a producer's CI meets it: exit codes, formats, git history."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def fl(*args, cwd: Path) -> subprocess.CompletedProcess:
    # the featureline of this tree, whichever one the interpreter has installed
    env = {**os.environ, **GIT_ENV, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "featureline", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def git(*args, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


@pytest.fixture
def producer_repo(tmp_path: Path) -> Path:
    """A producer's repository: contracts and samples only (no featureline.yaml), in git."""
    d = tmp_path / "producer"
    (d / "contracts").mkdir(parents=True)
    shutil.copy(REPO / "contracts/transactions.yaml", d / "contracts")
    (d / "samples").mkdir()
    shutil.copy(REPO / "samples/transactions.jsonl", d / "samples")
    git("init", "-q", "-b", "main", cwd=d)
    git("add", "-A", cwd=d)
    git("commit", "-q", "-m", "contracts v1", cwd=d)
    return d


def test_clean_repo_passes(producer_repo):
    r = fl("contracts", "check", "--data", "samples/*.jsonl", "--against", "main", cwd=producer_repo)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("ok: checked 1 contract file(s), 1 data file(s), 20 records, 0 invalid")


def test_bad_sample_names_file_line_field_rule_value(producer_repo):
    shutil.copy(REPO / "samples/transactions_bad.jsonl", producer_repo / "samples")
    r = fl("contracts", "check", "--data", "samples/transactions_bad.jsonl", cwd=producer_repo)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert "samples/transactions_bad.jsonl:11: error[data/minimum] `amount`: -12.5 is below the minimum 0  (contract transactions; field amount; value -12.5)" in lines
    assert any(x.startswith("samples/transactions_bad.jsonl:7: error[data/json] malformed JSON") for x in lines)
    assert any(x.startswith("samples/transactions_bad.jsonl:12: error[data/enum] `currency`: 'XXX' is not one of") for x in lines)


def test_csv_and_parquet_samples(producer_repo):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv = producer_repo / "samples/transactions.csv"
    csv.write_text(
        "txn_id,user_id,merchant_id,amount,currency,status,event_time\n"
        "123e4567-e89b-12d3-a456-426614174000,1,2,10.5,EUR,approved,2026-11-01T12:00:00Z\n"
        "123e4567-e89b-12d3-a456-426614174001,x,2,10.5,EUR,approved,2026-11-01T12:00:00Z\n"
        "123e4567-e89b-12d3-a456-426614174002,1,2,10.5,EUR,pending,2026-11-01T12:00:00Z\n"
    )
    r = fl("contracts", "check", "--data", str(csv), "--format", "json", cwd=producer_repo)
    assert r.returncode == 1
    found = [(f["line"], f["field"], f["rule"]) for f in json.loads(r.stdout)["findings"]]
    assert found == [(3, "user_id", "type"), (4, "status", "enum")]
    pq.write_table(pa.table({"txn_id": ["123e4567-e89b-12d3-a456-426614174000"], "user_id": [0], "merchant_id": [2], "amount": [1.0],
                             "currency": ["EUR"], "status": ["approved"], "event_time": pa.array([1_700_000_000_000_000], pa.timestamp("us"))}),
                   producer_repo / "samples/transactions.parquet")  # fmt: skip
    r = fl("contracts", "check", "--data", "samples/transactions.parquet", "--format", "json", cwd=producer_repo)
    data = json.loads(r.stdout)
    assert r.returncode == 1 and [(f["line"], f["field"], f["rule"]) for f in data["findings"]] == [(1, "user_id", "minimum")]
    assert data["findings"][0]["message"].startswith("row 1: `user_id`")


def test_lint_reports_all_problems_with_positions(producer_repo):
    p = producer_repo / "contracts/transactions.yaml"
    text = p.read_text().replace("maximum: 50000", "maxLength: 50000").replace("value: backward", "value: backwards")
    p.write_text(text)
    r = fl("contracts", "check", "--format", "json", cwd=producer_repo)
    assert r.returncode == 1
    found = [(f["file"], f["line"], f["rule"]) for f in json.loads(r.stdout)["findings"]]
    assert found == [("contracts/transactions.yaml", 54, "unknown-option"), ("contracts/transactions.yaml", 103, "invalid-value")]


def test_formats_junit_and_github(producer_repo):
    shutil.copy(REPO / "samples/transactions_bad.jsonl", producer_repo / "samples")
    r = fl("contracts", "check", "--data", "samples/*.jsonl", "--format", "junit", "--output", "out.xml", cwd=producer_repo)
    assert r.returncode == 1 and r.stdout.startswith("FAILED")
    root = ET.parse(producer_repo / "out.xml").getroot()
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites["contracts.data"].get("tests") == "2" and suites["contracts.data"].get("failures") == "1"
    failure = root.find(".//testcase[@name='samples/transactions_bad.jsonl']/failure")
    assert failure is not None and "samples/transactions_bad.jsonl:11: [minimum]" in failure.text
    assert root.find(".//testcase[@name='samples/transactions.jsonl']/failure") is None
    r = fl("contracts", "check", "--data", "samples/transactions_bad.jsonl", "--format", "github", cwd=producer_repo)
    assert "::error file=samples/transactions_bad.jsonl,line=11,title=featureline data%3A minimum (amount)::`amount`: -12.5 is below the minimum 0" in r.stdout


def test_usage_errors_exit_2(producer_repo):
    assert fl("contracts", "check", "--format", "xml", cwd=producer_repo).returncode == 2
    assert fl("contracts", "check", "--data", "nope.jsonl", cwd=producer_repo).returncode == 2
    r = fl("contracts", "check", "--data", "samples/transactions.jsonl", "--contract", "transaction", cwd=producer_repo)
    assert r.returncode == 2 and "did you mean `transactions`" in r.stderr
    (producer_repo / "samples/other.jsonl").write_text("{}\n")
    r = fl("contracts", "check", "--data", "samples/other.jsonl", cwd=producer_repo)
    assert r.returncode == 2 and "cannot tell which contract" in r.stderr
    r = fl("contracts", "check", "--against", "no-such-ref", cwd=producer_repo)
    assert r.returncode == 2 and "no-such-ref" in r.stderr


def _edit(repo: Path, old: str, new: str) -> None:
    p = repo / "contracts/transactions.yaml"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))


def test_breaking_change_against_git_ref(producer_repo):
    _edit(producer_repo, "          maximum: 50000", "          maximum: 10000")  # tighter: breaks backward
    r = fl("contracts", "check", "--against", "main", "--format", "json", cwd=producer_repo)
    assert r.returncode == 1
    data = json.loads(r.stdout)
    kinds = {(f["kind"], f["field"], f["mode"]) for f in data["findings"]}
    assert ("compat", "amount", "backward") in kinds
    assert any(f["kind"] == "version" for f in data["findings"])  # same version, changed schema
    compat = next(f for f in data["findings"] if f["kind"] == "compat")
    assert compat["file"] == "contracts/transactions.yaml" and compat["line"] == 47  # the `- name: amount` line
    # a major bump allows it: reported, exit 0
    _edit(producer_repo, "version: 1.0.0", "version: 2.0.0")
    r = fl("contracts", "check", "--against", "main", "--format", "json", cwd=producer_repo)
    assert r.returncode == 0, r.stdout
    notes = json.loads(r.stdout)["findings"]
    assert notes and all(f["severity"] == "notice" for f in notes) and "major" in notes[0]["message"]


def test_compatible_change_with_minor_bump_passes(producer_repo):
    _edit(producer_repo, "version: 1.0.0", "version: 1.1.0")
    _edit(producer_repo, "      - name: event_time\n", "      - name: device_id\n        logicalType: string\n      - name: event_time\n")
    r = fl("contracts", "check", "--against", "main", cwd=producer_repo)
    assert r.returncode == 0, r.stdout + r.stderr


def test_transitive_mode_reads_all_history(producer_repo):
    _edit(producer_repo, "value: backward", "value: backward_transitive")
    _edit(producer_repo, "version: 1.0.0", "version: 1.1.0")
    git("commit", "-qam", "v1.1 transitive", cwd=producer_repo)
    # v1.2 drops the EUR currency: removing an enum value breaks backward against every earlier version
    _edit(producer_repo, "version: 1.1.0", "version: 1.2.0")
    _edit(producer_repo, "validValues: [EUR, USD, GBP, CHF, JPY]", "validValues: [USD, GBP, CHF, JPY]")
    r = fl("contracts", "check", "--against", "main", "--format", "json", cwd=producer_repo)
    assert r.returncode == 1
    data = json.loads(r.stdout)
    compat = [f for f in data["findings"] if f["kind"] == "compat"]
    assert {f["field"] for f in compat} == {"currency"} and len(compat) == 2  # against v1.0.0 and v1.1.0
    assert data["compared"] == {"contracts/transactions.yaml": "2 committed versions"}


def test_documented_workflow_fails_on_bad_sample_and_breaking_change(producer_repo):
    """Run the `run:` steps of docs/examples/contracts-ci.yml (all but the install) in a producer repo."""
    wf = YAML(typ="safe").load((REPO / "docs/examples/contracts-ci.yml").read_text())
    steps = [s["run"] for s in wf["jobs"]["contracts"]["steps"] if "run" in s and "featureline contracts" in s["run"]]
    assert len(steps) == 3
    env = {**os.environ, **GIT_ENV, "GITHUB_BASE_REF": "main", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def run_steps() -> list[subprocess.CompletedProcess]:
        cmds = [s.replace("origin/", "") for s in steps]  # no remote in the scratch repo: compare with the local branch
        return [subprocess.run(["bash", "-c", c], cwd=producer_repo, capture_output=True, text=True, env=env, timeout=120) for c in cmds]

    assert [r.returncode for r in run_steps()] == [0, 0, 0]
    git("checkout", "-q", "-b", "feature", cwd=producer_repo)
    shutil.copy(REPO / "samples/transactions_bad.jsonl", producer_repo / "samples")
    _edit(producer_repo, "validValues: [approved, declined, reversed]", "validValues: [approved, declined]")
    lint, compat, junit = run_steps()
    assert lint.returncode == 1 and "::error file=samples/transactions_bad.jsonl,line=11" in lint.stdout
    assert compat.returncode == 1 and "::error file=contracts/transactions.yaml" in compat.stdout and "(status)" in compat.stdout
    assert junit.returncode == 1 and (producer_repo / "contracts-junit.xml").exists()


def test_export_cli(producer_repo):
    r = fl("contracts", "export", "transactions", "--format", "jsonschema", cwd=producer_repo)
    assert r.returncode == 0 and json.loads(r.stdout)["additionalProperties"] is False
    r = fl("contracts", "export", "transactions", "--format", "avro", cwd=producer_repo)
    assert r.returncode == 0 and json.loads(r.stdout)["type"] == "record"
    r = fl("contracts", "export", "transactions", "--format", "pydantic", cwd=producer_repo)
    assert r.returncode == 0 and "class Transactions" in r.stdout
    assert fl("contracts", "export", "nope", cwd=producer_repo).returncode == 2


def test_poison_records_are_findings_not_tracebacks(producer_repo):
    good = (REPO / "samples/transactions.jsonl").read_bytes().splitlines()[0]
    deep = b'{"txn_id": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    (producer_repo / "samples/transactions_poison.jsonl").write_bytes(b"\n".join([good, deep, b"\xff\xfe{", good]) + b"\n")
    r = fl("contracts", "check", "--data", "samples/transactions_poison.jsonl", "--format", "json", cwd=producer_repo)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    data = json.loads(r.stdout)
    assert [(f["line"], f["rule"]) for f in data["findings"]] == [(2, "json"), (3, "json"), (4, "unique")]
    assert "nesting deeper than 128 levels" in data["findings"][0]["message"]


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "github"])
def test_classified_values_never_show_in_reports(producer_repo, fmt):
    """`customer_email` is `classification: restricted` in the example contract."""
    lines = (REPO / "samples/transactions.jsonl").read_text().splitlines()[:3]
    recs = [json.loads(x) for x in lines]
    recs[0]["customer_email"] = "jane.secret.doe at example.com"  # format
    recs[1]["customer_email"] = "jane.secret.doe@example.com" + "x" * 300  # maxLength
    recs[2]["customer_email"] = 42  # type
    bad = [json.dumps(x) for x in recs] + ['{"customer_email": "jane.secret.doe@example.com", ']  # malformed
    (producer_repo / "samples/transactions_pii.jsonl").write_text("\n".join(bad) + "\n")
    r = fl("contracts", "check", "--data", "samples/transactions_pii.jsonl", "--format", fmt, "--output", "report.out", cwd=producer_repo)
    assert r.returncode == 1, r.stdout + r.stderr
    report = (producer_repo / "report.out").read_text()
    assert "customer_email" in report and "redacted: restricted, " in report
    assert "secret" not in report and "secret" not in r.stdout + r.stderr
    if fmt == "json":
        rules = sorted((f["line"], f["rule"]) for f in json.loads(report)["findings"])
        assert rules == [(1, "format"), (2, "maxLength"), (3, "type"), (4, "json")]


def test_hostile_contract_files_are_lint_errors_not_tracebacks(producer_repo):
    bad = producer_repo / "bad"
    bad.mkdir()
    (bad / "latin1.yaml").write_bytes("apiVersion: v3.0.2\ndescription: caf\xe9\n".encode("latin-1"))
    (bad / "loop.yaml").write_text("apiVersion: v3.0.2\nschema: &s [*s]\n")
    (bad / "tagged.yaml").write_text("apiVersion: !!python/object/apply:os.system [echo hi]\n")
    r = fl("contracts", "check", "bad", "--format", "json", cwd=producer_repo)  # files given on the command line
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    found = [(f["file"], f["line"], f["col"], f["rule"]) for f in json.loads(r.stdout)["findings"]]
    assert found == [("bad/latin1.yaml", 2, 17, "yaml-encoding"), ("bad/loop.yaml", 2, 13, "yaml-alias"), ("bad/tagged.yaml", 1, 13, "yaml-tag")]
    r = fl("contracts", "export", "transactions", "--contracts", "bad", cwd=producer_repo)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "bad/latin1.yaml:2:17: error[yaml-encoding]" in r.stderr


def test_old_version_not_utf8_is_a_usage_error(producer_repo):
    p = producer_repo / "contracts/transactions.yaml"
    good = p.read_bytes()
    p.write_bytes(good.replace(b"description:", b"description: caf\xe9", 1))
    git("commit", "-qam", "latin-1 by mistake", cwd=producer_repo)
    p.write_bytes(good)
    r = fl("contracts", "check", "--against", "HEAD", cwd=producer_repo)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "contracts/transactions.yaml at HEAD is not UTF-8" in r.stderr
