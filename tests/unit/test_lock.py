"""requirements.lock is what `make test` installs (pip constraints): every dependency of
featureline's pyproject is pinned there, each pin within pyproject's range, and this venv
holds the pinned versions (a fresh clone's venv is built from the lock)."""

from __future__ import annotations

import importlib.metadata as md
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"


def _pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: `{line}` is not name==version"
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    """pyproject.toml's runtime dependencies and its dev extra (what `make test` installs)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in (*project["dependencies"], *project["optional-dependencies"]["dev"])]


def test_every_dependency_is_pinned_within_pyprojects_range():
    pins = _pins()
    missing = [r.name for r in _requirements() if canonicalize_name(r.name) not in pins]
    assert not missing, f"not in requirements.lock (run `make lock`): {missing}"
    outside = [f"{r} (locked {pins[canonicalize_name(r.name)]})" for r in _requirements() if pins[canonicalize_name(r.name)] not in r.specifier]
    assert not outside, f"locked versions outside pyproject.toml's ranges: {outside}"


def test_this_venv_holds_the_locked_versions():
    pins = _pins()
    differ = []
    for dist in md.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins and dist.version != pins[name]:
            differ.append(f"{name} {dist.version} (locked {pins[name]})")
    assert not differ, f"installed versions differ from requirements.lock: {differ}"
