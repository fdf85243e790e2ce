"""The compiled plan of the example repo, and cross-checks that need more than one edit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from featureline.compiler import compile_project
from featureline.errors import SpecError
from featureline.scaffold import scaffold
from featureline.timeutil import DAY, HOUR, MINUTE

REPO = Path(__file__).resolve().parents[2]


def test_example_plan(example_project):
    plan = compile_project(".")
    assert set(plan.contracts) == {"transactions", "users", "merchants"}
    assert plan.sources["transactions"].stream.topic == "transactions"
    assert plan.sources["transactions"].event_time == "event_time"
    assert plan.sources["users"].event_time == "updated_at"
    ut = plan.views["user_transactions"]
    assert ut.kind == "window" and ut.join_keys == ("user_id",)
    f = ut.feature("amount_sum_7d")
    assert (f.function, f.column, f.window_us, f.hop_us, f.dtype) == ("sum", "amount", 7 * DAY, HOUR, "number")
    assert ut.feature("count_10m").hop_us == 5 * MINUTE
    assert ut.feature("count_10m").dtype == "integer"
    assert ut.hops == (5 * MINUTE, HOUR)
    dr = plan.views["merchant_transactions"].feature("decline_rate_mean_1h")
    assert dr.expr == "status = 'declined'" and dr.input_type == "boolean" and dr.dtype == "number"
    assert plan.views["user_declines"].where == "status = 'declined'"
    lm = plan.views["user_last_merchant"].feature("last_merchant_id")
    assert (lm.kind, lm.column, lm.ttl_us, lm.dtype) == ("latest", "merchant_id", 30 * DAY, "integer")
    svc = plan.services["fraud_detection"]
    assert svc.join_keys == ("user_id", "merchant_id")
    assert svc.features[0] == "user_transactions:count_10m"
    assert "user_transactions:amount_max_7d" in svc.features and "merchant_profile:risk_tier" in svc.features
    assert len(svc.features) == len(set(svc.features)) == 26
    assert plan.entities["user"].key_types == ("integer",)
    assert plan.project.redis_url.startswith("redis://127.0.0.1:")
    assert plan.feature("user_profile:country").as_of_rule() == "latest row with t - 3650d <= event_time < t"
    assert ut.feature("count_1h").as_of_rule() == "events with floor(t - 1h, 5m) <= event_time < t"


def test_plan_is_immutable(example_project):
    plan = compile_project(".")
    with pytest.raises(TypeError):
        plan.views["x"] = None  # type: ignore[index]
    with pytest.raises(AttributeError):
        plan.views["user_transactions"].name = "y"  # type: ignore[misc]


def test_env_interpolation(example_project, monkeypatch):
    monkeypatch.setenv("FEATURELINE_REDIS_PORT", "6390")
    assert compile_project(".").project.redis_url == "redis://127.0.0.1:6390/0"


def test_all_errors_of_a_file_at_once_with_snippet(example_project):
    path = example_project / "features/user_features.yaml"
    text = path.read_text()
    text = text.replace("column: amount ", "column: amout ").replace("ttl: 30d", "ttl: 30 days").replace("source: users", "source: userz")
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        compile_project(".")
    codes = [p.code for p in e.value.problems]
    assert codes == ["unknown-column", "invalid-duration", "unknown-source"]
    rendered = e.value.render()
    assert rendered.endswith("3 errors found")
    # snippet with a caret under the offending value
    assert "9 |       - column: amout" in rendered
    lines = rendered.splitlines()
    caret = lines[lines.index("9 |       - column: amout              # -> amount_sum_10m, amount_mean_10m, ...") + 1]
    assert caret == "  |                 ^^^^^"


def test_pydantic_errors_of_several_files_reported_together(example_project):
    (example_project / "features/user_features.yaml").write_text(
        (example_project / "features/user_features.yaml").read_text().replace("entity: user\n    source: transactions\n    where", "entty: user\n    source: transactions\n    where")
    )
    (example_project / "contracts/users.yaml").write_text((example_project / "contracts/users.yaml").read_text().replace("kind: DataContract", "kind: Contract"))
    with pytest.raises(SpecError) as e:
        compile_project(".")
    files = sorted({p.location.file for p in e.value.problems})
    assert files == ["contracts/users.yaml", "features/user_features.yaml"]


def test_contract_must_bind_event_time_or_source_sets_it(example_project):
    path = example_project / "contracts/merchants.yaml"
    path.write_text(path.read_text().replace("  - property: eventTimeField\n    value: updated_at\n", ""))
    with pytest.raises(SpecError) as e:
        compile_project(".")
    assert [p.code for p in e.value.problems] == ["no-event-time"]
    ents = example_project / "features/entities.yaml"
    ents.write_text(ents.read_text().replace("path: data/history/merchants.parquet", "path: data/history/merchants.parquet\n    event_time: updated_at"))
    assert compile_project(".").sources["merchants"].event_time == "updated_at"


def test_service_feature_name_clash(example_project):
    path = example_project / "features/merchant_features.yaml"
    path.write_text(path.read_text().replace("  - name: user_activity\n    features:\n", "  - name: user_activity\n    features:\n      - user_profile:country\n      - merchant_profile:risk_tier\n"))
    plan = compile_project(".")  # no clash yet
    assert plan.services["user_activity"].features[:2] == ("user_profile:country", "merchant_profile:risk_tier")
    path.write_text(path.read_text().replace("      - name: merchant_category\n        column: category\n", "      - name: country\n        column: country\n"))
    path.write_text(path.read_text().replace("      - user_profile:country\n      - merchant_profile:risk_tier\n", "      - user_profile:country\n      - merchant_profile:country\n", 1))
    with pytest.raises(SpecError) as e:
        compile_project(".")
    assert [p.code for p in e.value.problems] == ["feature-name-clash"]


def test_init_scaffold_passes_check(tmp_path):
    scaffold(tmp_path / "newproj")
    plan = compile_project(tmp_path / "newproj")
    assert plan.project.name == "newproj"
    assert [f.name for f in plan.views["user_engagement"].features] == ["count_1h", "count_24h", "duration_ms_sum_24h", "duration_ms_mean_24h"]


def _cli(*args, cwd):
    # the featureline of this tree, whichever one the interpreter has installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "featureline", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env)


def test_cli_check_ok_and_broken(example_project):
    r = _cli("check", cwd=example_project)
    assert r.returncode == 0, r.stderr
    assert "ok: project `payments_fraud` compiles" in r.stdout
    path = example_project / "features/user_features.yaml"
    path.write_text(path.read_text().replace("windows: [1h, 24h]", "windows: [1h, 24hours]"))
    r = _cli("check", cwd=example_project)
    assert r.returncode == 1
    assert "features/user_features.yaml:19:23: error[invalid-duration]" in r.stderr
    assert "^^^^^^^" in r.stderr


@pytest.mark.parametrize(
    "text,error",
    [
        (  # billion laughs: 9^8 values expanded (minutes and gigabytes before)
            "\n".join(['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]) + "\n",
            "featureline.yaml:6:10: error[yaml-too-many-nodes]",
        ),
        ("project: &p [x, *p]\n", "featureline.yaml:1:17: error[yaml-alias]"),  # RecursionError before
        ("project: " + "[" * 5000 + "]" * 5000 + "\n", "featureline.yaml:1:74: error[yaml-too-deep]"),  # RecursionError before
        ("project: x\nretries: " + "1" * 4301 + "\n", "featureline.yaml:2:10: error[yaml-number]"),  # ValueError before
    ],
    ids=["billion-laughs", "recursive-alias", "deep", "long-integer"],
)
def test_cli_check_on_a_yaml_bomb_exits_1_with_one_error(example_project, text, error):
    (example_project / "featureline.yaml").write_text(text)
    r = _cli("check", cwd=example_project)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(error) and r.stderr.rstrip().endswith("\n1 error found"), r.stderr


def test_cli_plan_json_and_text(example_project):
    r = _cli("plan", "--format", "json", cwd=example_project)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    feats = {f["name"]: f for f in data["views"]["user_transactions"]["features"]}
    assert feats["amount_mean_24h"]["window_us"] == 24 * HOUR and feats["amount_mean_24h"]["hop_us"] == HOUR
    r = _cli("plan", "--view", "user_declines", cwd=example_project)
    assert r.returncode == 0 and "floor(t - 1h, 5m) <= event_time < t" in r.stdout
    assert _cli("plan", "--format", "xml", cwd=example_project).returncode == 2


def test_cli_init_then_check(tmp_path):
    assert _cli("init", "p1", cwd=tmp_path).returncode == 0
    assert _cli("check", cwd=tmp_path / "p1").returncode == 0
    r = _cli("init", "p1", cwd=tmp_path)  # not empty any more
    assert r.returncode == 2 and "not empty" in r.stderr


def test_cli_outside_a_project(tmp_path):
    r = _cli("check", cwd=tmp_path)
    assert r.returncode == 1 and "no featureline.yaml" in r.stderr


def test_cli_import_stays_light():
    code = "import sys, featureline.cli as c; c._register_subcommands(); heavy = [m for m in ('pydantic', 'pyarrow', 'duckdb', 'sqlglot', 'kafka', 'redis', 'numpy', 'rich.table') if m in sys.modules]; print(heavy)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
