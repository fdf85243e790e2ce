"""Private Redis and Kafka instances for fault tests: kill, stall, wipe,
rewind and restart them without touching the shared dev services.

    from tests.integration.faults import KafkaCluster, PrivateKafka, PrivateRedis

    with PrivateRedis(tmp_path / "redis") as r:        # AOF everysec, free port
        r.client().set("k", "v")
        r.kill9(); r.start()                           # restarts from its AOF
        snap = r.snapshot()                            # copy of the AOF dir
        r.client().set("k", "newer")
        r.restore(snap)                                # kill -9, back in time
        r.pause(); r.resume()                          # SIGSTOP / SIGCONT
        r.restart_empty()                              # lost all its data

    with KafkaCluster(tmp_path / "kafka") as c:        # 3 nodes, RF 3, min ISR 2
        c.create_topic("t", partitions=1)
        old = c.leader("t", 0)
        c.kill9(old)
        new = c.wait_leader("t", 0, not_on={old})
        c.start(old)                                   # rejoins
        c.wait_isr("t")                                # ISR back to 3

The processes are what ``scripts/services run redis|kafka`` and
``scripts/services cluster run N`` start (the same flags and config
templates as the dev services), on free loopback ports outside the kernel's
ephemeral range, with all state in a directory of their own (a temporary one
unless given). Each server process is a child of the test process: it gets
SIGKILL when the thread that started it dies (PR_SET_PDEATHSIG), so a test
run that crashes leaves no servers behind. Start and stop them from the
main thread (pytest fixtures do).

The pytest fixtures ``private_redis``, ``private_kafka`` and
``kafka_cluster`` in tests/integration/conftest.py wrap these classes.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES_SCRIPT = REPO_ROOT / "scripts" / "services"
HOST = "127.0.0.1"
LOG_TAIL_LINES = 40

# Ports are picked in this range: below the kernel's ephemeral range
# (32768-60999 by default), so a client connection cannot hold them, and
# away from the dev services (6379, 9092, 9093) and the hand-run cluster
# (19092-19094, 19192-19194). FEATURELINE_FAULTS_PORTS="LOW-HIGH" overrides.
_PORT_RANGE = tuple(int(p) for p in os.environ.get("FEATURELINE_FAULTS_PORTS", "20000-32000").split("-"))


class ServiceError(RuntimeError):
    """A private service did not start or did not become usable."""


# ----------------------------------------------------------------- helpers


def _port_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


_handed_out: set[int] = set()


def free_port(host: str = HOST, exclude: Iterable[int] = ()) -> int:
    """A loopback port nothing listens on, from FEATURELINE_FAULTS_PORTS."""
    low, high = _PORT_RANGE
    skip = set(exclude) | _handed_out
    for _ in range(200):
        port = random.randrange(low, high)
        if port not in skip and _port_free(port, host):
            _handed_out.add(port)
            return port
    raise ServiceError(f"no free port found in {low}-{high}")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log file {path})"
    return f"----- last {min(lines, len(text))} lines of {path} -----\n" + "\n".join(text[-lines:])


_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent (thread) dies."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# JVM options of the test brokers: C1 only starts and restarts a broker about
# twice as fast on a small machine (throughput does not matter here).
# FEATURELINE_KAFKA_JAVA_OPTS overrides.
TEST_JAVA_OPTS = "-XX:TieredStopAtLevel=1"


def _kafka_env(java_opts: str | None = None) -> dict[str, str]:
    """Where the Kafka jars and the Maven cache are (the repo's, or the
    env's), and the JVM options."""
    env = {}
    env["FEATURELINE_KAFKA_JAVA_OPTS"] = java_opts if java_opts is not None else os.environ.get("FEATURELINE_KAFKA_JAVA_OPTS", TEST_JAVA_OPTS)
    # The dev services' state dir, where `scripts/services up` put the jars.
    shared = Path(os.environ.get("FEATURELINE_SERVICES_DIR", REPO_ROOT / ".services")) / "kafka"
    env["FEATURELINE_KAFKA_LIBS"] = os.environ.get("FEATURELINE_KAFKA_LIBS", str(shared / "libs"))
    env["FEATURELINE_MAVEN_REPO"] = os.environ.get("FEATURELINE_MAVEN_REPO", str(shared / "m2"))
    return env


def _load_health():
    """services/kafka/health.py, the check scripts/services uses too."""
    spec = importlib.util.spec_from_file_location("featureline_kafka_health", REPO_ROOT / "services" / "kafka" / "health.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


_health = _load_health()
NotHealthy = _health.NotHealthy


class _Process:
    """One server started with ``scripts/services run ...``; the script execs
    into the server, so ``pid`` is the server's. Restartable."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.paused = False
        # Down because a test asked (kill9/stop), not because it crashed.
        self.meant_down = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            log.write(f"\n----- {time.strftime('%H:%M:%S')} faults.py starts {self.name} -----\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # no terminal signals (Ctrl-C) straight to the server
                preexec_fn=_die_with_parent,
            )
        self.paused = False
        self.meant_down = False

    def exited_error(self, what: str) -> ServiceError:
        code = self.proc.returncode if self.proc is not None else None
        return ServiceError(f"{self.name} exited (status {code}) {what}\n{log_tail(self.log_path)}")

    def send_signal(self, sig: int) -> None:
        if self.running:
            os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        self.meant_down = True
        if self.proc is None:
            return
        if self.running:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.paused = False

    def stop(self, timeout: float) -> None:
        """SIGTERM (each server's clean shutdown); SIGKILL after ``timeout``."""
        self.meant_down = True
        if not self.running:
            self.kill9()  # reap
            return
        if self.paused:
            self.resume()
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise ServiceError(f"{self.name} did not stop within {timeout}s of SIGTERM; killed it\n{log_tail(self.log_path)}") from None

    def pause(self) -> None:
        if not self.running:
            raise ServiceError(f"{self.name} is not running")
        os.kill(self.proc.pid, signal.SIGSTOP)
        # Wait until the kernel has stopped it (state T in /proc/PID/stat).
        for _ in range(200):
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] in ("T", "t"):
                    break
            time.sleep(0.01)
        self.paused = True

    def resume(self) -> None:
        if self.running:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def exec_done(self, marker: str) -> bool:
        """True once the script has exec'd the server (its command line shows ``marker``)."""
        if not self.running:
            return False
        try:
            return marker in Path(f"/proc/{self.proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False


# ----------------------------------------------------------------- redis


@dataclass(frozen=True)
class RedisSnapshot:
    """A copy of a PrivateRedis's data dir (its AOF), see PrivateRedis.snapshot()."""

    path: Path
    taken_at: float
    dbsize: int


class PrivateRedis:
    """A redis-server of its own: AOF everysec (as scripts/services runs it),
    on a free loopback port, with its AOF under ``base_dir``.

    ``start()`` starts it, or restarts it from the same AOF; ``kill9()``,
    ``stop()``, ``pause()``/``resume()``, ``restart_empty()`` and
    ``snapshot()``/``restore()`` are the faults. As a context manager it
    starts on enter and is killed (and its temporary dir removed) on exit.
    """

    def __init__(self, base_dir: str | Path | None = None, *, port: int | None = None, host: str = HOST, start_timeout: float = 15.0) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="featureline-redis-"))
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout = start_timeout
        # The layout of scripts/services: <state>/redis/<port>/appendonlydir.
        self.data_dir = self.base_dir / "redis" / str(self.port)
        self.log_path = self.base_dir / "redis" / "redis.log"
        self._snapshots = 0
        self._process = _Process(
            f"redis-server {host}:{self.port}",
            [str(SERVICES_SCRIPT), "run", "redis"],
            {
                "FEATURELINE_SERVICES_DIR": str(self.base_dir),
                "FEATURELINE_REDIS_HOST": host,
                "FEATURELINE_REDIS_PORT": str(self.port),
            },
            self.log_path,
        )

    # --- where
    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.running

    @property
    def paused(self) -> bool:
        return self._process.paused

    def client(self, *, retries: int = 0, **kwargs):
        """A redis.Redis for this server: socket timeouts 5 s unless given,
        and no retries unless given (redis-py retries 3 times with backoff by
        default, which hides the faults a test is looking at)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 5)
        kwargs.setdefault("retry", Retry(NoBackoff(), retries))
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    # --- lifecycle
    def start(self) -> PrivateRedis:
        """Start (from the AOF in ``data_dir``, if any) and wait for PING."""
        if self.running:
            return self
        self._process.start()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        import redis

        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            if not self.running:
                raise self._process.exited_error("during startup")
            client = self.client(socket_timeout=1, socket_connect_timeout=1)
            try:
                if client.ping():
                    return
            except redis.exceptions.BusyLoadingError as exc:  # still replaying the AOF
                last = str(exc)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            finally:
                client.close()
            if time.monotonic() >= deadline:
                raise ServiceError(f"redis on {self.host}:{self.port} did not answer PING within {timeout}s ({last})\n{log_tail(self.log_path)}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown (SIGTERM: Redis fsyncs the AOF and exits)."""
        self._process.stop(timeout)

    def kill9(self) -> None:
        """SIGKILL, and wait until it is gone. The AOF keeps what was written
        to it: normally every acknowledged write, but while a slow disk is
        still busy with the last fsync Redis replies first and writes up to
        2 s later (appendfsync everysec). Call wait_aof_written() first when
        a test needs "every acknowledged write survives"."""
        self._process.kill9()

    def wait_aof_written(self, timeout: float = 10.0, *, fsynced: bool = False) -> None:
        """Until everything Redis acknowledged is written to the AOF (its AOF
        buffer is empty): then a kill -9 loses nothing. With ``fsynced``,
        also until no background fsync is pending (an OS crash would lose
        nothing either)."""
        client = self.client(decode_responses=True)
        deadline = time.monotonic() + timeout
        try:
            while True:
                info = client.info("persistence")
                if info.get("aof_buffer_length", 0) == 0 and not (fsynced and info.get("aof_pending_bio_fsync", 0)):
                    return
                if time.monotonic() >= deadline:
                    raise ServiceError(f"AOF not written after {timeout}s: {info}")
                time.sleep(0.02)
        finally:
            client.close()

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, Redis never answers."""
        self._process.pause()

    def resume(self) -> None:
        """SIGCONT after pause()."""
        self._process.resume()

    def restart_empty(self) -> None:
        """kill -9, delete its data, start: a store that lost everything."""
        self.kill9()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.start()

    def snapshot(self) -> RedisSnapshot:
        """Copy the data dir while Redis runs: first BGREWRITEAOF (and wait
        for it), so the copy is a compact base RDB plus a short increment,
        with automatic rewrites off while copying. The copy holds every write
        acknowledged before the call (Redis writes the AOF before it
        replies, unless a slow disk makes it hold writes back for up to 2 s);
        writes made concurrently may or may not be in it, and a torn last
        command is dropped on load (aof-load-truncated)."""
        if not self.running or self.paused:
            raise ServiceError("snapshot() needs a running, unpaused Redis")
        client = self.client(decode_responses=True, socket_timeout=30)
        try:
            old_pct = client.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"]
            client.config_set("auto-aof-rewrite-percentage", 0)
            try:
                self._rewrite_aof(client)
                dbsize = client.dbsize()
                self._snapshots += 1
                dest = self.base_dir / "snapshots" / f"{self.port}-{self._snapshots}"
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(self.data_dir, dest)
            finally:
                client.config_set("auto-aof-rewrite-percentage", old_pct)
        finally:
            client.close()
        return RedisSnapshot(dest, time.time(), dbsize)

    def _rewrite_aof(self, client, timeout: float = 30.0) -> None:
        import redis

        try:
            client.bgrewriteaof()
        except redis.exceptions.ResponseError as exc:  # one already running: wait for it, then ours
            if "in progress" not in str(exc):
                raise
        deadline = time.monotonic() + timeout
        while True:
            info = client.info("persistence")
            if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                break
            if time.monotonic() >= deadline:
                raise ServiceError(f"BGREWRITEAOF did not finish within {timeout}s\n{log_tail(self.log_path)}")
            time.sleep(0.02)
        if info.get("aof_last_bgrewrite_status") != "ok":
            raise ServiceError(f"BGREWRITEAOF failed ({info.get('aof_last_bgrewrite_status')})\n{log_tail(self.log_path)}")

    def restore(self, snap: RedisSnapshot) -> None:
        """kill -9, put the snapshot's data dir back, start: Redis went back
        in time (like a failover to a replica that lagged)."""
        self.kill9()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.copytree(snap.path, self.data_dir)
        self.start()

    def close(self) -> None:
        self.kill9()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrivateRedis({self.url}, pid={self.pid}, dir={self.data_dir})"


# ----------------------------------------------------------------- kafka


def _wait_exec(process: _Process, marker: str, timeout: float = 900.0) -> None:
    """Wait until the script has prepared (jars fetched once, storage
    formatted) and exec'd the broker; the start timeout counts from then."""
    deadline = time.monotonic() + timeout
    while not process.exec_done(marker):
        if not process.running:
            raise process.exited_error("before the broker started")
        if time.monotonic() >= deadline:
            raise ServiceError(f"{process.name}: scripts/services did not start the broker within {timeout}s\n{log_tail(process.log_path)}")
        time.sleep(0.1)


# On top of the dev broker's config: it restarts faster (after a kill -9 the
# new process can only register once the old one's session has expired),
# and the log cleaner's dedupe buffer (128 MB in one piece by default) fits
# a small heap, as in services/kafka/cluster.properties.in.
PRIVATE_KAFKA_CONFIG = {
    "broker.session.timeout.ms": "6000",
    "broker.heartbeat.interval.ms": "1000",
    "log.cleaner.dedupe.buffer.size": "16777216",
}


def _properties(config: dict[str, str]) -> str:
    """key=value lines for FEATURELINE_KAFKA_EXTRA_PROPERTIES."""
    for key, value in config.items():
        if "\n" in f"{key}{value}" or "=" in key:
            raise ValueError(f"bad broker config {key!r}={value!r}")
    return "\n".join(f"{k}={v}" for k, v in config.items())


def _admin(bootstrap: str):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="featureline-faults", request_timeout_ms=5000, bootstrap_timeout_ms=5000)


class PrivateKafka:
    """One broker of its own (the dev single-node config,
    services/kafka/server.properties.in), on free loopback ports, with its
    data under ``base_dir``: ``kill9()`` then ``start()`` keeps the data."""

    def __init__(
        self,
        base_dir: str | Path | None = None,
        *,
        host: str = HOST,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "256m",
        start_timeout: float = 90.0,
        extra_config: dict[str, str] | None = None,
        java_opts: str | None = None,
    ) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="featureline-kafka-"))
        self.host = host
        self.port = port or free_port(host)
        self.controller_port = controller_port or free_port(host, exclude={self.port})
        self.start_timeout = start_timeout
        self.log_path = self.base_dir / "kafka" / "server.log"
        self.data_dir = self.base_dir / "kafka" / "data"
        self._process = _Process(
            f"kafka broker {host}:{self.port}",
            [str(SERVICES_SCRIPT), "run", "kafka"],
            {
                **_kafka_env(java_opts),
                "FEATURELINE_SERVICES_DIR": str(self.base_dir),
                "FEATURELINE_KAFKA_HOST": host,
                "FEATURELINE_KAFKA_PORT": str(self.port),
                "FEATURELINE_KAFKA_CONTROLLER_PORT": str(self.controller_port),
                "FEATURELINE_KAFKA_HEAP": heap,
                "FEATURELINE_KAFKA_EXTRA_PROPERTIES": _properties({**PRIVATE_KAFKA_CONFIG, **(extra_config or {})}),
            },
            self.log_path,
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.running

    def start(self, *, wait: bool = True) -> PrivateKafka:
        if not self.running:
            self._process.start()
        if wait:
            _wait_exec(self._process, "kafka.Kafka")
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Until a message produced with acks=all is read back and a group
        offset commit works (services/kafka/health.py)."""
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise self._process.exited_error("while waiting for it to be healthy")
            try:
                _health.check(self.bootstrap, timeout_s=min(15.0, max(1.0, deadline - time.monotonic())))
                return
            except NotHealthy as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise ServiceError(f"kafka on {self.bootstrap} not healthy within {timeout}s ({last})\n{log_tail(self.log_path)}")
            time.sleep(0.5)

    def stop(self, timeout: float = 60.0) -> None:
        """Controlled shutdown (SIGTERM)."""
        self._process.stop(timeout)

    def kill9(self) -> None:
        self._process.kill9()

    def pause(self) -> None:
        self._process.pause()

    def resume(self) -> None:
        self._process.resume()

    def admin(self):
        return _admin(self.bootstrap)

    def close(self) -> None:
        self.kill9()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PrivateKafka:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrivateKafka({self.bootstrap}, pid={self.pid}, dir={self.base_dir})"


class KafkaCluster:
    """Three combined broker + controller nodes (ids 1, 2, 3) of their own,
    from services/kafka/cluster.properties.in: replication factor 3,
    min.insync.replicas 2, no unclean leader election, a dead broker fenced
    after 6 s. Any one node may be killed; two keep the controller quorum.

    ``start()`` starts every node that is not running and waits until the
    cluster is healthy; ``start(n)``, ``stop(n)``, ``kill9(n)``,
    ``pause(n)``/``resume(n)`` act on one node; ``leader()``, ``isr()``,
    ``wait_leader()``, ``wait_isr()`` read the cluster's metadata.
    """

    NODES = (1, 2, 3)

    def __init__(
        self,
        base_dir: str | Path | None = None,
        *,
        host: str = HOST,
        ports: Iterable[int] | None = None,
        controller_ports: Iterable[int] | None = None,
        heap: str = "256m",
        start_timeout: float = 120.0,
        extra_config: dict[str, str] | None = None,
        java_opts: str | None = None,
    ) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="featureline-kafka-cluster-"))
        self.host = host
        taken: set[int] = set()

        def pick(given: Iterable[int] | None) -> list[int]:
            out = list(given) if given is not None else []
            while len(out) < len(self.NODES):
                out.append(free_port(host, exclude=taken | set(out)))
            taken.update(out)
            return out

        self.ports = dict(zip(self.NODES, pick(ports), strict=True))
        self.controller_ports = dict(zip(self.NODES, pick(controller_ports), strict=True))
        self.start_timeout = start_timeout
        env = {
            **_kafka_env(java_opts),
            "FEATURELINE_SERVICES_DIR": str(self.base_dir),
            "FEATURELINE_KAFKA_CLUSTER_HOST": host,
            "FEATURELINE_KAFKA_CLUSTER_PORTS": ",".join(str(self.ports[n]) for n in self.NODES),
            "FEATURELINE_KAFKA_CLUSTER_CONTROLLER_PORTS": ",".join(str(self.controller_ports[n]) for n in self.NODES),
            "FEATURELINE_KAFKA_CLUSTER_HEAP": heap,
            "FEATURELINE_KAFKA_EXTRA_PROPERTIES": _properties(extra_config or {}),
        }
        self._nodes = {
            n: _Process(
                f"kafka-cluster node {n} ({host}:{self.ports[n]})",
                [str(SERVICES_SCRIPT), "cluster", "run", str(n)],
                env,
                self.node_dir(n) / "server.log",
            )
            for n in self.NODES
        }

    # --- where
    def node_dir(self, node: int) -> Path:
        return self.base_dir / "kafka-cluster" / f"node-{node}"

    def address(self, node: int) -> str:
        return f"{self.host}:{self.ports[self._check(node)]}"

    @property
    def bootstrap(self) -> str:
        """All three brokers, for clients (they find the live ones)."""
        return ",".join(self.address(n) for n in self.NODES)

    def _live_bootstrap(self) -> str:
        nodes = [n for n in self.running_nodes() if not self._nodes[n].paused] or list(self.NODES)
        return ",".join(self.address(n) for n in nodes)

    def pid(self, node: int) -> int | None:
        return self._nodes[self._check(node)].pid

    def running(self, node: int) -> bool:
        return self._nodes[self._check(node)].running

    def running_nodes(self) -> list[int]:
        return [n for n in self.NODES if self._nodes[n].running]

    def log_path(self, node: int) -> Path:
        return self._nodes[self._check(node)].log_path

    def _check(self, node: int) -> int:
        if node not in self.NODES:
            raise ValueError(f"no node {node!r} (nodes are {self.NODES})")
        return node

    # --- lifecycle
    def start(self, node: int | None = None, *, wait: bool = True) -> KafkaCluster:
        """Start one node (or every node not running) and, with ``wait``,
        wait until every running node is registered and acks=all produce
        and consume work. A restarted node catches up on its own: use
        wait_isr() to wait until it is back in the ISR."""
        nodes = list(self.NODES) if node is None else [self._check(node)]
        for n in nodes:
            self._nodes[n].start()
        if wait:
            for n in nodes:
                _wait_exec(self._nodes[n], "kafka.Kafka")
            self.wait_healthy()
        return self

    def stop(self, node: int, timeout: float = 60.0) -> None:
        """Controlled shutdown of one node (SIGTERM: leadership moves first)."""
        self._nodes[self._check(node)].stop(timeout)

    def kill9(self, node: int) -> None:
        """SIGKILL one node, and wait until it is gone."""
        self._nodes[self._check(node)].kill9()

    def pause(self, node: int) -> None:
        """SIGSTOP one node: its sockets accept, it answers nothing, it stops
        heartbeating (fenced after broker.session.timeout.ms, 6 s)."""
        self._nodes[self._check(node)].pause()

    def resume(self, node: int) -> None:
        self._nodes[self._check(node)].resume()

    def close(self) -> None:
        """Kill every node (the data is thrown away with a temporary dir)."""
        for n in self.NODES:
            self._nodes[n].kill9()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> KafkaCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    # --- health and metadata
    def wait_healthy(self, timeout: float | None = None, *, full_isr: bool = False) -> None:
        """Until every running node is registered (not fenced) and a message
        produced with acks=all is read back (services/kafka/health.py); with
        ``full_isr``, also until every partition of every topic has all its
        replicas in sync."""
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            for n in self.NODES:
                p = self._nodes[n]
                if p.proc is not None and not p.running and not p.meant_down:
                    raise p.exited_error("while waiting for the cluster")
            running = [n for n in self.running_nodes() if not self._nodes[n].paused]
            try:
                if not running:
                    raise NotHealthy("no node is running")
                _health.check(self._live_bootstrap(), brokers=set(running), timeout_s=min(15.0, max(1.0, deadline - time.monotonic())))
                if full_isr:
                    lagging = self._partitions_not_in_sync()
                    if lagging:
                        raise NotHealthy(f"partitions with replicas out of sync: {lagging[:5]}")
                return
            except NotHealthy as exc:
                last = str(exc)
            except Exception as exc:  # noqa: BLE001 - metadata read failed: not yet
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                tails = "\n".join(log_tail(self.log_path(n), 15) for n in self.NODES)
                raise ServiceError(f"kafka cluster {self.bootstrap} not healthy within {timeout}s ({last})\n{tails}")
            time.sleep(0.5)

    def admin(self):
        """A KafkaAdminClient bootstrapped from the running nodes (close it)."""
        return _admin(self._live_bootstrap())

    def describe(self, topics: list[str] | None = None, timeout: float = 20.0) -> list[dict]:
        """describe_topics() from a fresh admin client, retried until ``timeout``
        (the first broker tried may be one that just died)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                admin = self.admin()
                try:
                    return admin.describe_topics(topics)
                finally:
                    admin.close()
            except Exception as exc:  # noqa: BLE001
                if time.monotonic() >= deadline:
                    raise ServiceError(f"describe_topics({topics}) failed for {timeout}s: {type(exc).__name__}: {exc}") from exc
                time.sleep(0.3)

    def partition(self, topic: str, partition: int = 0) -> dict:
        """The partition's metadata: leader_id, leader_epoch, replica_nodes, isr_nodes."""
        [t] = self.describe([topic])
        for p in t["partitions"]:
            if p["partition_index"] == partition:
                return p
        raise ServiceError(f"{topic} has no partition {partition} (error_code {t['error_code']})")

    def leader(self, topic: str, partition: int = 0) -> int:
        """The partition's leader's node id, -1 if it has none. Right after a
        kill the old leader is still named until it is fenced: see wait_leader()."""
        return self.partition(topic, partition)["leader_id"]

    def isr(self, topic: str, partition: int = 0) -> list[int]:
        return sorted(self.partition(topic, partition)["isr_nodes"])

    def wait_leader(self, topic: str, partition: int = 0, *, not_on: Iterable[int] = (), timeout: float = 60.0) -> int:
        """Until the partition has a leader that is running and not in ``not_on``."""
        avoid = set(not_on)
        deadline = time.monotonic() + timeout
        while True:
            info = self.partition(topic, partition)
            leader = info["leader_id"]
            if leader >= 0 and leader not in avoid and self.running(leader):
                return leader
            if time.monotonic() >= deadline:
                raise ServiceError(f"{topic}[{partition}] has no new leader after {timeout}s (now {info})")
            time.sleep(0.2)

    def wait_isr(self, topic: str, partition: int | None = None, *, size: int | None = None, timeout: float = 90.0) -> None:
        """Until the ISR of the partition (every partition if None) has
        ``size`` replicas (default: all its replicas)."""
        deadline = time.monotonic() + timeout
        while True:
            [t] = self.describe([topic])
            bad = [
                (p["partition_index"], sorted(p["isr_nodes"]), sorted(p["replica_nodes"]))
                for p in t["partitions"]
                if (partition is None or p["partition_index"] == partition)
                and len(p["isr_nodes"]) < (size if size is not None else len(p["replica_nodes"]))
            ]
            if t["partitions"] and not bad:
                return
            if time.monotonic() >= deadline:
                raise ServiceError(f"{topic}: ISR not back after {timeout}s (partition, isr, replicas): {bad}")
            time.sleep(0.3)

    def _partitions_not_in_sync(self) -> list[tuple[str, int, list[int], list[int]]]:
        out = []
        for t in self.describe(None):
            for p in t["partitions"]:
                if set(p["isr_nodes"]) != set(p["replica_nodes"]) or p["leader_id"] < 0:
                    out.append((t["name"], p["partition_index"], sorted(p["isr_nodes"]), sorted(p["replica_nodes"])))
        return out

    def create_topic(self, name: str, partitions: int = 1, replication: int = 3, configs: dict[str, str] | None = None) -> str:
        """Create a topic (replication 3 unless told) and wait for its leaders."""
        admin = self.admin()
        try:
            admin.create_topics(
                {name: {"num_partitions": partitions, "replication_factor": replication, "configs": configs or {}}},
                wait_for_metadata=True,
            )
        finally:
            admin.close()
        for p in range(partitions):
            self.wait_leader(name, p, timeout=30)
        return name

    def __repr__(self) -> str:
        return f"KafkaCluster({self.bootstrap}, running={self.running_nodes()}, dir={self.base_dir})"


@contextlib.contextmanager
def paused(service, *args) -> Iterator[None]:
    """``with paused(redis):`` / ``with paused(cluster, 2):`` — SIGSTOP for the block."""
    service.pause(*args)
    try:
        yield
    finally:
        service.resume(*args)
