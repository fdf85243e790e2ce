import math
import time

import pytest

from featureline.errors import SpecError
from featureline.yamlio import load_file, load_text


def test_yaml_1_1_booleans_and_dates_stay_strings():
    doc = load_text("a: off\nb: no\nc: yes\nd: on\ne: 2024-01-01\nf: 2024-01-01T10:00:00Z\ng: true\nh: false\n")
    assert doc.data == {"a": "off", "b": "no", "c": "yes", "d": "on", "e": "2024-01-01", "f": "2024-01-01T10:00:00Z", "g": True, "h": False}


def test_core_schema_numbers_and_null():
    doc = load_text("a: 12\nb: -3.5\nc: 0x1F\nd: 0o17\ne: .inf\nf: ~\ng:\nh: 1_000\ni: '12'\nj: 1e3\n")
    d = doc.data
    assert (d["a"], d["b"], d["c"], d["d"], d["f"], d["g"], d["h"], d["i"], d["j"]) == (12, -3.5, 31, 15, None, None, 1000, "12", 1000.0)
    assert math.isinf(d["e"])


def test_positions_of_values_and_keys():
    doc = load_text("top:\n  items:\n    - name: x\n      size: 10\n", "f.yaml")
    loc = doc.loc(("top", "items", 0, "size"))
    assert (loc.file, loc.line, loc.col, loc.end_col) == ("f.yaml", 4, 13, 15)
    key = doc.loc(("top", "items", 0, "size"), key=True)
    assert (key.line, key.col) == (4, 7)
    # a path that does not exist falls back to its nearest parent
    assert doc.loc(("top", "items", 0, "missing")).line == 3


def test_duplicate_key_is_an_error_with_both_lines():
    with pytest.raises(SpecError) as e:
        load_text("a: 1\nb: 2\na: 3\n", "dup.yaml")
    assert e.value.problems[0].render(snippet=False) == "dup.yaml:3:1: error[duplicate-key]: duplicate key `a` (first defined at line 1)"


def test_syntax_error_names_line_and_column():
    with pytest.raises(SpecError) as e:
        load_text("a:\n  - x\n  b: 2\n", "bad.yaml")
    p = e.value.problems[0]
    assert p.code == "yaml-syntax"
    assert (p.location.file, p.location.line) == ("bad.yaml", 3)


def test_custom_tags_rejected():
    with pytest.raises(SpecError) as e:
        load_text("a: !!python/object:os.system echo\n", "t.yaml")
    assert e.value.problems[0].code == "yaml-tag"


# -- hostile input: every case is an error naming file:line:col, fast, never a traceback --


def _problems(text: str, file: str = "h.yaml") -> list[str]:
    with pytest.raises(SpecError) as e:
        load_text(text, file)
    return [p.render(snippet=False) for p in e.value.problems]


def _billion_laughs(width: int = 9, levels: int = 8) -> str:
    lines = ['a0: &a0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_billion_laughs_stops_at_the_node_limit_in_well_under_a_second():
    t = time.process_time()
    got = _problems(_billion_laughs())  # 9^8 = 43 million values expanded: 30 s and 975 MB before
    assert time.process_time() - t < 2
    assert got == ["h.yaml:6:10: error[yaml-too-many-nodes]: more than 100,000 values in this file (each alias counts as the size of what it expands to)"]


def test_plain_anchors_and_aliases_still_work_with_positions():
    text = "defaults: &d\n  windows: [1h, 24h]\n  ttl: 7d\na:\n  settings: *d\nb: *d\nname: &n x\nother: *n\n"
    doc = load_text(text, "f.yaml")
    assert doc.data["a"]["settings"] == doc.data["b"] == {"windows": ["1h", "24h"], "ttl": "7d"}
    assert doc.data["other"] == "x"
    doc.data["b"]["ttl"] = "1d"  # each alias is its own copy
    assert doc.data["a"]["settings"]["ttl"] == "7d"
    assert (doc.loc(("a", "settings")).line, doc.loc(("a", "settings")).col) == (5, 13)  # the alias itself
    assert doc.loc(("a", "settings", "windows", 1)).line == 2  # its parts: where they are written
    assert doc.loc(("b", "ttl"), key=True).line == 3


def test_recursive_alias_is_an_error_at_the_alias():
    assert _problems("a: &x [1, *x]\n") == ["h.yaml:1:11: error[yaml-alias]: alias `*x` is inside its own anchor (line 1): a recursive structure"]
    assert _problems("a: &x\n  b:\n    c: *x\n")[0].startswith("h.yaml:3:8: error[yaml-alias]: alias `*x` is inside its own anchor")


def test_undefined_alias():
    assert _problems("a: *nope\n") == ["h.yaml:1:4: error[yaml-alias]: alias `*nope` has no anchor `&nope` before it"]


def test_too_many_aliases():
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n"
    assert _problems(text)[0].startswith("h.yaml:2:4005: error[yaml-too-many-aliases]: more than 1,000 aliases")


@pytest.mark.parametrize("n", [5_000, 100_000])
def test_deep_flow_nesting_stops_at_the_depth_limit(n):
    t = time.process_time()
    got = _problems("a: " + "[" * n + "]" * n + "\n")  # RecursionError before
    assert time.process_time() - t < 1
    assert got == ["h.yaml:1:68: error[yaml-too-deep]: nested more than 64 levels deep"]


def test_deep_block_nesting_and_the_limit_itself():
    assert _problems("".join(" " * i + "k:\n" for i in range(1000))) == ["h.yaml:65:65: error[yaml-too-deep]: nested more than 64 levels deep"]
    deepest = load_text("a: " + "[" * 63 + "]" * 63 + "\n").data  # 64 levels with the top mapping
    for _ in range(63):
        deepest = deepest["a"] if isinstance(deepest, dict) else deepest[0] if deepest else deepest
    assert deepest == []
    # an alias counts as deep as what it expands to
    text = "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n"
    assert _problems(text) == ["h.yaml:2:34: error[yaml-too-deep]: alias `*a` nests its value more than 64 levels deep"]


def test_over_long_numbers_and_out_of_range_floats():
    assert _problems("a: " + "1" * 4301 + "\n") == ["h.yaml:1:4: error[yaml-number]: a number of more than 64 digits (quote it if it is a string)"]
    assert _problems("a: 0x" + "f" * 65 + "\n")[0].startswith("h.yaml:1:4: error[yaml-number]")
    assert load_text("a: " + "9" * 64 + "\nb: '" + "1" * 5000 + "'\n").data == {"a": int("9" * 64), "b": "1" * 5000}
    assert _problems("a: 1e400\n") == ["h.yaml:1:4: error[yaml-number]: `1e400` is too large for a number (at most about 1.8e308; write .inf for infinity)"]
    assert math.isinf(load_text("a: -.inf\n").data["a"])


@pytest.mark.parametrize(
    "text,message",
    [
        ("a: !!python/object/apply:os.system {args: [echo hi]}\n", "unsupported YAML tag `!!python/object/apply:os.system` on a mapping"),
        ("a: !!python/object/apply:os.system [echo hi]\n", "unsupported YAML tag `!!python/object/apply:os.system` on a sequence"),
        ("a: !!set {x, y}\n", "unsupported YAML tag `!!set` on a mapping"),
        ("a: !!omap [x: 1]\n", "unsupported YAML tag `!!omap` on a sequence"),
        ("a: !Ref other\n", "unsupported YAML tag `!Ref`"),
        ("a: !!binary aGk=\n", "unsupported YAML tag `!!binary`"),
        ("a: !!timestamp 2024-01-01\n", "unsupported YAML tag `!!timestamp`"),
        ("%TAG !e! tag:example.com,2000:\n---\na: !e!thing {}\n", "unsupported YAML tag `tag:example.com,2000:thing` on a mapping"),
        ("a: !!int abc\n", "`abc` is not a valid `!!int`"),
    ],
)
def test_tags_on_any_node_are_refused(text, message):
    got = _problems(text)
    assert len(got) == 1 and got[0].endswith(f"error[yaml-tag]: {message}"), got


def test_core_schema_tags_apply():
    assert load_text("a: !!str 12\nb: !!int '12'\nc: !!float 1\nd: !!bool true\ne: !!null ''\nf: !!map {x: 1}\ng: !!seq [1]\n").data == {
        "a": "12",
        "b": 12,
        "c": 1.0,
        "d": True,
        "e": None,
        "f": {"x": 1},
        "g": [1],
    }


def test_merge_keys_refused_clearly():
    got = _problems("base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n")
    assert got == ["h.yaml:3:3: error[yaml-merge]: merge keys (`<<`) are not supported: write the keys out, or quote `'<<'` for a key of that name"]
    assert load_text("'<<': 1\nb: <<\n").data == {"<<": 1, "b": "<<"}


def test_one_document_per_file():
    assert _problems("a: 1\n---\nb: 2\n") == ["h.yaml:2:1: error[yaml-documents]: a second YAML document (`---`): a file holds one document"]
    assert load_text("---\na: 1\n...\n").data == {"a": 1}


def test_over_long_key():
    # the scanner itself refuses an implicit key over 1,024 characters; an explicit `? key` is checked here
    got = _problems("? " + "k" * 5000 + "\n: 1\n")
    assert got == ["h.yaml:1:3: error[yaml-key]: a key of 5,000 characters (the limit is 1,024)"]


def test_control_characters_are_errors_with_position():
    assert _problems("a: 1\nb: x\x00y\n") == ["h.yaml:2:5: error[yaml-syntax]: invalid YAML: character U+0000 is not allowed (special characters are not allowed)"]


def test_files_not_utf8_too_large_or_with_bom(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes(b"name: ok\ndescription: caf\xe9\n")
    with pytest.raises(SpecError) as e:
        load_file(p, "c.yaml")
    assert [x.render(snippet=False) for x in e.value.problems] == ["c.yaml:2:17: error[yaml-encoding]: not UTF-8: byte 0xe9 (invalid continuation byte); save the file as UTF-8"]
    assert "c.yaml:2:17" in e.value.render()  # the snippet of a file that is not UTF-8 renders
    p.write_bytes("name: x\n".encode("utf-16"))
    with pytest.raises(SpecError) as e:
        load_file(p, "c.yaml")
    assert e.value.problems[0].code == "yaml-encoding"
    p.write_bytes(b"\xef\xbb\xbfname: x\n")  # a UTF-8 byte-order mark is fine
    assert load_file(p).data == {"name": "x"}
    with open(p, "wb") as fh:  # 100 MB (sparse): only the first MiB is ever read
        fh.write(b"a: ")
        fh.truncate(100 << 20)
    t = time.process_time()
    with pytest.raises(SpecError) as e:
        load_file(p, "c.yaml")
    assert time.process_time() - t < 1
    assert [x.render(snippet=False) for x in e.value.problems] == ["c.yaml:1:1: error[yaml-too-large]: the file is larger than 1,024 KiB, the limit for a YAML file"]
    assert len(e.value.render()) < 500  # no snippet of a 100 MB line
    with pytest.raises(SpecError) as e:
        load_text("a: " + "x" * (1 << 20) + "\n", "t.yaml")
    assert e.value.problems[0].code == "yaml-too-large"


def test_snippet_of_a_long_line_is_cut_around_the_column(tmp_path):
    p = tmp_path / "w.yaml"
    p.write_text("a: [" + "x, " * 2000 + "!Ref y]\n")
    with pytest.raises(SpecError) as e:
        load_file(p, str(p))
    out = e.value.render()
    line = next(x for x in out.splitlines() if x.startswith("1 | "))
    assert len(line) < 140 and "!Ref y]" in line
    caret = next(x for x in out.splitlines() if "^" in x)
    assert caret.index("^") == line.index("!Ref")


def test_a_flood_of_errors_stops_at_100_and_renders_fast(tmp_path):
    p = tmp_path / "many.yaml"
    p.write_text("".join(f"k{i}: !Ref x\n" for i in range(20_000)))
    t = time.process_time()
    with pytest.raises(SpecError) as e:
        load_file(p, str(p))
    text = e.value.render()
    assert time.process_time() - t < 2
    assert len(e.value.problems) == 101 and e.value.problems[-1].code == "yaml-too-many-errors"
    assert text.endswith("101 errors found")
