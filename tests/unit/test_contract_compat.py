"""Breaking-change detection between contract versions (Confluent's modes), version verdicts, git history."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest

from featureline.compiler import compile_contract_texts
from featureline.contracts.compat import (
    MODES,
    NON_SCHEMA_RULES,
    Change,
    GitError,
    breaking,
    check_against_history,
    diff,
    git_history,
    schema_changed,
    version_verdict,
)
from featureline.plan import ContractPlan

REPO = Path(__file__).resolve().parents[2]
TRANSACTIONS = (REPO / "contracts" / "transactions.yaml").read_text()

BASE = """\
apiVersion: v3.1.0
kind: DataContract
id: things
name: Things
version: 1.0.0
status: active
schema:
  - name: things
    properties:
      - {name: id, logicalType: string, required: true}
      - {name: n, logicalType: integer, required: true, logicalTypeOptions: {format: i32, minimum: 0, maximum: 100}}
      - {name: big, logicalType: integer, logicalTypeOptions: {minimum: 1}}
      - {name: amount, logicalType: number, logicalTypeOptions: {minimum: 0, maximum: 50000, multipleOf: 0.01}}
      - {name: code, logicalType: string, logicalTypeOptions: {minLength: 2, maxLength: 4, pattern: "^[A-Z]+$"}}
      - {name: email, logicalType: string, logicalTypeOptions: {format: email}}
      - {name: plain, logicalType: string}
      - name: color
        logicalType: string
        quality:
          - {type: library, metric: invalidValues, arguments: {validValues: [red, green]}, mustBe: 0}
      - {name: tier, logicalType: integer, required: true, customProperties: [{property: default, value: 1}]}
      - {name: note, logicalType: string, description: free text}
      - {name: ts, logicalType: timestamp, required: true}
      - {name: seen_at, logicalType: timestamp}
customProperties:
  - {property: eventTimeField, value: ts}
  - {property: keyFields, value: [id]}
"""


def edit(text: str, *edits: tuple[str, str]) -> str:
    for old, new in edits:
        assert old in text, f"edit target not found: {old!r}"
        text = text.replace(old, new, 1)
    return text


@functools.cache
def plan(text: str, name: str = "things.yaml") -> ContractPlan:
    plans, problems = compile_contract_texts({name: text})
    assert not problems, [p.render(snippet=False) for p in problems]
    (only,) = plans.values()
    return only


B, F = "backward", "forward"
BOTH = {B, F}
ADD_PROP = "      - {name: ts, logicalType: timestamp, required: true}\n"


def added(prop: str) -> tuple[str, str]:
    return (ADD_PROP, ADD_PROP + f"      - {prop}\n")


# (case, edits to the OLD text, edits to the NEW text, expected [(field, rule, breaks)])
CASES = [
    ("optional field added", [], [added("{name: extra, logicalType: string}")], [("extra", "field-added", set())]),
    (
        "required field with default added",
        [],
        [added("{name: extra, logicalType: integer, required: true, customProperties: [{property: default, value: 0}]}")],
        [("extra", "field-added", set())],
    ),
    ("required field added", [], [added("{name: extra, logicalType: string, required: true}")], [("extra", "required-field-added", {B})]),
    ("optional field removed", [], [("      - {name: plain, logicalType: string}\n", "")], [("plain", "field-removed", set())]),
    (
        "field with default removed",
        [],
        [("      - {name: tier, logicalType: integer, required: true, customProperties: [{property: default, value: 1}]}\n", "")],
        [("tier", "field-removed", set())],
    ),
    (
        "required field removed",
        [],
        [("      - {name: id, logicalType: string, required: true}\n", ""), ("keyFields, value: [id]", "keyFields, value: []")],
        [(None, "key-fields-changed", BOTH), ("id", "required-field-removed", {F})],
    ),
    ("i32 -> i64", [], [("format: i32", "format: i64")], [("n", "type-widened", {F})]),
    ("i64 -> i32", [("format: i32", "format: i64")], [("format: i64", "format: i32")], [("n", "type-narrowed", {B})]),
    (
        "i8 -> u8 (neither contains the other)",
        [("format: i32", "format: i8")],
        [("format: i8", "format: u8")],
        [("n", "type-changed", BOTH)],
    ),
    ("integer -> number", [], [("name: big, logicalType: integer", "name: big, logicalType: number")], [("big", "type-widened", {F})]),
    (
        "number -> integer",
        [],
        [("name: amount, logicalType: number", "name: amount, logicalType: integer")],
        [("amount", "type-narrowed", {B})],
    ),
    (
        "string -> integer",
        [],
        [("name: plain, logicalType: string", "name: plain, logicalType: integer")],
        [("plain", "type-changed", BOTH)],
    ),
    (
        "integer -> string",
        [],
        [("name: big, logicalType: integer, logicalTypeOptions: {minimum: 1}", "name: big, logicalType: string")],
        [("big", "type-changed", BOTH)],
    ),
    (
        "timestamp -> string",
        [],
        [("name: seen_at, logicalType: timestamp", "name: seen_at, logicalType: string")],
        [("seen_at", "type-changed", BOTH)],
    ),
    ("enum value added", [], [("[red, green]", "[red, green, blue]")], [("color", "enum-value-added", {F})]),
    ("enum value removed", [], [("[red, green]", "[red]")], [("color", "enum-value-removed", {B})]),
    (
        "enum value replaced",
        [],
        [("[red, green]", "[red, blue]")],
        [("color", "enum-value-added", {F}), ("color", "enum-value-removed", {B})],
    ),
    ("enum reordered", [], [("[red, green]", "[green, red]")], []),
    (
        "enum added",
        [],
        [
            (
                "{name: plain, logicalType: string}",
                "{name: plain, logicalType: string, quality: [{type: library, metric: invalidValues, arguments: {validValues: [a, b]}, mustBe: 0}]}",
            )
        ],
        [("plain", "enum-added", {B})],
    ),
    (
        "enum dropped",
        [],
        [("        quality:\n          - {type: library, metric: invalidValues, arguments: {validValues: [red, green]}, mustBe: 0}\n", "")],
        [("color", "enum-removed", {F})],
    ),
    (
        "made nullable",
        [],
        [("{name: id, logicalType: string, required: true}", "{name: id, logicalType: string}")],
        [("id", "made-nullable", {F})],
    ),
    (
        "made required",
        [],
        [("{name: plain, logicalType: string}", "{name: plain, logicalType: string, required: true}")],
        [("plain", "made-required", {B})],
    ),
    ("minimum raised", [], [("minimum: 0, maximum: 50000", "minimum: 10, maximum: 50000")], [("amount", "constraint-tightened", {B})]),
    ("minimum lowered", [], [("minimum: 0, maximum: 50000", "minimum: -10, maximum: 50000")], [("amount", "constraint-loosened", {F})]),
    ("minimum removed", [], [("minimum: 0, maximum: 50000", "maximum: 50000")], [("amount", "constraint-loosened", {F})]),
    (
        "minimum added",
        [],
        [
            (
                "name: seen_at, logicalType: timestamp}",
                "name: seen_at, logicalType: timestamp, logicalTypeOptions: {minimum: '2020-01-01T00:00:00Z'}}",
            )
        ],
        [("seen_at", "constraint-tightened", {B})],
    ),
    (
        "exclusiveMinimum added",
        [],
        [("minimum: 0, maximum: 50000", "minimum: 0, exclusiveMinimum: 0, maximum: 50000")],
        [("amount", "constraint-tightened", {B})],
    ),
    (
        "exclusiveMinimum raised",
        [("{minimum: 1}", "{exclusiveMinimum: 1}")],
        [("{exclusiveMinimum: 1}", "{exclusiveMinimum: 5}")],
        [("big", "constraint-tightened", {B})],
    ),
    (
        "integer minimum 1 -> exclusiveMinimum 0 (same bound)",
        [],
        [("{minimum: 1}", "{exclusiveMinimum: 0}")],
        [("big", "constraint-restated", set())],
    ),
    ("maximum lowered", [], [("maximum: 50000", "maximum: 10000")], [("amount", "constraint-tightened", {B})]),
    ("maximum raised", [], [("maximum: 50000", "maximum: 90000")], [("amount", "constraint-loosened", {F})]),
    ("maximum added", [], [("{minimum: 1}", "{minimum: 1, maximum: 10}")], [("big", "constraint-tightened", {B})]),
    ("exclusiveMaximum added", [], [("{minimum: 1}", "{minimum: 1, exclusiveMaximum: 10}")], [("big", "constraint-tightened", {B})]),
    (
        "exclusiveMaximum removed",
        [("{minimum: 1}", "{minimum: 1, exclusiveMaximum: 10}")],
        [("{minimum: 1, exclusiveMaximum: 10}", "{minimum: 1}")],
        [("big", "constraint-loosened", {F})],
    ),
    (
        "timestamp minimum raised",
        [
            (
                "name: seen_at, logicalType: timestamp}",
                "name: seen_at, logicalType: timestamp, logicalTypeOptions: {minimum: '2020-01-01T00:00:00Z'}}",
            )
        ],
        [("2020-01-01T", "2021-01-01T")],
        [("seen_at", "constraint-tightened", {B})],
    ),
    ("minLength raised", [], [("minLength: 2", "minLength: 3")], [("code", "constraint-tightened", {B})]),
    ("minLength lowered", [], [("minLength: 2", "minLength: 1")], [("code", "constraint-loosened", {F})]),
    ("maxLength lowered", [], [("maxLength: 4", "maxLength: 3")], [("code", "constraint-tightened", {B})]),
    ("maxLength removed", [], [("maxLength: 4, ", "")], [("code", "constraint-loosened", {F})]),
    (
        "maxLength added",
        [],
        [("{name: plain, logicalType: string}", "{name: plain, logicalType: string, logicalTypeOptions: {maxLength: 9}}")],
        [("plain", "constraint-tightened", {B})],
    ),
    (
        "pattern added",
        [],
        [("{name: plain, logicalType: string}", "{name: plain, logicalType: string, logicalTypeOptions: {pattern: '^x'}}")],
        [("plain", "constraint-tightened", {B})],
    ),
    ("pattern removed", [], [(', pattern: "^[A-Z]+$"', "")], [("code", "constraint-loosened", {F})]),
    ("pattern changed", [], [('"^[A-Z]+$"', '"^[A-Z0-9]+$"')], [("code", "constraint-changed", BOTH)]),
    (
        "format added",
        [],
        [("{name: plain, logicalType: string}", "{name: plain, logicalType: string, logicalTypeOptions: {format: uuid}}")],
        [("plain", "constraint-tightened", {B})],
    ),
    (
        "format removed",
        [],
        [("{name: email, logicalType: string, logicalTypeOptions: {format: email}}", "{name: email, logicalType: string}")],
        [("email", "constraint-loosened", {F})],
    ),
    ("format changed", [], [("{format: email}", "{format: uri}")], [("email", "constraint-changed", BOTH)]),
    ("multipleOf added", [], [("{minimum: 1}", "{minimum: 1, multipleOf: 5}")], [("big", "constraint-tightened", {B})]),
    ("multipleOf removed", [], [(", multipleOf: 0.01", "")], [("amount", "constraint-loosened", {F})]),
    ("multipleOf to a multiple of it", [], [("multipleOf: 0.01", "multipleOf: 0.05")], [("amount", "constraint-tightened", {B})]),
    ("multipleOf to a divisor of it", [], [("multipleOf: 0.01", "multipleOf: 0.005")], [("amount", "constraint-loosened", {F})]),
    ("multipleOf changed", [], [("multipleOf: 0.01", "multipleOf: 0.015")], [("amount", "constraint-changed", BOTH)]),
    (
        "unique added",
        [],
        [("{name: id, logicalType: string, required: true}", "{name: id, logicalType: string, required: true, unique: true}")],
        [("id", "constraint-tightened", {B})],
    ),
    (
        "unique removed",
        [("{name: id, logicalType: string, required: true}", "{name: id, logicalType: string, required: true, unique: true}")],
        [("required: true, unique: true}", "required: true}")],
        [("id", "constraint-loosened", {F})],
    ),
    (
        "event time changed",
        [],
        [("{property: eventTimeField, value: ts}", "{property: eventTimeField, value: seen_at}")],
        [("seen_at", "event-time-changed", BOTH)],
    ),
    ("key fields changed", [], [("keyFields, value: [id]", "keyFields, value: [id, n]")], [(None, "key-fields-changed", BOTH)]),
    ("description changed", [], [("description: free text", "description: other text")], [("note", "description-changed", set())]),
    (
        "description added",
        [],
        [("{name: plain, logicalType: string}", "{name: plain, logicalType: string, description: hi}")],
        [("plain", "description-changed", set())],
    ),
    ("default changed", [], [("{property: default, value: 1}", "{property: default, value: 2}")], [("tier", "default-changed", set())]),
    (
        "default added",
        [],
        [("{name: plain, logicalType: string}", "{name: plain, logicalType: string, customProperties: [{property: default, value: x}]}")],
        [("plain", "default-added", set())],
    ),
    (
        "field order changed",
        [],
        [
            ("      - {name: note, logicalType: string, description: free text}\n", ""),
            (ADD_PROP, ADD_PROP + "      - {name: note, logicalType: string, description: free text}\n"),
        ],
        [],
    ),
    ("version only", [], [("version: 1.0.0", "version: 1.0.1")], []),
]


def expected_breaks(expected) -> set[str]:
    out: set[str] = set()
    for _, _, breaks in expected:
        out |= breaks
    return out


@pytest.mark.parametrize("case,old_edits,new_edits,expected", CASES, ids=[c[0] for c in CASES])
def test_every_change_is_detected_with_its_rule(case, old_edits, new_edits, expected):
    old = plan(edit(BASE, *old_edits))
    new = plan(edit(BASE, *old_edits, *new_edits))
    changes = diff(old, new)
    got = [(c.field, c.rule, set(c.breaks)) for c in changes]
    assert got == expected
    for c in changes:
        assert isinstance(c, Change) and c.message
        assert c.breaks <= {B, F}
        if c.field is not None:
            assert f"`{c.field}`" in c.message
        assert c.location is not None and c.location.file == "things.yaml"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case,old_edits,new_edits,expected", CASES, ids=[c[0] for c in CASES])
def test_each_mode_keeps_the_changes_that_break_in_its_directions(case, old_edits, new_edits, expected, mode):
    old = plan(edit(BASE, *old_edits))
    new = plan(edit(BASE, *old_edits, *new_edits))
    changes = diff(old, new)
    dirs = {"backward": {B}, "forward": {F}, "full": {B, F}, "none": set()}[mode.removesuffix("_transitive")]
    want = [(f, r) for f, r, breaks in expected if breaks & dirs]
    assert [(c.field, c.rule) for c in breaking(changes, mode)] == want
    if mode.endswith("_transitive"):  # same per-pair rule; the caller compares with every earlier version
        assert breaking(changes, mode) == breaking(changes, mode.removesuffix("_transitive"))


def test_full_breaks_when_either_direction_does():
    old = plan(BASE)
    fwd_only = plan(edit(BASE, ("[red, green]", "[red, green, blue]")))
    bwd_only = plan(edit(BASE, ("[red, green]", "[red]")))
    assert breaking(diff(old, fwd_only), "full") and not breaking(diff(old, fwd_only), "backward")
    assert breaking(diff(old, bwd_only), "full") and not breaking(diff(old, bwd_only), "forward")
    assert breaking(diff(old, bwd_only), "none") == []


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown compatibility mode 'sideways'"):
        breaking([], "sideways")


def test_no_change_no_diff():
    assert diff(plan(BASE), plan(BASE)) == []
    assert diff(plan(TRANSACTIONS), plan(TRANSACTIONS)) == []


def test_messages_name_field_old_and_new_value_on_the_real_contract():
    old = plan(TRANSACTIONS, "contracts/transactions.yaml")
    text = edit(
        TRANSACTIONS,
        ("maximum: 50000", "maximum: 10000"),
        ("validValues: [EUR, USD, GBP, CHF, JPY]", "validValues: [EUR, USD, GBP, CHF, JPY, AUD]"),
        (
            "      - name: channel\n",
            "      - name: device_id\n        logicalType: string\n        required: true\n      - name: channel\n",
        ),
    )
    new = plan(text, "contracts/transactions.yaml")
    by_rule = {c.rule: c for c in diff(old, new)}
    tight = by_rule["constraint-tightened"]
    assert tight.message == "maximum of `amount` lowered from 50000 to 10000"
    assert tight.field == "amount" and tight.breaks == {B}
    lines = text.splitlines()
    assert lines[tight.location.line - 1].strip() == "- name: amount"  # in the NEW file
    assert "AUD" in by_rule["enum-value-added"].message and "`currency`" in by_rule["enum-value-added"].message
    req = by_rule["required-field-added"]
    assert req.field == "device_id" and lines[req.location.line - 1].strip() == "- name: device_id"
    assert [c.rule for c in breaking(diff(old, new), "backward")] == ["constraint-tightened", "required-field-added"]
    assert [c.rule for c in breaking(diff(old, new), "forward")] == ["enum-value-added"]


def test_removed_field_is_located_at_the_contract():
    old = plan(BASE)
    new = plan(edit(BASE, ("      - {name: plain, logicalType: string}\n", "")))
    (c,) = diff(old, new)
    assert c.location == new.location
    assert "`plain`" in c.message


def test_bound_messages():
    old = plan(BASE)
    msgs = {
        edit(BASE, ("minimum: 0, maximum: 50000", "minimum: 10, maximum: 50000")): "minimum of `amount` raised from 0 to 10",
        edit(BASE, ("minimum: 0, maximum: 50000", "maximum: 50000")): "minimum 0 of `amount` removed",
        edit(BASE, ("{minimum: 1}", "{minimum: 1, maximum: 10}")): "maximum 10 added to `big`",
        edit(BASE, ('"^[A-Z]+$"', '"^[A-Z0-9]+$"')): "pattern of `code` changed from '^[A-Z]+$' to '^[A-Z0-9]+$'",
        edit(BASE, ("format: i32", "format: i64")): "type of `n` widened from integer (i32) to integer (i64)",
        edit(BASE, ("[red, green]", "[red]")): "enum of `color` lost 'green': old records may hold it",
    }
    for text, msg in msgs.items():
        (c,) = diff(old, plan(text))
        assert c.message == msg


def test_closed_model_adds_the_unknown_field_rules():
    old = plan(BASE)  # unknownFields defaults to reject
    plus = plan(edit(BASE, added("{name: extra, logicalType: string}")))
    minus = plan(edit(BASE, ("      - {name: plain, logicalType: string}\n", "")))
    assert breaking(diff(old, plus), "full") == []  # Avro's view: readers ignore unknown fields
    assert [(c.rule, set(c.breaks)) for c in diff(old, plus, closed_model=True)] == [
        ("field-added", set()),
        ("field-added-to-closed-contract", {F}),
    ]
    assert [(c.rule, set(c.breaks)) for c in diff(old, minus, closed_model=True)] == [
        ("field-removed", set()),
        ("field-removed-from-closed-contract", {B}),
    ]
    opened = edit(BASE, ("customProperties:\n", "customProperties:\n  - {property: unknownFields, value: ignore}\n"))
    assert [c.rule for c in diff(plan(opened), plan(edit(opened, added("{name: extra, logicalType: string}"))), closed_model=True)] == [
        "field-added"
    ]
    loosen = diff(old, plan(opened), closed_model=True)
    assert [(c.rule, set(c.breaks)) for c in loosen] == [("unknown-fields-changed", {F})]
    assert [(c.rule, set(c.breaks)) for c in diff(old, plan(opened))] == [("unknown-fields-changed", set())]


def test_settings_changes_are_schema_changes_that_break_nothing():
    old = plan(TRANSACTIONS)
    new = plan(
        edit(TRANSACTIONS, ("value: backward", "value: full"), ("value: 5m", "value: 10m"), ("value: transactions\n", "value: txns\n"))
    )
    rules = [(c.rule, set(c.breaks)) for c in diff(old, new)]
    assert rules == [("topic-changed", set()), ("compatibility-changed", set()), ("max-future-skew-changed", set())]
    assert schema_changed(old, new)


def test_schema_changed_ignores_documentation_only():
    old = plan(BASE)
    assert not schema_changed(old, plan(edit(BASE, ("description: free text", "description: better text"))))
    assert not schema_changed(old, plan(edit(BASE, ("name: Things", "name: Better things"))))
    assert not schema_changed(old, plan(edit(BASE, ("{minimum: 1}", "{exclusiveMinimum: 0}"))))
    assert not schema_changed(old, plan(edit(BASE, ("version: 1.0.0", "version: 1.0.1"))))
    assert schema_changed(old, plan(edit(BASE, ("maxLength: 4", "maxLength: 5"))))
    assert schema_changed(old, plan(edit(BASE, ("{property: default, value: 1}", "{property: default, value: 2}"))))
    assert {"description-changed", "name-changed"} <= NON_SCHEMA_RULES


# --- versions -----------------------------------------------------------------------


def versioned(text: str, version: str) -> ContractPlan:
    return plan(edit(text, ("version: 1.0.0", f"version: {version}")))


BREAKING_EDIT = ("[red, green]", "[red]")  # enum value removed: breaks backward


def verdict(old_version: str, new_version: str, edits=(), mode: str = "backward"):
    old = versioned(BASE, old_version)
    new = versioned(edit(BASE, *edits), new_version)
    changes = diff(old, new)
    return version_verdict(old, new, breaking(changes, mode), schema_changed(old, new))


def test_version_same_but_schema_changed():
    v = verdict("1.2.0", "1.2.0", [("maxLength: 4", "maxLength: 5")])
    assert not v.ok and v.message == "schema changed but version 1.2.0 was not bumped" and not v.major_bump


def test_version_same_with_breaking_changes_names_the_major_bump():
    v = verdict("1.2.0", "1.2.0", [BREAKING_EDIT])
    assert not v.ok and "schema changed but version 1.2.0 was not bumped" in v.message and "1.2.0 -> 2.0.0" in v.message


def test_version_same_and_only_docs_changed_is_fine():
    v = verdict("1.2.0", "1.2.0", [("description: free text", "description: other")])
    assert v.ok and not v.major_bump


def test_breaking_changes_with_a_major_bump_are_allowed():
    v = verdict("1.2.0", "2.0.0", [BREAKING_EDIT])
    assert v.ok and v.major_bump and "major version bump" in v.message and "1.2.0 -> 2.0.0" in v.message


def test_breaking_changes_without_a_major_bump_are_refused():
    v = verdict("1.2.0", "1.3.0", [BREAKING_EDIT])
    assert not v.ok and not v.major_bump
    assert v.message.endswith("breaking changes need a major version bump: 1.2.0 -> 2.0.0")


def test_breaking_under_another_mode_is_not_breaking_here():
    assert verdict("1.2.0", "1.3.0", [BREAKING_EDIT], mode="forward").ok
    assert verdict("1.2.0", "1.3.0", [BREAKING_EDIT], mode="none").ok


def test_non_breaking_bump_is_fine():
    v = verdict("1.2.0", "1.2.1", [("maxLength: 4", "maxLength: 5")])
    assert v.ok and not v.major_bump


def test_version_going_down_is_refused():
    v = verdict("1.2.0", "1.1.9")
    assert not v.ok and v.message == "version went down from 1.2.0 to 1.1.9"
    assert not verdict("1.2.0", "1.2.0-rc.1").ok  # a pre-release sorts before its release


def test_zero_major_versions_and_prereleases():
    v = verdict("0.3.1", "0.4.0", [BREAKING_EDIT])
    assert v.ok and v.major_bump
    v = verdict("0.3.1", "0.3.2", [BREAKING_EDIT])
    assert not v.ok and "0.3.1 -> 0.4.0" in v.message
    v = verdict("1.2.0", "2.0.0-rc.1", [BREAKING_EDIT])
    assert v.ok and v.major_bump
    assert verdict("2.0.0-rc.1", "2.0.0-rc.2", [("maxLength: 4", "maxLength: 5")]).ok


# --- history --------------------------------------------------------------------------


def test_check_against_history_uses_the_newest_or_every_version():
    v1 = versioned(edit(BASE, ("[red, green]", "[red, green, blue]")), "1.0.0")
    v2 = versioned(BASE, "2.0.0")  # dropped blue (a major bump)
    new = versioned(edit(BASE, ("[red, green]", "[red, green, yellow]")), "2.1.0")
    history = [v2, v1]  # newest first
    assert check_against_history(new, history, "backward") == [("2.0.0", [])]
    transitive = check_against_history(new, history, "backward_transitive")
    assert [(v, [c.rule for c in cs]) for v, cs in transitive] == [("2.0.0", []), ("1.0.0", ["enum-value-removed"])]
    assert [(v, [c.rule for c in cs]) for v, cs in check_against_history(new, history, "forward")] == [("2.0.0", ["enum-value-added"])]
    assert check_against_history(new, history, "none") == []
    assert check_against_history(new, [], "full_transitive") == []


def git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    r = subprocess.run(
        ["git", "-c", "user.name=featureline tests", "-c", "user.email=tests@featureline.invalid", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.strip()


@pytest.fixture
def history_repo(tmp_path: Path) -> dict:
    repo = tmp_path / "repo"
    (repo / "contracts").mkdir(parents=True)
    git(repo, "init", "-q")
    t1 = BASE
    t2 = edit(BASE, ("version: 1.0.0", "version: 1.1.0"), ("maxLength: 4", "maxLength: 8"))
    t3 = edit(t2, ("version: 1.1.0", "version: 2.0.0"), ("[red, green]", "[red]"))
    t5 = edit(t3, ("version: 2.0.0", "version: 2.1.0"), added("{name: extra, logicalType: string}"))
    old_path, path = repo / "contracts" / "things_v1.yaml", repo / "contracts" / "things.yaml"
    old_path.write_text(t1)
    (repo / "README").write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    c1 = git(repo, "rev-parse", "HEAD")
    old_path.write_text(t2)
    git(repo, "commit", "-qam", "v2")
    c2 = git(repo, "rev-parse", "HEAD")
    git(repo, "mv", "contracts/things_v1.yaml", "contracts/things.yaml")
    path.write_text(t3)
    git(repo, "commit", "-qam", "v3, renamed")
    c3 = git(repo, "rev-parse", "HEAD")
    git(repo, "rm", "-q", "contracts/things.yaml")
    git(repo, "commit", "-qm", "deleted")
    c4 = git(repo, "rev-parse", "HEAD")
    (repo / "contracts").mkdir(exist_ok=True)
    path.write_text(t5)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "back again")
    c5 = git(repo, "rev-parse", "HEAD")
    path.write_text(edit(t5, ("version: 2.1.0", "version: 2.2.0")))  # uncommitted working copy
    return {"repo": repo, "texts": [t5, t3, t2, t1], "commits": [c5, c3, c2, c1], "deleted": c4}


def test_git_history_follows_renames_and_skips_deletions(history_repo):
    repo = history_repo["repo"]
    got = git_history("contracts/things.yaml", cwd=repo)
    assert [c for c, _ in got] == history_repo["commits"]
    assert [t for _, t in got] == history_repo["texts"]
    assert history_repo["deleted"] not in [c for c, _ in got]
    # absolute path, from another directory of the repo
    assert git_history(repo / "contracts" / "things.yaml", cwd=repo / "contracts") == got
    # the versions compile and feed check_against_history
    versions = [plan(t) for _, t in got]
    new = plan((repo / "contracts" / "things.yaml").read_text())
    assert [v.version for v in versions] == ["2.1.0", "2.0.0", "1.1.0", "1.0.0"]
    res = check_against_history(new, versions, "forward_transitive")
    assert [(v, [c.rule for c in cs]) for v, cs in res] == [("2.1.0", []), ("2.0.0", []), ("1.1.0", []), ("1.0.0", ["constraint-loosened"])]
    res = check_against_history(new, versions, "backward_transitive")
    assert [(v, [c.rule for c in cs]) for v, cs in res] == [
        ("2.1.0", []),
        ("2.0.0", []),
        ("1.1.0", ["enum-value-removed"]),
        ("1.0.0", ["enum-value-removed"]),
    ]


def test_git_history_at_a_ref(history_repo):
    repo = history_repo["repo"]
    c5, c3, c2, c1 = history_repo["commits"]
    t5, t3, t2, t1 = history_repo["texts"]
    assert git_history("contracts/things.yaml", ref="HEAD", cwd=repo) == [("HEAD", t5)]
    assert git_history("contracts/things.yaml", ref=c3, cwd=repo) == [(c3, t3)]
    assert git_history("contracts/things_v1.yaml", ref=c2, cwd=repo) == [(c2, t2)]  # gone from the work tree, there at c2
    assert git_history("contracts/things.yaml", ref=c2, cwd=repo) == []  # not there yet under this name
    assert git_history("contracts/things.yaml", ref=history_repo["deleted"], cwd=repo) == []


def test_git_history_of_a_file_never_committed(history_repo):
    repo = history_repo["repo"]
    (repo / "contracts" / "new.yaml").write_text(BASE)
    assert git_history("contracts/new.yaml", cwd=repo) == []
    assert git_history("contracts/new.yaml", ref="HEAD", cwd=repo) == []


def test_git_errors_carry_gits_message(history_repo, tmp_path):
    repo = history_repo["repo"]
    with pytest.raises(GitError, match="unknown git ref 'no-such-branch'") as e:
        git_history("contracts/things.yaml", ref="no-such-branch", cwd=repo)
    assert "no-such-branch" in e.value.message and "fatal:" in e.value.message  # git's own stderr
    elsewhere = tmp_path / "not_a_repo"
    elsewhere.mkdir()
    with pytest.raises(GitError, match="not a git repository"):
        git_history("x.yaml", cwd=elsewhere)
    with pytest.raises(GitError, match="outside the git repository"):
        git_history(elsewhere / "x.yaml", cwd=repo)
