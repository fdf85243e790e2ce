import math

import pytest

from featureline.errors import SpecError
from featureline.yamlio import load_text


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
