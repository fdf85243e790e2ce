"""Load YAML into plain Python values while keeping every node's position.

Rules (what a user of a mature tool expects, unlike PyYAML's YAML 1.1):
- YAML 1.2 core schema: only `true`/`false` are booleans (`off`, `no`, `yes`
  stay strings), only `null`/`~`/empty are null.
- Dates and timestamps are never converted: `2024-01-01` stays the string the
  user wrote; specs parse times explicitly where they expect them.
- Duplicate keys are errors, not silently last-wins.
- Errors are `Problem`s with file:line:col.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Location, Problem, SpecError

Path_ = tuple  # a path into the document: keys and list indices

_TAG = "tag:yaml.org,2002:"
_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*)$")
_INT_OCT = re.compile(r"0o[0-7]+$")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+$")
_SCALAR_KINDS = {"str", "int", "float", "bool", "null", "timestamp", "binary"}
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


@dataclass
class Document:
    """A loaded YAML document: its data and where each part of it came from."""

    file: str
    data: Any
    values: dict[Path_, Location] = field(default_factory=dict)
    keys: dict[Path_, Location] = field(default_factory=dict)

    def loc(self, path: Path_, *, key: bool = False) -> Location:
        """Location of the node at `path` (or of its key), else of the nearest parent."""
        path = tuple(path)
        while True:
            if key and path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return Location(self.file, 1, 1)
            path = path[:-1]

    def data_path(self, loc: tuple) -> Path_:
        """Keep the parts of a pydantic error `loc` that exist in the data.

        Discriminated unions add a tag (e.g. 'windowed') to the loc that is not a key
        in the document; this drops such parts.
        """
        out: list = []
        node = self.data
        for part in loc:
            if isinstance(node, dict) and part in node:
                node = node[part]
                out.append(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
                out.append(part)
        return tuple(out)


def load_file(path: str | Path) -> Document:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError([Problem("unreadable-file", f"cannot read {p}: {e.strerror}", Location(str(p), 1, 1))]) from e
    return load_text(text, str(p))


def load_text(text: str, file: str = "<string>") -> Document:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    yaml = YAML(typ="safe", pure=True)
    try:
        node = yaml.compose(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        msg = " ".join(x for x in (e.context, e.problem) if x) or str(e)
        raise SpecError([Problem("yaml-syntax", f"invalid YAML: {msg}", loc)]) from None
    doc = Document(file, None)
    if node is None:
        return doc
    problems: list[Problem] = []
    doc.data = _convert(node, (), doc, problems)
    if problems:
        raise SpecError(problems)
    return doc


def _loc(file: str, node) -> Location:
    s, e = node.start_mark, node.end_mark
    end = e.column + 1 if e.line == s.line else None
    return Location(file, s.line + 1, s.column + 1, end)


def _convert(node, path: Path_, doc: Document, problems: list[Problem]) -> Any:
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    doc.values[path] = _loc(doc.file, node)
    if isinstance(node, MappingNode):
        out: dict = {}
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                problems.append(Problem("yaml-key", "mapping keys must be plain scalars", _loc(doc.file, knode)))
                continue
            key = _scalar(knode, doc, problems)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                key = knode.value  # keys are names: keep what the user wrote
            if key in out:
                first = doc.keys.get(path + (key,))
                problems.append(
                    Problem(
                        "duplicate-key",
                        f"duplicate key `{key}`" + (f" (first defined at line {first.line})" if first else ""),
                        _loc(doc.file, knode),
                    )
                )
                continue
            doc.keys[path + (key,)] = _loc(doc.file, knode)
            out[key] = _convert(vnode, path + (key,), doc, problems)
        return out
    if isinstance(node, SequenceNode):
        return [_convert(v, path + (i,), doc, problems) for i, v in enumerate(node.value)]
    return _scalar(node, doc, problems)


def _scalar(node, doc: Document, problems: list[Problem]) -> Any:
    value: str = node.value
    tag: str = node.tag or ""
    if node.style in ("'", '"', "|", ">"):
        return value  # quoted or block scalars are strings, whatever they look like
    if not tag.startswith(_TAG) or tag[len(_TAG) :] not in _SCALAR_KINDS:
        problems.append(Problem("yaml-tag", f"unsupported YAML tag `{tag}`", _loc(doc.file, node)))
        return value
    kind = tag[len(_TAG) :]
    if kind == "null":
        return None
    if kind == "bool":
        low = value.lower()
        if low in ("true", "false"):
            return low == "true"
        return value  # YAML 1.1 booleans (yes/no/on/off) stay strings
    if kind == "int":
        v = value.replace("_", "")
        if _INT.match(v):
            return int(v)
        if _INT_OCT.match(v):
            return int(v[2:], 8)
        if _INT_HEX.match(v):
            return int(v[2:], 16)
        return value
    if kind == "float":
        v = value.lower().replace("_", "")
        if v in (".inf", "+.inf"):
            return math.inf
        if v == "-.inf":
            return -math.inf
        if v == ".nan":
            return math.nan
        if _FLOAT.match(v):
            return float(v)
        return value
    return value  # str, timestamp (kept as written), binary, etc.
