"""Secrets: no literal secret by any route, references (never values) in the plan and in what is
pickled for Beam's workers, resolved where the connection is made, redacted from what is printed."""

from __future__ import annotations

import json
import pickle
import socket

import pytest
from typer.testing import CliRunner

from featureline.compiler import compile_project
from featureline.errors import SpecError

PW = "hunter2-Zq9"  # the secret's value in these tests: never in a plan, a pickle or a message
URL = "  url: redis://127.0.0.1:${FEATURELINE_REDIS_PORT:-6379}/0"


def _edit(project, old: str, new: str) -> None:
    path = project / "featureline.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _problems(project) -> list:
    with pytest.raises(SpecError) as e:
        compile_project(".")
    rendered = e.value.render()  # with the snippet of the line
    assert PW not in rendered and "hunter2" not in rendered
    return [(p.code, str(p.location)) for p in e.value.problems]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- literal secrets are refused, by every route (finding 7) ----------------------------


@pytest.mark.parametrize(
    "old,new,where",
    [
        # a default is a literal secret (and was dropped when connecting: finding 7b)
        ("  key_prefix: fl", "  key_prefix: fl\n  password: ${FL_PW:-hunter2}", "featureline.yaml:9:13"),
        ("  consumer_group: featureline-payments", "  consumer_group: featureline-payments\n  sasl_password: ${FL_PW:-hunter2}", "featureline.yaml:14:18"),
        # a password in the URL's userinfo
        (URL, "  url: redis://:hunter2@127.0.0.1:6379/0", "featureline.yaml:7:8"),
        (URL, "  url: rediss://alice:hunter2@127.0.0.1:6379/0", "featureline.yaml:7:8"),
        (URL, "  url: redis://:${FL_PW:-hunter2}@127.0.0.1:6379/0", "featureline.yaml:7:8"),
        (URL, "  url: 'redis://:x${FL_PW}@127.0.0.1:6379/0'", "featureline.yaml:7:8"),
        # ... or in its query (redis-py reads ?password=)
        (URL, "  url: redis://127.0.0.1:6379/0?password=hunter2", "featureline.yaml:7:8"),
        # kafka.client: secret-like keys, whatever the type of the value
        ("  consumer_group: featureline-payments", "  consumer_group: featureline-payments\n  client: {ssl_password: hunter2}", "featureline.yaml:14:26"),
        ("  consumer_group: featureline-payments", "  consumer_group: featureline-payments\n  client: {sasl_plain_password: 12345}", "featureline.yaml:14:33"),
        ("  consumer_group: featureline-payments", "  consumer_group: featureline-payments\n  client: {ssl_password: '${FL_PW:-hunter2}'}", "featureline.yaml:14:26"),
        # credentials in the bootstrap servers
        ("  bootstrap_servers: 127.0.0.1:${FEATURELINE_KAFKA_PORT:-9092}", "  bootstrap_servers: alice:hunter2@127.0.0.1:9092", "featureline.yaml:11:22"),
    ],
)
def test_a_literal_secret_is_refused_naming_file_line_col_without_echoing_it(example_project, old, new, where):
    _edit(example_project, old, new)
    problems = _problems(example_project)
    assert len(problems) == 1 and problems[0][1] == where, problems
    assert problems[0][0] in ("literal-secret", "invalid-value")


def test_a_misspelt_kafka_client_setting_is_refused_not_dropped(example_project):
    # `ssl_pasword` is no secret-like name: once it was taken as a literal, then silently dropped
    _edit(example_project, "  consumer_group: featureline-payments", "  consumer_group: featureline-payments\n  client: {ssl_pasword: hunter2}")
    with pytest.raises(SpecError) as e:
        compile_project(".")
    (p,) = e.value.problems
    assert (p.code, str(p.location), p.hint) == ("unknown-setting", "featureline.yaml:14:12", "did you mean `ssl_password`?")


def test_the_password_is_set_once(example_project, monkeypatch):
    _edit(example_project, URL, "  url: redis://:${FL_PW}@127.0.0.1:6379/0\n  password: ${FL_PW2}")
    with pytest.raises(SpecError) as e:
        compile_project(".")
    assert [(p.code, str(p.location)) for p in e.value.problems] == [("invalid-value", "featureline.yaml:8:13")]


def test_a_url_whose_variable_brings_a_password_is_refused(example_project, monkeypatch):
    monkeypatch.setenv("FL_REDIS_URL", f"redis://:{PW}@127.0.0.1:6379/0")
    _edit(example_project, URL, "  url: ${FL_REDIS_URL}")
    with pytest.raises(SpecError) as e:
        compile_project(".")
    (p,) = e.value.problems
    assert (p.code, str(p.location)) == ("literal-secret", "featureline.yaml:7:8")
    assert "FL_REDIS_URL" in p.message and PW not in e.value.render()


# -- references in the plan, values only where the connection is made (finding 8) ---------


@pytest.fixture
def secret_project(example_project, monkeypatch):
    """Every kind of secret, as references, with their variables set."""
    for var in ("FL_PW", "FL_SASL_PW", "FL_SSL_PW"):
        monkeypatch.setenv(var, f"{PW}-{var}")
    _edit(example_project, URL, "  url: redis://alice:${FL_PW}@127.0.0.1:${FEATURELINE_REDIS_PORT:-6379}/0")
    _edit(
        example_project,
        "  security_protocol: PLAINTEXT",
        "  security_protocol: SASL_PLAINTEXT\n  sasl_mechanism: PLAIN\n  sasl_username: bob\n  sasl_password: ${FL_SASL_PW}\n"
        "  client: {ssl_password: '${FL_SSL_PW}', request_timeout_ms: 31000}",
    )
    return example_project


def test_the_plan_keeps_references_and_the_json_plan_shows_them(secret_project):
    plan = compile_project(".")
    p = plan.project
    assert p.redis_url == "redis://alice@127.0.0.1:6379/0" and p.redis_password_env == "FL_PW"
    assert p.kafka_sasl_password_env == "FL_SASL_PW"
    assert dict(p.kafka_client) == {"ssl_password": "${FL_SSL_PW}", "request_timeout_ms": 31000}
    assert PW.encode() not in pickle.dumps(plan)
    out = CliRunner().invoke(_app(), ["plan", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert PW not in out.output
    assert json.loads(out.output)["project"]["kafka_client"]["ssl_password"] == "${FL_SSL_PW}"
    text = CliRunner().invoke(_app(), ["plan"])
    assert text.exit_code == 0 and PW not in text.output
    assert "password ${FL_PW}" in text.output and "sasl_password ${FL_SASL_PW}" in text.output


def test_secrets_are_resolved_at_connect_time_from_that_process_environment(secret_project, monkeypatch):
    from featureline.secrets import kafka_config, redis_params

    plan = compile_project(".")
    monkeypatch.setenv("FL_PW", "rotated-1")  # the environment where the connection is made wins
    assert redis_params(plan.project) == ("redis://alice@127.0.0.1:6379/0", "rotated-1")
    cfg = kafka_config(plan.project)
    assert (cfg["sasl_plain_password"], cfg["ssl_password"], cfg["sasl_plain_username"]) == (f"{PW}-FL_SASL_PW", f"{PW}-FL_SSL_PW", "bob")
    assert cfg["request_timeout_ms"] == 31000


def test_a_missing_secret_is_an_error_naming_the_variable_and_setting_when_connecting(secret_project, monkeypatch):
    from featureline.online.store import connect
    from featureline.secrets import SecretError, kafka_config
    from featureline.stream.sinks import kafka_config as sinks_kafka_config

    monkeypatch.delenv("FL_PW")
    monkeypatch.delenv("FL_SSL_PW")
    plan = compile_project(".")  # compiling needs no secret (CI has none)
    with pytest.raises(SecretError, match=r"^the Redis password \(online_store\.url in featureline\.yaml\) is read from environment variable `FL_PW`, which is not set here"):
        connect(plan)
    with pytest.raises(SecretError, match=r"^kafka\.client\.ssl_password in featureline\.yaml is read from environment variable `FL_SSL_PW`, which"):
        kafka_config(plan.project)
    with pytest.raises(SecretError):
        sinks_kafka_config(plan)


def test_the_stream_pipeline_ships_references_not_secrets_to_the_runner(secret_project, monkeypatch):
    """What a runner uploads (the pipeline's pickled transforms and DoFns) carries no secret."""
    import base64
    import bz2
    import zlib

    import apache_beam as beam
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    from featureline.stream import kafka_source
    from featureline.stream.pipeline import StreamOptions, build

    plan = compile_project(".")
    seen = {}

    def discover(bootstrap, topics, **cfg):  # no broker in unit tests: what the job would connect with
        seen.update(cfg)
        return [(t, 0) for t in topics]

    monkeypatch.setattr(kafka_source, "discover", discover)
    p = beam.Pipeline()
    build(p, plan, StreamOptions(until_caught_up=True), boundaries={})
    assert seen["sasl_plain_password"] == f"{PW}-FL_SASL_PW"  # resolved where it connects
    shipped = []
    for t in p.to_runner_api().components.transforms.values():
        if t.spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
            raw = base64.b64decode(payload.do_fn.payload)  # Beam's pickler: base64 of bz2 (or zlib) of a pickle
            shipped.append(bz2.decompress(raw) if raw[:3] == b"BZh" else zlib.decompress(raw))
    blob = b"".join(shipped)
    assert PW.encode() not in blob  # never the values ...
    assert b"FL_SASL_PW" in blob and b"${FL_SSL_PW}" in blob  # ... the references


# -- redaction ------------------------------------------------------------------------------


def test_errors_never_show_the_redis_password(secret_project, monkeypatch):
    port = _free_port()  # nothing listens: the read fails, and says where
    monkeypatch.setenv("FEATURELINE_REDIS_PORT", str(port))
    out = CliRunner().invoke(_app(), ["get", "-s", "fraud_detection", "-e", "user_id=1", "-e", "merchant_id=2"])
    assert out.exit_code == 1, out.output
    assert f"127.0.0.1:{port}" in out.output and PW not in out.output


def test_redact_takes_resolved_secrets_out_of_any_text(secret_project):
    from featureline.secrets import kafka_config, redact

    plan = compile_project(".")
    cfg = kafka_config(plan.project)
    text = f"boom: {cfg} ({cfg['ssl_password']})"
    assert PW not in redact(text) and "***" in redact(text)
    assert redact("nothing secret here") == "nothing secret here"


def _app():
    from featureline.cli import app

    return app


def test_outage_lines_redact_resolved_secrets(secret_project, capsys):
    from featureline.outage import Outage
    from featureline.secrets import kafka_config

    cfg = kafka_config(compile_project(".").project)
    Outage("Kafka").failed(ConnectionError(f"login refused for {cfg['sasl_plain_password']}"))
    err = capsys.readouterr().err
    assert "login refused for ***" in err and PW not in err


@pytest.mark.parametrize("url", ["redis://${FL_USER}@127.0.0.1:6379/0", "redis://${FL_USER}:${FL_PW}@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0?${FL_USER}"])
def test_a_non_secret_variable_cannot_smuggle_a_password_into_the_plan(example_project, monkeypatch, url):
    monkeypatch.setenv("FL_USER", f"alice:{PW}" if "?" not in url else f"password={PW}")
    monkeypatch.setenv("FL_PW", "x")
    _edit(example_project, URL, f"  url: {url}")
    with pytest.raises(SpecError) as e:
        compile_project(".")
    assert [p.code for p in e.value.problems] == ["literal-secret"] and PW not in e.value.render()


# -- serve.auth_tokens: references only, resolved when the server starts ------------------


@pytest.mark.parametrize(
    "tokens, where",
    [
        ('["hunter2-Zq9-literal-token"]', "featureline.yaml:18:17"),
        ('["${FL_TOK:-hunter2-Zq9}"]', "featureline.yaml:18:17"),
        ('["${FL_TOK}", "hunter2-Zq9"]', "featureline.yaml:18:30"),
    ],
)
def test_a_literal_auth_token_is_refused(example_project, tokens, where):
    _edit(example_project, "offline_store:\n  path: data/offline", f"offline_store:\n  path: data/offline\nserve:\n  auth_tokens: {tokens}")
    problems = _problems(example_project)
    assert problems == [("literal-secret", where)], problems


def test_auth_tokens_stay_references_in_the_plan(example_project, monkeypatch):
    monkeypatch.setenv("FL_TOK", PW * 2)
    _edit(example_project, "offline_store:\n  path: data/offline", "offline_store:\n  path: data/offline\nserve:\n  auth_tokens: ['${FL_TOK}']")
    plan = compile_project(".")
    assert plan.project.serve.auth_token_envs == ("FL_TOK",)
    assert PW not in json.dumps(plan.to_dict(), default=str) and PW.encode() not in pickle.dumps(plan)
