"""Pure parts of `featureline serve`: bearer-token checks, the log limiters, request bounds."""

from __future__ import annotations

import logging

import pytest

from featureline.plan import ServePlan
from featureline.serve.app import ServeError, _Limited, authorized, tokens
from featureline.serve.http import OncePerMinute
from featureline.serve.reader import HTTPError, read_time


def test_tokens_come_from_the_environment_and_must_be_long_enough():
    s = ServePlan(auth_token_envs=("A", "B"))
    assert tokens(s, {"A": "a" * 16, "B": "b" * 20}) == [b"a" * 16, b"b" * 20]
    with pytest.raises(ServeError, match="B is not set"):
        tokens(s, {"A": "a" * 16})
    with pytest.raises(ServeError, match="B holds 5 characters"):
        tokens(s, {"A": "a" * 16, "B": "short"})
    assert tokens(ServePlan(), {}) == []


def test_authorized_accepts_any_listed_token_as_bearer_only():
    ok = [b"first-token-0123456789", b"second-token-0123456789"]
    assert authorized("Bearer first-token-0123456789", ok)
    assert authorized("Bearer second-token-0123456789", ok)
    assert not authorized("Bearer first-token-012345678", ok)  # a prefix
    assert not authorized("first-token-0123456789", ok)
    assert not authorized("bearer first-token-0123456789", ok)
    assert not authorized(None, ok)
    assert not authorized("Bearer ", ok)


def test_uvicorn_client_warnings_are_shown_once_a_minute_with_a_count():
    f = OncePerMinute(every=60)
    rec = lambda: logging.LogRecord("uvicorn.error", logging.WARNING, "", 0, "Invalid HTTP request received.", (), None)  # noqa: E731
    assert f.filter(rec())
    assert not any(f.filter(rec()) for _ in range(100))
    f.seen["Invalid HTTP request received."] = (f.seen["Invalid HTTP request received."][0] - 61, 100)
    r = rec()
    assert f.filter(r) and "100 more" in r.msg
    info = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, "Started server process", (), None)
    assert all(f.filter(info) for _ in range(3))


def test_internal_errors_log_a_traceback_once_a_minute(caplog):
    limited = _Limited(every=60)
    with caplog.at_level(logging.INFO, logger="featureline.serve"):
        for _ in range(5):
            try:
                raise KeyError("x")
            except KeyError:
                limited("KeyError", "internal error on /features/online: KeyError")
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(caplog.records) == 5 and len(tracebacks) == 1


@pytest.mark.parametrize(
    "at, ok",
    [
        (None, True),
        ("2026-01-01T00:00:00Z", True),
        (1_700_000_000_000_000, True),
        (-1, False),
        (10**30, False),
        ("2300-01-01", False),
        ("x" * 65, False),
        (1.5, False),
        (True, False),
        ("99999-01-01", False),
    ],
)
def test_read_time_bounds(at, ok):
    if ok:
        assert read_time(at) > 0
    else:
        with pytest.raises(HTTPError) as e:
            read_time(at)
        assert e.value.status == 422 and len(e.value.message) < 200


def test_every_serve_setting_in_yaml_reaches_the_plan_and_the_protocol(example_project):
    """Declared means enforced: each `serve:` duration and limit is what the server runs with."""
    from featureline.compiler import compile_project
    from featureline.serve import create_app
    from featureline.serve.http import LIMITS

    path = example_project / "featureline.yaml"
    path.write_text(
        path.read_text()
        + "serve:\n  max_body: 2048\n  max_entities: 7\n  max_features: 9\n  timeout: 250ms\n  header_timeout: 2s\n"
        "  body_timeout: 3s\n  refusal_delay: 0s\n  keep_alive: 4s\n  max_connections: 11\n"
    )
    s = compile_project(example_project).project.serve
    assert (s.max_body, s.max_entities, s.max_features, s.max_connections) == (2048, 7, 9, 11)
    assert (s.timeout_s, s.header_timeout_s, s.body_timeout_s, s.refusal_delay_s, s.keep_alive_s) == (0.25, 2.0, 3.0, 0.0, 4.0)
    saved = dict(LIMITS.__dict__)
    try:
        create_app(example_project)
        assert (LIMITS.max_body, LIMITS.header_timeout, LIMITS.body_timeout, LIMITS.refusal_delay) == (2048, 2.0, 3.0, 0.0)
    finally:
        LIMITS.__dict__.update(saved)


def test_the_cli_maps_every_featureline_error_to_its_message_and_exit_code(capsys):
    """One base (errors.FeaturelineError) with the exit code; `cli.handle_errors` prints the
    message, secrets redacted, and exits with it: the commands keep no list of their own."""
    import typer

    from featureline.batch.engine import SpineError
    from featureline.batch.sources import SourceError
    from featureline.cli import handle_errors
    from featureline.errors import FeaturelineError, SpecError
    from featureline.online.state import StoreLost
    from featureline.online.store import OnlineError
    from featureline.scaffold import ScaffoldError
    from featureline.secrets import SecretError
    from featureline.stream.errors import StreamStopped

    expected = {SpineError: 2, OnlineError: 2, ScaffoldError: 2, SecretError: 2, SourceError: 1, StoreLost: 1, StreamStopped: 1, ServeError: 1}
    for cls, code in expected.items():
        assert issubclass(cls, FeaturelineError)

        @handle_errors
        def command(cls=cls):
            raise cls(f"{cls.__name__} happened")

        with pytest.raises(typer.Exit) as e:
            command()
        assert e.value.exit_code == code, cls
        assert capsys.readouterr().err.strip() == f"error: {cls.__name__} happened"
    assert SpecError.exit_code == 1
