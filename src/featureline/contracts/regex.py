"""Regular expressions of contracts (`pattern`, `format`) run on RE2 on every path.

RE2 matches in time linear in the input (no backtracking), so a hostile value costs
microseconds per KiB, never seconds; Arrow compute and DuckDB use RE2 too, so all
three engines share one syntax (RE2's: no backreferences or look-around) and one
meaning (`$` is the end of the text, `\\d` and `\\s` are ASCII).
"""

from __future__ import annotations

from collections.abc import Callable

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported with its file:line, not on stderr
_OPTIONS.never_capture = True  # only "is there a match" is asked


def pattern_error(pattern: object) -> str | None:
    """Why RE2 refuses `pattern`, or None when it compiles."""
    if not isinstance(pattern, str):
        return f"a pattern is a string, not {type(pattern).__name__}"
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        msg = e.args[0] if e.args else str(e)
        return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    return None


def searcher(pattern: str) -> Callable[[str], bool]:
    """A function str -> True when `pattern` is found in it (searched, not anchored: ODCS semantics)."""
    compiled = re2.compile(pattern, _OPTIONS)
    regexp, anchor = getattr(compiled, "_regexp", None), getattr(re2, "_Anchor", None)
    if regexp is None or anchor is None:  # google-re2 changed its internals: the public API (5x slower)
        return lambda text: compiled.search(text) is not None
    # the RE2 object under google-re2's re-like wrapper: one C++ call, no match object built
    match, unanchored = regexp.Match, anchor.UNANCHORED

    def found(text: str) -> bool:
        b = text.encode()
        return match(unanchored, b, 0, len(b))[0][0] >= 0

    return found
