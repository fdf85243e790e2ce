"""Problems found in a user's files, with their position, rendered with a snippet and a caret.

Every error a user can cause by editing YAML is a `Problem` that knows its
`Location` (file, line, column, 1-based). Problems are collected, never raised
one at a time, so a run reports all of a file's errors at once.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field


class FeaturelineError(Exception):
    """The base of every error featureline raises for a user to act on. The CLI prints its
    message (secrets redacted) and exits with `exit_code`: 1 when something failed or problems
    were found, 2 for a usage or configuration error (`cli.handle_errors`)."""

    exit_code = 1


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    col: int  # 1-based
    end_col: int | None = None  # exclusive, same line; None: a single caret

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    code: str  # short kebab-case kind, e.g. "unknown-column"
    message: str
    location: Location | None = None
    hint: str | None = None
    secret: bool = False  # the value at `location` is a secret: the snippet shows `***` in its place

    def render(self, *, snippet: bool = True, files: dict | None = None) -> str:
        """`files`: a cache of the lines of files read for snippets, shared by several renders."""
        where = f"{self.location}: " if self.location else ""
        out = [f"{where}error[{self.code}]: {self.message}"]
        if snippet and self.location is not None:
            out.extend(_snippet(self.location, {} if files is None else files, self.secret))
        if self.hint:
            out.append(f"   = help: {self.hint}")
        return "\n".join(out)


_SNIPPET_MAX_BYTES = 4 << 20  # larger files (refused by the loader anyway) get no snippet
_SNIPPET_WIDTH = 120  # longer lines are cut around the column


def _lines(file: str) -> list[str]:
    try:
        with open(file, "rb") as fh:
            data = fh.read(_SNIPPET_MAX_BYTES + 1)
    except OSError:
        return []
    return [] if len(data) > _SNIPPET_MAX_BYTES else data.decode("utf-8-sig", "replace").splitlines()


def _snippet(loc: Location, files: dict, secret: bool = False) -> list[str]:
    if loc.file not in files:
        files[loc.file] = _lines(loc.file)
    lines = files[loc.file]
    if not 1 <= loc.line <= len(lines):
        return []
    from .secrets import mask_line

    text = mask_line(lines[loc.line - 1])  # never show a secret written in the file
    if secret:
        text = text[: loc.col - 1] + "***"
    col = loc.col
    width = max(1, (loc.end_col or col + 1) - col)
    if len(text) > _SNIPPET_WIDTH:  # a window of the line around the column
        start = max(0, min(col - 1 - _SNIPPET_WIDTH // 4, len(text) - _SNIPPET_WIDTH))
        text = ("…" if start else "") + text[start : start + _SNIPPET_WIDTH] + ("…" if start + _SNIPPET_WIDTH < len(text) else "")
        col = col - start + (1 if start else 0)
    width = min(width, max(1, len(text) - col + 1))
    num = str(loc.line)
    pad = " " * len(num)
    return [
        f"{pad} |",
        f"{num} | {text}",
        f"{pad} | {' ' * (col - 1)}{'^' * width}",
    ]


class SpecError(FeaturelineError):
    """One or more problems in the user's project files."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(self.render(snippet=False))

    def render(self, *, snippet: bool = True) -> str:
        files: dict = {}
        body = "\n\n".join(p.render(snippet=snippet, files=files) for p in self.problems)
        n = len(self.problems)
        return f"{body}\n\n{n} error{'s' if n != 1 else ''} found"


@dataclass
class Problems:
    """Accumulator used while loading and compiling."""

    items: list[Problem] = field(default_factory=list)

    def add(self, code: str, message: str, location: Location | None = None, hint: str | None = None, *, secret: bool = False) -> None:
        self.items.append(Problem(code, message, location, hint, secret))

    def extend(self, other: list[Problem]) -> None:
        self.items.extend(other)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError(sorted(self.items, key=_order))


def _order(p: Problem) -> tuple:
    loc = p.location
    return (loc.file, loc.line, loc.col) if loc else ("", 0, 0)


def did_you_mean(name: str, candidates) -> str | None:
    """A suggestion for a misspelt name, or None."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None
