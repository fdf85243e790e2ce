from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def example_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the example repo's YAML, as the working directory."""
    dst = tmp_path / "proj"
    dst.mkdir()
    shutil.copy(REPO / "featureline.yaml", dst)
    shutil.copytree(REPO / "features", dst / "features")
    shutil.copytree(REPO / "contracts", dst / "contracts")
    monkeypatch.chdir(dst)
    return dst
