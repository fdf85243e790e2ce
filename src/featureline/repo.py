"""Find a project on disk and load its YAML into specs, keeping where everything came from."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import Location, Problem, Problems, SpecError, did_you_mean
from .secrets import is_secret_key
from .yamlio import Document, load_file

PROJECT_FILE = "featureline.yaml"
T = TypeVar("T")


@dataclass(frozen=True)
class Sourced(Generic[T]):
    """A spec with the document and path it was read from."""

    spec: T
    doc: Document
    path: tuple

    def loc(self, *sub, key: bool = False) -> Location:
        return self.doc.loc(self.path + tuple(sub), key=key)


@dataclass
class LoadedRepo:
    root: Path
    project: Sourced
    feature_files: list[Sourced] = field(default_factory=list)
    contracts: list[Sourced] = field(default_factory=list)


def find_root(start: str | Path = ".") -> Path:
    """The nearest directory at or above `start` holding featureline.yaml."""
    p = Path(start).resolve()
    for d in (p, *p.parents):
        if (d / PROJECT_FILE).is_file():
            return d
    raise SpecError(
        [Problem("no-project", f"no {PROJECT_FILE} in {p} or any parent directory", hint="run `featureline init DIR` to create a project")]
    )


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_repo(start: str | Path = ".") -> LoadedRepo:
    from .specs.contract import ContractSpec
    from .specs.features import FeatureFile
    from .specs.project import ProjectSpec

    root = find_root(start)
    problems = Problems()
    project = _load(root / PROJECT_FILE, root, ProjectSpec, problems)
    if project is None:
        problems.raise_if_any()
    repo = LoadedRepo(root, project)
    for f in _glob(root, project.spec.features):
        s = _load(f, root, FeatureFile, problems)
        if s is not None:
            repo.feature_files.append(s)
    for f in _glob(root, project.spec.contracts):
        s = _load(f, root, ContractSpec, problems)
        if s is not None:
            repo.contracts.append(s)
    problems.raise_if_any()
    return repo


def _glob(root: Path, patterns: list[str]) -> list[Path]:
    seen: dict[Path, None] = {}
    for pat in patterns:
        for p in sorted(root.glob(pat)):
            if p.is_file():
                seen.setdefault(p, None)
    return list(seen)


def _load(path: Path, root: Path, model: type[BaseModel], problems: Problems) -> Sourced | None:
    try:
        doc = load_file(_rel(path, root))
    except SpecError as e:
        problems.extend(e.problems)
        return None
    return _validate_doc(doc, model, problems)


def _validate_doc(doc: Document, model: type[BaseModel], problems: Problems) -> Sourced | None:
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        problems.add("invalid-document", f"expected a mapping at the top of {doc.file}", doc.loc(()))
        return None
    try:
        spec = model.model_validate(doc.data)
    except ValidationError as e:
        problems.extend(validation_problems(e, doc, model))
        return None
    return Sourced(spec, doc, ())


def validation_problems(err: ValidationError, doc: Document, model: type[BaseModel]) -> list[Problem]:
    """pydantic errors -> Problems with file:line:col, one per distinct location."""
    out: list[Problem] = []
    seen: set = set()
    for e in err.errors(include_url=False):
        path = doc.data_path(e["loc"])
        kind = e["type"]
        if kind == "extra_forbidden":
            key = e["loc"][-1]
            allowed = _fields_at(model, e["loc"][:-1])
            p = Problem(
                "unknown-key",
                f"unknown key `{key}`",
                doc.loc(path, key=True),
                did_you_mean(key, allowed) or (f"allowed keys: {', '.join(sorted(allowed))}" if allowed else None),
            )
        elif kind == "missing":
            key = e["loc"][-1]
            p = Problem("missing-key", f"missing required key `{key}`", doc.loc(path))
        else:
            msg = e["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            hint = None
            if kind == "literal_error" and isinstance(e.get("input"), str):
                expected = [x.strip().strip("'") for x in e.get("ctx", {}).get("expected", "").replace(" or ", ", ").split(",")]
                hint = did_you_mean(e["input"], expected)
            field_name = next((x for x in reversed(path) if isinstance(x, str)), None)
            secret = field_name is not None and is_secret_key(field_name)  # never show a secret's value
            p = Problem("invalid-value", f"`{field_name}`: {msg}" if field_name else msg, doc.loc(path), hint, secret)
        sig = (p.code, p.location, p.message)
        if sig not in seen:
            seen.add(sig)
            out.append(p)
    # a union of several shapes reports one error per shape at the same spot: keep the first
    by_loc: dict = {}
    for p in out:
        by_loc.setdefault((p.location, p.code), p)
    return list(by_loc.values())


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """Best effort: the keys the model allows at `loc` (for did-you-mean on unknown keys)."""
    t: Any = model
    for part in loc:
        t = _unwrap(t, part)
        if t is None:
            return []
    t = _unwrap(t, None)
    if isinstance(t, type) and issubclass(t, BaseModel):
        return [f.alias or n for n, f in t.model_fields.items()]
    return []


def _unwrap(t: Any, part: Any) -> Any:
    origin = typing.get_origin(t)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(t)[0], part)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(t):
            r = _unwrap(arg, part)
            if r is not None:
                return r
        return None
    if part is None:
        return t
    if origin in (list, tuple):
        return typing.get_args(t)[0] if isinstance(part, int) else None
    if isinstance(t, type) and issubclass(t, BaseModel):
        for n, f in t.model_fields.items():
            if part in (n, f.alias):
                return f.annotation
        # discriminated-union tags appear in locs: pass through
        return t if isinstance(part, str) and t.__name__.lower().startswith(part.lower()) else None
    return None
