"""YAML parser events -> plain values and positions, within the loader's limits.

One pass over the events with an explicit stack (the only recursion is the
deepcopy of an alias's value, at most MAX_DEPTH levels). An alias is expanded
by copying what its anchor built; it counts as that many nodes and that much
depth, checked before copying, so a "billion laughs" stops at MAX_NODES after a
bounded amount of work. An alias inside its own anchor (a recursive
structure) is an error. Limits that make the rest of the file untrustworthy
raise `Stop`; the other problems are collected and reading goes on.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.events import AliasEvent, CollectionEndEvent, DocumentStartEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent
from ruamel.yaml.scanner import Scanner, ScannerError

from .errors import Location, Problem
from .yamlio import MAX_ALIASES, MAX_DEPTH, MAX_ERRORS, MAX_KEY_CHARS, MAX_NODES, MAX_NUMBER_DIGITS

_TAG = "tag:yaml.org,2002:"
_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)$")  # (`_` removed first) a leading 0 keeps `007` a string
_INT_OCT = re.compile(r"0o[0-7]+$")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_CORE = {"str", "int", "float", "bool", "null"}  # scalar tags one may write (`!!int 3`)
_NULL = {"", "~", "null", "Null", "NULL"}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INF = {".inf": math.inf, ".Inf": math.inf, ".INF": math.inf, "+.inf": math.inf, "+.Inf": math.inf, "+.INF": math.inf}
_SPECIAL_FLOATS = {**_INF, **{"-" + k.lstrip("+"): -v for k, v in _INF.items()}, ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan}
_KEY = object()  # a mapping waiting for its next key
_SKIP = object()  # a key whose value is not kept (duplicate or unusable); a scalar not of its tag's kind


class Stop(Exception):
    """A limit was hit: stop reading the file."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


class TooDeep(ScannerError):
    pass


class BoundedScanner(Scanner):
    """ruamel's scanner, stopping past MAX_DEPTH flow levels: its look-ahead for keys is
    quadratic in the depth of `[[[[...` (1.6 s for a line of 5,000 `[` without this)."""

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: str) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise TooDeep(None, None, "nested too deep", self.reader.get_mark())
        super().fetch_flow_collection_start(TokenClass, to_push)


@dataclass
class _Frame:
    kind: str  # "doc", "map" or "seq"
    value: Any
    path: tuple | None  # None: built but not kept (inside a complex key or a duplicate)
    depth: int
    entry: int  # index of this node's position in Builder.entries
    nodes0: int  # Builder.nodes before this node
    anchor: str | None = None
    inner: int = 0  # height of the highest child
    key: Any = _KEY
    as_key: bool = False  # a collection written where a key goes
    first: dict = field(default_factory=dict)  # key -> line it was first defined on


@dataclass
class _Anchor:
    value: Any = None
    path: tuple | None = None
    entries: tuple[int, int] = (0, 0)
    nodes: int = 0
    height: int = 0
    done: bool = False
    line: int = 0


class Builder:
    def __init__(self, file: str, problems: list[Problem]):
        self.file = file
        self.problems = problems
        self.entries: list[list] = []  # [path, Location, is_key], in document order
        self.anchors: dict[str, _Anchor] = {}
        self.nodes = 0
        self.aliases = 0

    def build(self, events) -> Any:
        stack = [_Frame("doc", None, (), 0, -1, 0)]
        docs = 0
        for ev in events:
            if isinstance(ev, ScalarEvent):
                self._scalar_event(stack, ev)
            elif isinstance(ev, (MappingStartEvent, SequenceStartEvent)):
                self._open(stack, ev, "map" if isinstance(ev, MappingStartEvent) else "seq")
            elif isinstance(ev, CollectionEndEvent):
                self._close(stack, ev)
            elif isinstance(ev, AliasEvent):
                self._alias(stack, ev)
            elif isinstance(ev, DocumentStartEvent):
                docs += 1
                if docs > 1:
                    raise Stop(Problem("yaml-documents", "a second YAML document (`---`): a file holds one document", self._loc(ev)))
            if len(self.problems) >= MAX_ERRORS:
                raise Stop(Problem("yaml-too-many-errors", f"{MAX_ERRORS} errors in this file: stopped reading it here", self._loc(ev)))
        return stack[0].value

    def positions(self) -> tuple[dict, dict]:
        values: dict = {}
        keys: dict = {}
        for path, loc, is_key in self.entries:
            if path is not None:
                (keys if is_key else values)[path] = loc
        return values, keys

    # -- where a node goes -------------------------------------------------------------

    def _slot(self, top: _Frame) -> tuple[bool, tuple | None]:
        """(is a key, path of the node) for the next node under `top`."""
        if top.kind == "map":
            if top.key is _KEY:
                return True, None
            return False, None if top.path is None or top.key is _SKIP else top.path + (top.key,)
        if top.kind == "seq":
            return False, None if top.path is None else top.path + (len(top.value),)
        return False, ()

    def _put(self, top: _Frame, value: Any, height: int) -> None:
        top.inner = max(top.inner, height)
        if top.kind == "map":
            if top.key is not _SKIP:
                top.value[top.key] = value
            top.key = _KEY
        elif top.kind == "seq":
            top.value.append(value)
        else:
            top.value = value

    def _count(self, n: int, ev) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise Stop(
                Problem(
                    "yaml-too-many-nodes",
                    f"more than {MAX_NODES:,} values in this file (each alias counts as the size of what it expands to)",
                    self._loc(ev),
                )
            )

    # -- events ------------------------------------------------------------------------

    def _scalar_event(self, stack: list[_Frame], ev) -> None:
        top = stack[-1]
        is_key, path = self._slot(top)
        nodes0 = self.nodes
        self._count(1, ev)
        loc = self._loc(ev)
        at = len(self.entries)
        value = self._scalar(ev, loc, is_key)
        if not is_key:
            self.entries.append([path, loc, False])
        if ev.anchor is not None:
            self.anchors[ev.anchor] = _Anchor(value, path, (at, len(self.entries)), self.nodes - nodes0, 0, True, loc.line)
        if is_key:
            self._set_key(top, value, ev.value, loc)
        else:
            self._put(top, value, 0)

    def _open(self, stack: list[_Frame], ev, kind: str) -> None:
        top = stack[-1]
        is_key, path = self._slot(top)
        depth = top.depth + 1
        if depth > MAX_DEPTH:
            raise Stop(Problem("yaml-too-deep", f"nested more than {MAX_DEPTH} levels deep", self._loc(ev)))
        tag = str(ev.tag) if ev.tag is not None else None
        if tag not in (None, "!", _TAG + kind):
            self.problems.append(
                Problem("yaml-tag", f"unsupported YAML tag `{_show(tag)}` on a {'mapping' if kind == 'map' else 'sequence'}", self._loc(ev))
            )
        if is_key:
            self.problems.append(Problem("yaml-key", "mapping keys must be plain scalars", self._loc(ev)))
            path = None
        nodes0 = self.nodes
        self._count(1, ev)
        at = len(self.entries)
        self.entries.append([path, self._loc(ev), False])
        if ev.anchor is not None:
            self.anchors[ev.anchor] = _Anchor(path=path, line=ev.start_mark.line + 1)
        stack.append(_Frame(kind, {} if kind == "map" else [], path, depth, at, nodes0, ev.anchor, as_key=is_key))

    def _close(self, stack: list[_Frame], ev) -> None:
        f = stack.pop()
        start = self.entries[f.entry][1]
        end = ev.end_mark
        self.entries[f.entry][1] = Location(self.file, start.line, start.col, end.column + 1 if end.line + 1 == start.line else None)
        height = f.inner + 1
        if f.anchor is not None:
            a = self.anchors[f.anchor]
            a.value, a.entries, a.nodes, a.height, a.done = f.value, (f.entry, len(self.entries)), self.nodes - f.nodes0, height, True
        top = stack[-1]
        if f.as_key:
            top.key = _SKIP
        else:
            self._put(top, f.value, height)

    def _alias(self, stack: list[_Frame], ev) -> None:
        top = stack[-1]
        is_key, path = self._slot(top)
        loc = self._loc(ev)
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise Stop(Problem("yaml-too-many-aliases", f"more than {MAX_ALIASES:,} aliases in this file", loc))
        a = self.anchors.get(ev.anchor)
        if a is None or not a.done:
            if a is None:
                self.problems.append(Problem("yaml-alias", f"alias `*{ev.anchor}` has no anchor `&{ev.anchor}` before it", loc))
            else:
                self.problems.append(
                    Problem("yaml-alias", f"alias `*{ev.anchor}` is inside its own anchor (line {a.line}): a recursive structure", loc)
                )
            self._count(1, ev)
            if is_key:
                top.key = _SKIP
            else:
                self._put(top, None, 0)
            return
        if top.depth + a.height > MAX_DEPTH:
            raise Stop(Problem("yaml-too-deep", f"alias `*{ev.anchor}` nests its value more than {MAX_DEPTH} levels deep", loc))
        self._count(a.nodes, ev)
        if is_key:
            if a.height or isinstance(a.value, (bool, float)) or a.value is None:
                self.problems.append(Problem("yaml-key", "mapping keys must be plain scalars", loc))
                top.key = _SKIP
            else:
                self._set_key(top, a.value, str(a.value), loc)
            return
        if path is not None:  # the alias is where it is written, the parts of its value where they are
            self.entries.append([path, loc, False])
            if a.path is not None:
                lo, hi = a.entries
                n = len(a.path)
                self.entries.extend([path + p[n:], where, k] for p, where, k in self.entries[lo:hi] if p is not None and p != a.path)
        self._put(top, copy.deepcopy(a.value), a.height)

    def _set_key(self, top: _Frame, key: Any, raw: str, loc: Location) -> None:
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            key = raw  # keys are names: keep what the user wrote
        if isinstance(key, str) and len(key) > MAX_KEY_CHARS:
            self.problems.append(Problem("yaml-key", f"a key of {len(key):,} characters (the limit is {MAX_KEY_CHARS:,})", loc))
            top.key = _SKIP
            return
        if key in top.first:
            self.problems.append(Problem("duplicate-key", f"duplicate key `{key}` (first defined at line {top.first[key]})", loc))
            top.key = _SKIP
            return
        top.first[key] = loc.line
        top.key = key
        if top.path is not None:
            self.entries.append([top.path + (key,), loc, True])

    # -- scalars -----------------------------------------------------------------------

    def _scalar(self, ev, loc: Location, is_key: bool) -> Any:
        value: str = ev.value
        tag = str(ev.tag) if ev.tag is not None else None
        if tag not in (None, "!"):  # explicit: a core scalar tag applies whatever the style
            kind = tag[len(_TAG) :] if tag.startswith(_TAG) else None
            if kind not in _CORE:
                self.problems.append(Problem("yaml-tag", f"unsupported YAML tag `{_show(tag)}`", loc))
                return value
            if kind == "str":
                return value
            out = self._typed(kind, value, loc)
            if out is _SKIP:
                self.problems.append(Problem("yaml-tag", f"`{value}` is not a valid `!!{kind}`", loc))
                return value
            return out
        if ev.style in ("'", '"', "|", ">") or tag == "!":
            return value  # quoted or block scalars are strings, whatever they look like
        kind = _implicit(value)
        if kind == "merge":
            if is_key:
                self.problems.append(
                    Problem(
                        "yaml-merge", "merge keys (`<<`) are not supported: write the keys out, or quote `'<<'` for a key of that name", loc
                    )
                )
            return value
        return value if kind == "str" else self._typed(kind, value, loc)

    def _typed(self, kind: str, value: str, loc: Location) -> Any:
        """A plain scalar of a core kind -> its value; _SKIP if it is not of that kind."""
        if kind == "null":
            return None if value in _NULL else _SKIP
        if kind == "bool":
            return _BOOL.get(value, _SKIP)
        v = value.replace("_", "")
        if sum(c.isalnum() for c in v) > MAX_NUMBER_DIGITS:
            self.problems.append(
                Problem("yaml-number", f"a number of more than {MAX_NUMBER_DIGITS} digits (quote it if it is a string)", loc)
            )
            return value
        if kind == "int":
            if _INT.match(v):
                return int(v)
            if _INT_OCT.match(v):
                return int(v[2:], 8)
            if _INT_HEX.match(v):
                return int(v[2:], 16)
            return _SKIP
        if v in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[v]
        if not _FLOAT.match(v):
            return _SKIP
        out = float(v)
        if math.isinf(out):
            self.problems.append(
                Problem("yaml-number", f"`{value}` is too large for a number (at most about 1.8e308; write .inf for infinity)", loc)
            )
            return value
        return out

    def _loc(self, ev) -> Location:
        s, e = ev.start_mark, ev.end_mark
        return Location(self.file, s.line + 1, s.column + 1, e.column + 1 if e is not None and e.line == s.line else None)


def _implicit(value: str) -> str:
    """The core-schema kind of a plain scalar (YAML 1.2, plus `_` in numbers); `<<` is "merge"."""
    if value in _NULL:
        return "null"
    if value in _BOOL:
        return "bool"
    if value[0] in "0123456789+-.":
        v = value.replace("_", "")
        if _INT.match(v) or _INT_OCT.match(v) or _INT_HEX.match(v):
            return "int"
        if (_FLOAT.match(v) and not v.lstrip("+-").isdigit()) or v in _SPECIAL_FLOATS:
            return "float"
    return "merge" if value == "<<" else "str"


def _show(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag
