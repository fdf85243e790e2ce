"""The example contracts are valid ODCS: datacontract-cli (a dev dependency) accepts them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from featureline.scaffold import scaffold

REPO = Path(__file__).resolve().parents[2]
DATACONTRACT = shutil.which("datacontract", path=str(Path(sys.executable).parent)) or shutil.which("datacontract")


def _lint(path: Path) -> subprocess.CompletedProcess:
    assert DATACONTRACT, "datacontract-cli is a dev dependency: pip install -e '.[dev]'"
    return subprocess.run([DATACONTRACT, "lint", str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["transactions", "users", "merchants"])
def test_example_contracts_pass_datacontract_lint(name):
    r = _lint(REPO / "contracts" / f"{name}.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "valid" in r.stdout


def test_scaffold_contract_passes_datacontract_lint(tmp_path):
    scaffold(tmp_path / "p")
    r = _lint(tmp_path / "p/contracts/page_views.yaml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_datacontract_lint_rejects_a_broken_contract(tmp_path):
    # the check can fail: a logicalType ODCS does not define is refused
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "contracts/users.yaml").read_text().replace("logicalType: integer", "logicalType: int"))
    assert _lint(bad).returncode != 0
