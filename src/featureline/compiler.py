"""Specs -> one immutable Plan, with every cross-check reported at once with file:line:col.

The steps live by concern in `compile/`: the project settings (`project.py`), contracts
(`contracts.py`), entities, sources, views and services (`features.py`)."""

from __future__ import annotations

from pathlib import Path

from .compile.contracts import ContractPart
from .compile.features import FeaturePart, agg_output_type
from .compile.project import ProjectPart
from .errors import Problems
from .plan import ContractPlan, Plan
from .repo import LoadedRepo, Sourced, load_repo
from .specs.contract import ContractSpec
from .timeutil import format_duration


def compile_project(start: str | Path = ".") -> Plan:
    """Load, cross-check and compile the project at or above `start`. Raises SpecError."""
    return Compiler(load_repo(start)).run()


class Compiler(ProjectPart, ContractPart, FeaturePart):
    """The project's specs -> one Plan: `run` calls each part's steps in order, problems collected in `p`."""

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


__all__ = ["compile_project", "Compiler", "agg_output_type", "format_duration"]


def compile_contract_texts(texts: dict[str, str | Path]) -> tuple[dict[str, ContractPlan], list]:
    """Compile contracts given as {file name: YAML text, or the path of a file to read}, outside any project.

    For producers' CI: a repository of contracts without featureline.yaml, and old
    versions read from git. Returns the plans by id and the problems found (file:line).
    """
    from .errors import SpecError
    from .repo import _validate_doc
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
