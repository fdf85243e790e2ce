"""A Redis that wants a password (its own redis-server, `--requirepass`): the password written as a
reference in the URL's userinfo or in `password:` connects, read from the environment at connect
time; the plan, its JSON and the CLI's errors never show it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.integration.faults import free_port

from featureline.compiler import compile_project
from featureline.online.store import OnlineStore

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PW = "s3cr3t-Rq7-pass"
URL = "redis://127.0.0.1:${FEATURELINE_REDIS_PORT:-6379}/0"


@pytest.fixture
def locked_redis(tmp_path):
    """A redis-server on a free port with `requirepass PW` and an ACL user alice (password PW-alice)."""
    import redis

    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PW, "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, password=PW, socket_timeout=2)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.execute_command("ACL", "SETUSER", "alice", "on", f">{PW}-alice", "~*", "+@all")
        yield port
    finally:
        proc.kill()
        proc.wait()


def _project(tmp_path: Path, online_store: str) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "featureline.yaml").write_text((REPO / "featureline.yaml").read_text().replace(f"  url: {URL}", online_store))
    shutil.copytree(REPO / "features", d / "features")
    shutil.copytree(REPO / "contracts", d / "contracts")
    return d


def _cli(*args, cwd, env):
    import featureline  # this checkout's, whatever the working directory

    env = {**env, "PYTHONPATH": os.pathsep.join([str(Path(featureline.__file__).parents[1]), env.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "featureline", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "online_store,var,value",
    [
        ("  url: redis://:${FL_TEST_REDIS_PW}@127.0.0.1:{port}/0", "FL_TEST_REDIS_PW", PW),
        ("  url: redis://alice:${FL_TEST_REDIS_PW}@127.0.0.1:{port}/0", "FL_TEST_REDIS_PW", f"{PW}-alice"),
        ("  url: redis://127.0.0.1:{port}/0\n  password: ${FL_TEST_REDIS_PW}", "FL_TEST_REDIS_PW", PW),
    ],
    ids=["userinfo", "acl-user", "password-setting"],
)
def test_a_password_reference_connects_and_is_never_shown(tmp_path, monkeypatch, locked_redis, online_store, var, value):
    import redis

    where = "password" if "password:" in online_store else "url"
    d = _project(tmp_path, online_store.replace("{port}", str(locked_redis)))
    monkeypatch.setenv(var, value)
    plan = compile_project(d)
    assert value not in repr(plan.project)
    assert OnlineStore(plan).client.ping() is True

    env = {**os.environ, var: value}
    out = _cli("plan", "--format", "json", cwd=d, env=env)
    assert out.returncode == 0, out.stderr
    assert value not in out.stdout and PW not in out.stdout
    assert out.stdout.count(var) == 1  # the reference, by name

    monkeypatch.setenv(var, "wrong-password")  # rotated on the server, not here: refused, and said without it
    with pytest.raises(redis.AuthenticationError):
        OnlineStore(compile_project(d)).client.ping()
    got = _cli("get", "-s", "fraud_detection", "-e", "user_id=1", "-e", "merchant_id=2", cwd=d, env={**env, var: "wrong-password"})
    assert got.returncode == 1 and f"127.0.0.1:{locked_redis}" in got.stderr, got.stderr
    assert "wrong-password" not in got.stderr + got.stdout and PW not in got.stderr + got.stdout

    unset = {k: v for k, v in env.items() if k != var}
    got = _cli("get", "-s", "fraud_detection", "-e", "user_id=1", "-e", "merchant_id=2", cwd=d, env=unset)
    assert got.returncode == 2
    assert f"error: the Redis password (online_store.{where} in featureline.yaml) is read from environment variable `{var}`, which is not set here" in got.stderr
