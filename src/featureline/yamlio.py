"""Load YAML into plain Python values while keeping every node's position.

Rules (what a user of a mature tool expects, unlike PyYAML's YAML 1.1):
- YAML 1.2 core schema: only `true`/`false` are booleans (`off`, `no`, `yes`
  stay strings), only `null`/`~`/empty are null.
- Dates and timestamps are never converted: `2024-01-01` stays the string the
  user wrote; specs parse times explicitly where they expect them.
- Duplicate keys are errors, not silently last-wins.
- Explicit tags other than the core schema's (`!!str`, `!!int`, ...) are errors,
  on any node; so are merge keys (`<<`) and a second document in a file.
- Bounded (the limits below): a hostile file fails fast with an error, it
  never exhausts time, memory or the stack.
- Errors are `Problem`s with file:line:col.

ruamel.yaml's scanner and parser (iterative) produce events; `build` turns them
into values itself (yamlbuild.py) instead of using ruamel's composer, which
recurses per level and turns aliases into shared, possibly cyclic, node graphs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Location, Problem, SpecError

Path_ = tuple  # a path into the document: keys and list indices

MAX_BYTES = 1 << 20  # size of one YAML file (1 MiB)
MAX_DEPTH = 64  # mappings and sequences nested in each other, aliases expanded
MAX_ALIASES = 1_000  # alias references (`*name`) in one file
MAX_NODES = 100_000  # values in one file, each alias counted as the size of what it expands to
MAX_KEY_CHARS = 1_024  # a mapping key (YAML's own limit for implicit keys)
MAX_NUMBER_DIGITS = 64  # digits of an integer or float literal
MAX_ERRORS = 100  # errors found in one file before reading it stops


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


def load_file(path: str | Path, name: str | None = None) -> Document:
    """Read and load one YAML file; `name` (default: the path) is the file errors name."""
    name = name or str(path)
    return load_text(read_text(path, name), name)


def read_text(path: str | Path, name: str | None = None) -> str:
    """A YAML file's text: at most MAX_BYTES, UTF-8 (a BOM is allowed), else a SpecError."""
    name = name or str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as e:
        raise SpecError([Problem("unreadable-file", f"cannot read {name}: {e.strerror}", Location(name, 1, 1))]) from None
    return decode(data, name)


def decode(data: bytes, file: str) -> str:
    """UTF-8 bytes of a YAML file -> text; too large or not UTF-8 -> a SpecError naming the file."""
    _check_size(len(data), file)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise SpecError(
            [
                Problem(
                    "yaml-encoding",
                    "the file is UTF-16 or UTF-32 (it starts with a byte-order mark): save it as UTF-8",
                    Location(file, 1, 1),
                )
            ]
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = len(data[data.rfind(b"\n", 0, e.start) + 1 : e.start].decode("utf-8", "replace")) + 1
        msg = f"not UTF-8: byte 0x{data[e.start]:02x} ({e.reason}); save the file as UTF-8"
        raise SpecError([Problem("yaml-encoding", msg, Location(file, line, col))]) from None


def _check_size(n: int, file: str) -> None:
    if n > MAX_BYTES:
        raise SpecError(
            [
                Problem(
                    "yaml-too-large", f"the file is larger than {MAX_BYTES // 1024:,} KiB, the limit for a YAML file", Location(file, 1, 1)
                )
            ]
        )


def load_text(text: str, file: str = "<string>") -> Document:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    from ruamel.yaml.reader import ReaderError

    from .yamlbuild import BoundedScanner, Builder, Stop, TooDeep

    if len(text) > MAX_BYTES // 4:  # four UTF-8 bytes at most per character
        _check_size(len(text.encode("utf-8", "surrogatepass")), file)
    problems: list[Problem] = []
    builder = Builder(file, problems)
    yaml = YAML(typ="safe", pure=True)
    yaml.Scanner = BoundedScanner
    events = yaml.parse(text)
    try:
        data = builder.build(events)
    except Stop as e:
        raise SpecError([*problems, e.problem]) from None
    except TooDeep as e:
        loc = Location(file, e.problem_mark.line + 1, e.problem_mark.column + 1)
        raise SpecError([*problems, Problem("yaml-too-deep", f"nested more than {MAX_DEPTH} levels deep", loc)]) from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        msg = " ".join(x for x in (e.context, e.problem) if x) or str(e)
        raise SpecError([*problems, Problem("yaml-syntax", f"invalid YAML: {msg}", loc)]) from None
    except ReaderError as e:  # control characters, lone surrogates
        line, col = _line_col(text, e.position) if isinstance(e.position, int) else (1, 1)
        msg = (
            f"invalid YAML: character U+{e.character:04X} is not allowed ({e.reason})"
            if isinstance(e.character, int)
            else f"invalid YAML: {e}"
        )
        raise SpecError([*problems, Problem("yaml-syntax", msg, Location(file, line, col))]) from None
    except (YAMLError, RecursionError) as e:  # a safety net: the limits should stop anything before this
        raise SpecError(
            [*problems, Problem("yaml-syntax", f"invalid YAML: {type(e).__name__}: {str(e)[:200]}", Location(file, 1, 1))]
        ) from None
    finally:
        events.close()
    if problems:
        raise SpecError(problems)
    doc = Document(file, data)
    doc.values, doc.keys = builder.positions()
    return doc


def _line_col(text: str, pos: int) -> tuple[int, int]:
    pos = min(pos, len(text))
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
