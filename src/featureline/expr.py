"""The filter/expression language shared by the batch and stream engines.

One small SQL subset, parsed with sqlglot: column references, literals,
comparisons, AND/OR/NOT, IN (literal list), BETWEEN, IS [NOT] NULL, LIKE,
arithmetic (+ - * /), unary minus, COALESCE and parentheses. Each construct has
one canonical SQL form both engines run in DuckDB (the stream over each Arrow
micro-batch), so anything outside the subset is a compile error (docs/semantics.md: an expression either engine cannot run
is rejected before any engine sees it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .plan import NUMERIC
from .yamlio import MAX_NUMBER_DIGITS


class ExprError(ValueError):
    def __init__(self, message: str, needle: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.needle = needle  # text inside the expression to point the caret at
        self.hint = hint


@dataclass(frozen=True)
class CompiledExpr:
    sql: str  # canonical DuckDB SQL
    dtype: str  # logical type of the result
    columns: tuple[str, ...]


MAX_CHARS = 10_000  # characters of one expression
MAX_DEPTH = 100  # levels of its syntax tree: each AND, OR, NOT, operator and parenthesis is one
_TOO_DEEP = f"the expression is nested more than {MAX_DEPTH} levels deep (each AND, OR, NOT, operator and parenthesis is a level; for many alternatives use IN (...))"

_COMPARE = ("EQ", "NEQ", "GT", "GTE", "LT", "LTE")
_ARITH = ("Add", "Sub", "Mul", "Div")


def compile_expr(text: str, columns: dict[str, str]) -> CompiledExpr:
    """Parse and type-check `text` against `columns` (name -> logical type)."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    if len(text) > MAX_CHARS:
        raise ExprError(f"the expression is {len(text):,} characters long (the limit is {MAX_CHARS:,})")
    try:
        tree = sqlglot.parse_one(text, dialect="duckdb")
    except (ParseError, TokenError) as e:  # TokenError: e.g. a quote left open
        raise ExprError(f"cannot parse expression: {_first_line(e)}") from None
    except RecursionError:  # sqlglot's parser recurses deeply per parenthesis and NOT
        raise ExprError("the expression nests parentheses or NOT too deeply to parse (a few dozen levels at most)") from None
    if tree is None:
        raise ExprError("empty expression")
    _check_depth(tree)
    used: list[str] = []

    def typ(node) -> str:
        name = type(node).__name__
        if isinstance(node, exp.Paren):
            return typ(node.this)
        if isinstance(node, exp.Column):
            if node.table:
                raise ExprError(f"qualified column `{node.sql()}`: use the bare column name", node.sql())
            col = node.name
            if col not in columns:
                from .errors import did_you_mean

                raise ExprError(f"unknown column `{col}`", col, did_you_mean(col, columns))
            used.append(col)
            return columns[col]
        if isinstance(node, exp.Boolean):
            return "boolean"
        if isinstance(node, exp.Null):
            return "null"
        if isinstance(node, exp.Literal):
            if node.is_string:
                return "string"
            _check_number(node.this)
            return "integer" if node.this.lstrip("-").isdigit() else "number"
        if isinstance(node, (exp.And, exp.Or)):
            for side in (node.left, node.right):
                _expect(typ(side), ("boolean",), side)
            return "boolean"
        if isinstance(node, exp.Not):
            _expect(typ(node.this), ("boolean",), node.this)
            return "boolean"
        if name in _COMPARE:
            _comparable(typ(node.left), typ(node.right), node)
            return "boolean"
        if name in _ARITH:
            a, b = typ(node.left), typ(node.right)
            _expect(a, NUMERIC, node.left)
            _expect(b, NUMERIC, node.right)
            return "number" if name == "Div" or "number" in (a, b) else "integer"
        if isinstance(node, exp.Neg):
            t = typ(node.this)
            _expect(t, NUMERIC, node.this)
            return t
        if isinstance(node, exp.In):
            if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
                raise ExprError("IN takes a list of literals", node.sql())
            left = typ(node.this)
            for item in node.expressions:
                if not isinstance(item, (exp.Literal, exp.Boolean, exp.Null, exp.Neg)):
                    raise ExprError("IN takes a list of literals", item.sql())
                _comparable(left, typ(item), node)
            return "boolean"
        if isinstance(node, exp.Between):
            left = typ(node.this)
            _comparable(left, typ(node.args["low"]), node)
            _comparable(left, typ(node.args["high"]), node)
            return "boolean"
        if isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null):
                raise ExprError("IS is only supported as IS NULL / IS NOT NULL", node.sql())
            typ(node.this)
            return "boolean"
        if isinstance(node, exp.Like):
            _expect(typ(node.this), ("string",), node.this)
            if not (isinstance(node.expression, exp.Literal) and node.expression.is_string):
                raise ExprError("LIKE needs a string literal pattern", node.sql())
            return "boolean"
        if isinstance(node, exp.Coalesce):
            types = {typ(a) for a in [node.this, *node.expressions]} - {"null"}
            if len(types - set(NUMERIC)) > 1 or (types & set(NUMERIC) and types - set(NUMERIC)):
                raise ExprError("COALESCE arguments must have one type", node.sql())
            return "number" if "number" in types else (types.pop() if types else "null")
        raise ExprError(
            f"`{node.sql(dialect='duckdb')}` is not supported in expressions (supported: comparisons, AND/OR/NOT, "
            "IN (...), BETWEEN, IS [NOT] NULL, LIKE, + - * /, COALESCE)",
            node.sql(),
        )

    try:
        dtype = typ(tree)
        sql = tree.sql(dialect="duckdb")
    except RecursionError:  # not expected within MAX_DEPTH; an error, never a crash
        raise ExprError(_TOO_DEEP) from None
    return CompiledExpr(sql, dtype, tuple(dict.fromkeys(used)))


def _check_depth(tree) -> None:
    """Refuse trees deeper than MAX_DEPTH before anything recurses over them (typ, sql(), DuckDB's parser)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExprError(_TOO_DEEP)
        stack.extend((child, depth + 1) for child in node.iter_expressions())


def _check_number(text: str) -> None:
    """Refuse number literals DuckDB cannot hold (it fails on them at run time, or makes them inf)."""
    if sum(c.isdigit() for c in text) > MAX_NUMBER_DIGITS:
        raise ExprError(f"a number of more than {MAX_NUMBER_DIGITS} digits", text)
    try:
        big = math.isinf(float(text))
    except ValueError:
        return
    if big:
        raise ExprError(f"`{text}` is too large for a number (at most about 1.8e308)", text)


def _expect(t: str, allowed, node) -> None:
    if t != "null" and t not in allowed:
        raise ExprError(f"`{node.sql()}` is {t}, expected {' or '.join(allowed)}", node.sql())


def _comparable(a: str, b: str, node) -> None:
    if "null" in (a, b):
        raise ExprError(f"comparing with NULL is never true in `{node.sql()}`: use IS NULL", node.sql())
    if a == b or (a in NUMERIC and b in NUMERIC):
        return
    if {a, b} <= {"timestamp", "string"} or {a, b} <= {"date", "string"}:
        return  # '2024-01-01' literals against timestamps/dates
    raise ExprError(f"cannot compare {a} with {b} in `{node.sql()}`", node.sql())


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
