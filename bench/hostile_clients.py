"""`featureline serve` under a bad client: well-behaved clients' latency, clean and with one hostile client mixed in.

    .venv/bin/python bench/hostile_clients.py [--serve-src DIR ...] [--rate 500] [--seconds 20] [--clients 8]

Data: the generator's history (--events, --users, 7 days ending now) backfilled into Redis db
--db under the key prefix `flhostile` (deleted at the end), with the repo's features and
contracts. Each server is `python -m featureline serve --workers 1` on a free loopback port, the
featureline of this checkout, or of each --serve-src DIR (`PYTHONPATH=DIR/src`) for an A/B of
two commits in one run (e.g. a `git worktree add /tmp/old <commit>`).

Per server, the cases (each --seconds long, after 2 s for the hostile client to set up):
  clean       --clients keep-alive connections sending 1-entity reads of `fraud_detection`
              (one user + one merchant) at --rate requests/s in all, open loop: request i is due at
              t0 + i/rate on connection i % clients; latency counts from that due time (a request
              waiting behind a slow one on its connection counts its wait).
  slowloris   + one process holding --slowloris connections, each trickling a request head one
              byte a second and never finishing it (a closed one is reopened).
  big-body    + one process sending 40 MiB chunked bodies back to back on one connection at a time
              and, alongside, one connection at a time announcing a 1 GiB Content-Length and
              sending nothing; each waits for its answer (413) and reconnects at once.
  body-flood  + the same two senders not waiting for answers: 2 MiB of a chunked body, or the
              1 GiB head, then close and reconnect (a connection flood: a rate limiter's job).
  heavy-read  + one connection sending 1000-entity reads of `fraud_detection` back to back.
Also, every 0.5 s, GET /health on a new connection (is the server still taking clients?); the
server's CPU and peak RSS over the case; the lines it logged.

Prints a table: p50/p99/max of the good clients (from the due time), p99 / clean p99, their
service time (from writing the request to its answer: at 500/s over 8 connections, a connection
falls behind once its requests take over 16 ms), errors, /health latency and failures, and what
the hostile client saw. No asserts: the issue's target is good p99 within 2x
of clean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from online_bench import _read_response as read_response  # bench/ is the script's directory

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "flhostile"
MIB = 1 << 20
CASES = ("clean", "slowloris", "big-body", "body-flood", "heavy-read")
OPEN = b'{"service": "fraud_detection", "entities": ['  # a body's start


def log(msg: str) -> None:
    print(f"[hostile {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return math.nan
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- HTTP over asyncio streams ------------------------------------------------------------------


def post(port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def connect(port: int):
    """(reader, writer) of a new loopback connection, or None (after a pause) if refused or slow."""
    try:
        return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except Exception:
        await asyncio.sleep(0.5)
        return None


def _count(d: dict, k: str) -> None:
    d[k] = d.get(k, 0) + 1


async def good_clients(port: int, bodies: list[bytes], rate: float, seconds: float, clients: int) -> dict:
    """Open loop at `rate` over `clients` keep-alive connections, plus the /health probe."""
    reqs = [post(port, "/features/online", b) for b in bodies]
    n = int(rate * seconds)
    clock = time.perf_counter
    t0 = clock() + 0.1
    lat: list[float] = []
    svc: list[float] = []  # from writing the request to the end of its answer
    errors: dict[str, int] = {}

    async def client(c: int) -> None:
        conn = None
        for i in range(c, n, clients):
            due = t0 + i / rate
            if (d := due - clock()) > 0:
                await asyncio.sleep(d)
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
                reader, writer = conn
                ts = clock()
                writer.write(reqs[i % len(reqs)])
                status = await asyncio.wait_for(read_response(reader), 10)
                svc.append((clock() - ts) * 1e6)
                if status != 200:
                    _count(errors, str(status))
            except Exception as e:
                _count(errors, type(e).__name__)
                if conn is not None:
                    conn[1].close()
                conn = None
            lat.append((clock() - due) * 1e6)
        if conn is not None:
            conn[1].close()

    health: list[float] = []
    health_errors: dict[str, int] = {}

    async def probe() -> None:
        end = t0 + seconds
        while clock() < end:
            ts = clock()
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
                writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                status = await asyncio.wait_for(read_response(reader), 5)
                writer.close()
                if status != 200:
                    _count(health_errors, str(status))
                health.append((clock() - ts) * 1e6)
            except Exception as e:
                _count(health_errors, type(e).__name__)
            await asyncio.sleep(max(0.0, 0.5 - (clock() - ts)))

    await asyncio.gather(*(client(c) for c in range(clients)), probe())
    wall = clock() - t0
    return {
        "requests": n,
        "rps": len(lat) / wall,
        "p50_us": pct(lat, 0.5),
        "p99_us": pct(lat, 0.99),
        "max_us": max(lat, default=math.nan),
        "svc_p50_us": pct(svc, 0.5),
        "svc_p99_us": pct(svc, 0.99),
        "errors": errors,
        "health_p50_us": pct(health, 0.5),
        "health_max_us": max(health, default=math.nan),
        "health_ok": len(health) - sum(health_errors.get(k, 0) for k in health_errors if k.isdigit()),
        "health_errors": health_errors,
    }


# --- the hostile clients (each in a process of its own: `--hostile KIND`) -------------------------


async def slowloris(port: int, seconds: float, conns: int) -> dict:
    """`conns` connections trickling a head one byte a second; lifetimes of those the server closed."""
    head = b"POST /features/online HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 10_000
    clock = time.perf_counter
    end = clock() + seconds
    lifetimes: list[float] = []  # of connections the server closed
    ages: list[float] = []  # of those still open at the end
    answers: dict[str, int] = {}
    refused = 0

    async def one() -> None:
        nonlocal refused
        while clock() < end:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            except Exception:
                refused += 1
                await asyncio.sleep(1)
                continue
            start = clock()
            closed = False
            try:
                for b in head:
                    if clock() >= end:
                        break
                    writer.write(bytes([b]))
                    await writer.drain()
                    try:  # one second, or the server's answer / close
                        data = await asyncio.wait_for(reader.read(4096), 1.0)
                    except TimeoutError:
                        continue
                    if data:
                        _count(answers, data.split(b" ", 2)[1].decode(errors="replace") if data.startswith(b"HTTP/") else "other")
                    closed = True
                    break
            except (ConnectionError, OSError):
                closed = True
            (lifetimes if closed else ages).append(clock() - start)
            writer.close()

    await asyncio.gather(*(one() for _ in range(conns)))
    return {
        "open_at_end": len(ages),
        "open_at_end_age_min_s": min(ages, default=math.nan),
        "closed_by_server": len(lifetimes),
        "lifetime_p50_s": pct(lifetimes, 0.5),
        "lifetime_max_s": max(lifetimes, default=math.nan),
        "answers": answers,
        "connect_failures": refused,
    }


async def big_body(port: int, seconds: float) -> dict:
    """One client with oversized bodies: 40 MiB chunked bodies back to back on one connection at a
    time, and alongside, one connection at a time announcing 1 GiB that never comes (each refused
    one reconnects at once). Not a connection flood: 20 such connections in parallel made ~1,800
    requests/s, most of what one worker serves, which is a rate limiter's job in front."""
    clock = time.perf_counter
    end = clock() + seconds
    out = {"bodies": 0, "body_answers": {}, "mib_sent_before_answer": [], "huge_cl": 0, "huge_cl_answers": {}, "huge_cl_wait_s": []}
    chunk = b" " * (64 << 10)
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"

    async def chunked() -> None:
        while clock() < end:
            conn = await connect(port)
            if conn is None:
                continue
            reader, writer = conn
            sent = 0
            answer = asyncio.ensure_future(read_response(reader))
            try:
                writer.write(
                    b"POST /features/online HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                writer.write(b"%x\r\n%s\r\n" % (len(OPEN), OPEN))
                while sent < 40 * MIB and not answer.done() and clock() < end:
                    writer.write(frame)
                    await writer.drain()
                    sent += len(chunk)
                if not answer.done():
                    writer.write(b"2\r\n]}\r\n0\r\n\r\n")
                    await writer.drain()
                status = await asyncio.wait_for(answer, max(1.0, end - clock() + 5))
                _count(out["body_answers"], str(status))
            except (ConnectionError, asyncio.IncompleteReadError):  # the server hung up on the body
                got = answer.done() and not answer.cancelled() and answer.exception() is None
                _count(out["body_answers"], f"{answer.result()} then closed" if got else "closed")
            except Exception as e:
                _count(out["body_answers"], type(e).__name__)
            if not answer.done():
                answer.cancel()
            elif not answer.cancelled():
                answer.exception()  # retrieved: no "never retrieved" warning
            out["bodies"] += 1
            out["mib_sent_before_answer"].append(sent / MIB)
            writer.close()

    async def huge_cl() -> None:
        while clock() < end:
            conn = await connect(port)
            if conn is None:
                continue
            reader, writer = conn
            t = clock()
            writer.write(
                b"POST /features/online HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (1 << 30)
            )
            try:
                status = await asyncio.wait_for(read_response(reader), max(0.1, end - clock()))
                _count(out["huge_cl_answers"], str(status))
            except TimeoutError:
                _count(out["huge_cl_answers"], "no answer")
            except Exception as e:
                _count(out["huge_cl_answers"], type(e).__name__)
            out["huge_cl"] += 1
            out["huge_cl_wait_s"].append(clock() - t)
            writer.close()

    await asyncio.gather(chunked(), huge_cl())
    mib = out.pop("mib_sent_before_answer")
    waits = out.pop("huge_cl_wait_s")
    out["mib_sent_before_answer_p50"] = pct(mib, 0.5)
    out["huge_cl_wait_p50_s"] = pct(waits, 0.5)
    return out


async def body_flood(port: int, seconds: float) -> dict:
    """big_body's two senders without waiting for any answer: write, close, reconnect."""
    clock = time.perf_counter
    end = clock() + seconds
    frame = b"%x\r\n%s\r\n" % (64 << 10, b" " * (64 << 10))
    head = b"POST /features/online HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    out = {"bodies": 0, "huge_cl": 0, "errors": 0}

    async def sender(kind: str) -> None:
        while clock() < end:
            conn = await connect(port)
            if conn is None:
                continue
            _, writer = conn
            try:
                if kind == "bodies":
                    writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
                    for _ in range(32):
                        writer.write(frame)
                        await asyncio.wait_for(writer.drain(), 1.0)
                else:
                    writer.write(head + b"Content-Length: %d\r\n\r\n" % (1 << 30))
                    await writer.drain()
                out[kind] += 1
            except (ConnectionError, TimeoutError):
                out["errors"] += 1
            writer.transport.abort()

    await asyncio.gather(sender("bodies"), sender("huge_cl"))
    return out


async def heavy_read(port: int, seconds: float, users: int, merchants: int) -> dict:
    rng = random.Random(5)
    bodies = [
        json.dumps(
            {
                "service": "fraud_detection",
                "entities": [{"user_id": rng.randint(1, users), "merchant_id": rng.randint(1, merchants)} for _ in range(1000)],
            }
        ).encode()
        for _ in range(20)
    ]
    clock = time.perf_counter
    end = clock() + seconds
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lat, statuses = [], {}
    i = 0
    while clock() < end:
        t = clock()
        writer.write(post(port, "/features/online", bodies[i % len(bodies)]))
        _count(statuses, str(await read_response(reader)))
        lat.append((clock() - t) * 1e3)
        i += 1
    writer.close()
    return {"requests": i, "statuses": statuses, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)}


def hostile_main(a) -> None:
    if a.hostile == "slowloris":
        res = asyncio.run(slowloris(a.port, a.seconds, a.slowloris))
    elif a.hostile == "big-body":
        res = asyncio.run(big_body(a.port, a.seconds))
    elif a.hostile == "body-flood":
        res = asyncio.run(body_flood(a.port, a.seconds))
    else:
        res = asyncio.run(heavy_read(a.port, a.seconds, a.users, a.merchants))
    print(json.dumps(res))


# --- set-up and the server ------------------------------------------------------------------------


def setup_project(d: Path, a) -> None:
    import datetime as dt

    from featureline.batch.engine import BatchEngine
    from featureline.batch.online_backfill import rebuild_online
    from featureline.compiler import compile_project
    from featureline.generator import write_history
    from featureline.online.store import OnlineStore

    text = (ROOT / "featureline.yaml").read_text().replace("key_prefix: fl", f"key_prefix: {PREFIX}")
    text = text.replace("redis://127.0.0.1:${FEATURELINE_REDIS_PORT:-6379}/0", f"{a.redis_url}/{a.db}")
    if a.max_body:
        text += f"\nserve:\n  max_body: {a.max_body}\n"
    (d / "featureline.yaml").write_text(text)
    shutil.copytree(ROOT / "features", d / "features")
    shutil.copytree(ROOT / "contracts", d / "contracts")
    T = time.time_ns() // 1000
    t0 = time.perf_counter()
    write_history(d, events=a.events, users=a.users, merchants=a.merchants, days=7, end=dt.datetime.fromtimestamp(T / 1e6, dt.UTC))
    plan = compile_project(d)
    store = OnlineStore(plan)
    drop(store.client)
    rebuild_online(BatchEngine(plan), store, T)
    log(f"project: {a.events:,} events, {a.users:,} users, {a.merchants} merchants, backfilled in {time.perf_counter() - t0:.1f}s")


def drop(client) -> int:
    keys = list(client.scan_iter(f"{PREFIX}:*", count=5000))
    for i in range(0, len(keys), 5000):
        client.delete(*keys[i : i + 5000])
    return len(keys)


class Served:
    """`python -m featureline serve --workers 1` of a source dir (None: this interpreter's featureline)."""

    def __init__(self, src: str | None, project: Path, workdir: Path):
        self.src = src
        self.label = "this checkout" if src is None else Path(src).resolve().name
        self.port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if src is not None:
            env["PYTHONPATH"] = str(Path(src).resolve() / "src")
        self.log_path = workdir / f"serve_{self.port}.log"
        self.logf = open(self.log_path, "w")
        cmd = [
            sys.executable,
            "-m",
            "featureline",
            "serve",
            "--project",
            str(project),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        where = subprocess.run(
            [sys.executable, "-c", "import featureline; print(featureline.__file__)"], env=env, capture_output=True, text=True
        )
        self.where = where.stdout.strip()
        self.commit = ""
        if src is not None:
            c = subprocess.run(["git", "-C", src, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
            self.commit = c.stdout.strip()[:60]

    def wait_ready(self, timeout: float = 60) -> None:
        import urllib.request

        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {self.log_path.read_text()[-1500:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.3)
        raise SystemExit(f"server not ready: {self.log_path.read_text()[-1500:]}")

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def log_lines(self) -> int:
        self.logf.flush()
        return len(self.log_path.read_text(errors="replace").splitlines())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
        self.logf.close()


def proc_cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_s(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_case(srv: Served, case: str, a, bodies: list[bytes], client) -> dict:
    hostile = None
    if case != "clean":
        cmd = [sys.executable, __file__, "--hostile", case, "--port", str(srv.port), "--seconds", str(a.seconds + 3)]
        cmd += ["--slowloris", str(a.slowloris), "--users", str(a.users), "--merchants", str(a.merchants)]
        hostile = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        if a.pin:
            os.sched_setaffinity(hostile.pid, {1})
        time.sleep(2)  # its connections open
    if a.pin:
        os.sched_setaffinity(srv.proc.pid, {0})
    cpu0, rcpu0, lines0, t0 = srv.cpu_s(), redis_cpu_s(client), srv.log_lines(), time.perf_counter()
    hcpu0 = proc_cpu_s(hostile.pid) if hostile else 0.0
    rss = [srv.rss_mib()]
    done = False

    async def sample():
        while not done:
            rss.append(srv.rss_mib())
            await asyncio.sleep(0.25)

    async def both():
        nonlocal done
        s = asyncio.ensure_future(sample())
        try:
            return await good_clients(srv.port, bodies, a.rate, a.seconds, a.clients)
        finally:
            done = True
            await s

    res = asyncio.run(both())
    wall = time.perf_counter() - t0
    res["server_cpu_pct"] = 100 * (srv.cpu_s() - cpu0) / wall
    res["redis_cpu_pct"] = 100 * (redis_cpu_s(client) - rcpu0) / wall
    res["hostile_cpu_pct"] = 100 * (proc_cpu_s(hostile.pid) - hcpu0) / wall if hostile else 0.0
    res["server_rss_max_mib"] = max(rss)
    res["server_log_lines"] = srv.log_lines() - lines0
    res["load"] = os.getloadavg()[0]
    if hostile is not None:
        out, _ = hostile.communicate(timeout=a.seconds + 120)
        try:
            res["hostile"] = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            res["hostile"] = {"error": out[-300:]}
    time.sleep(1)
    return res


def fmt(us: float) -> str:
    if us is None or math.isnan(us):
        return "-"
    return f"{us:.0f} us" if us < 1000 else f"{us / 1000:.1f} ms"


def hostile_summary(case: str, h: dict, header_timeout: float | None) -> str:
    if not h:
        return ""
    if "error" in h:
        return f"error: {h['error']}"
    if case == "slowloris":
        return (
            f"open at the end {h['open_at_end']} (the youngest {h['open_at_end_age_min_s']:.0f}s old); "
            f"closed by the server {h['closed_by_server']} (lifetime p50 {h['lifetime_p50_s']:.1f}s, max {h['lifetime_max_s']:.1f}s), "
            f"answers {h['answers'] or '-'}, connect failures {h['connect_failures']}"
        )
    if case == "big-body":
        return (
            f"{h['bodies']} x 40 MiB chunked: {h['body_answers']} after {h['mib_sent_before_answer_p50']:.1f} MiB (p50); "
            f"{h['huge_cl']} x 1 GiB Content-Length: {h['huge_cl_answers']} in {h['huge_cl_wait_p50_s']:.2f}s (p50)"
        )
    if case == "body-flood":
        return f"{h['bodies']} x 2 MiB chunked, {h['huge_cl']} x 1 GiB heads, none waiting; {h['errors']} write errors"
    return f"{h['requests']} x 1000 entities: {h['statuses']}, p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve-src", action="append", default=[], help="serve this source dir's featureline (repeatable; A/B)")
    ap.add_argument("--rate", type=float, default=500.0, help="good clients' requests/s in all")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--slowloris", type=int, default=200, help="the slowloris client's connections")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--rounds", type=int, default=1, help="repeat every case; the servers take turns going first")
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--merchants", type=int, default=300)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:" + os.environ.get("FEATURELINE_REDIS_PORT", "6379"))
    ap.add_argument("--db", type=int, default=7)
    ap.add_argument("--max-body", type=int, default=0, help="the project's serve.max_body (default: featureline's)")
    ap.add_argument("--pin", action="store_true", help="server on CPU 0, hostile client on CPU 1, in every case (a remote attacker's CPU is not the server's)")
    ap.add_argument("--hostile", choices=CASES[1:], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.hostile:
        hostile_main(a)
        return

    import redis

    client = redis.Redis.from_url(f"{a.redis_url}/{a.db}")
    work = Path(tempfile.mkdtemp(prefix="fl_hostile_"))
    proj = work / "project"
    proj.mkdir()
    cases = [c for c in a.cases.split(",") if c]
    rng = random.Random(3)
    bodies = [
        json.dumps(
            {"service": "fraud_detection", "entities": [{"user_id": rng.randint(1, a.users), "merchant_id": rng.randint(1, a.merchants)}]}
        ).encode()
        for _ in range(2000)
    ]
    results: list[tuple[Served, str, dict]] = []
    try:
        setup_project(proj, a)
        servers = [Served(src, proj, work) for src in a.serve_src or [None]]
        try:
            for srv in servers:
                srv.wait_ready()
                srv.header_timeout = _header_timeout(srv, proj)
                log(f"serving {srv.label} ({srv.where}) {srv.commit} on :{srv.port}; head timeout {srv.header_timeout}")
                asyncio.run(good_clients(srv.port, bodies, a.rate, 2.0, a.clients))  # warm-up
            for rnd in range(a.rounds):
                for case in cases:
                    k = (rnd + cases.index(case)) % len(servers)
                    for srv in servers[k:] + servers[:k]:  # the servers take turns going first
                        log(f"round {rnd + 1}: {srv.label}: {case} ...")
                        res = run_case(srv, case, a, bodies, client)
                        res["header_timeout"] = srv.header_timeout
                        res["round"] = rnd + 1
                        log(
                            f"{srv.label} {case}: p50 {fmt(res['p50_us'])} p99 {fmt(res['p99_us'])} errors {res['errors']} {res.get('hostile', '')}"
                        )
                        results.append((srv, case, res))
        finally:
            for srv in servers:
                srv.stop()
    finally:
        n = drop(client)
        log(f"deleted {n:,} keys")
        shutil.rmtree(work, ignore_errors=True)
    report(a, results)


def _header_timeout(srv: Served, proj: Path) -> float | None:
    """The served code's head deadline (None: it has none)."""
    env = dict(os.environ)
    if srv.src is not None:
        env["PYTHONPATH"] = str(Path(srv.src).resolve() / "src")
    code = "import sys; from featureline.compiler import compile_project as c; s = getattr(c(sys.argv[1]).project, 'serve', None); print(getattr(s, 'header_timeout_s', None))"
    out = subprocess.run([sys.executable, "-c", code, str(proj)], env=env, capture_output=True, text=True).stdout.strip()
    return None if out in ("", "None") else float(out)


def report(a, results) -> None:
    print(
        f"\n== featureline serve (1 worker) with a hostile client: {a.clients} good keep-alive clients, {a.rate:.0f} req/s of 1-entity reads in all, "
        f"{a.seconds:.0f}s per case; latency from each request's due time =="
    )
    print(f"machine: {os.cpu_count()} cpus, load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    head = f"{'server':<16} {'rnd':>3} {'case':<11} {'p50':>8} {'p99':>8} {'max':>8} {'p99/clean':>9} {'svc p50/p99':>16} {'errors':<8} {'health p50/max':>16} {'fail':>4} {'cpu%':>5} {'redis%':>6} {'atk%':>5} {'rss MiB':>7} {'log':>4}  hostile client"
    print(head)
    clean = {(srv.label, r["round"]): r["p99_us"] for srv, case, r in results if case == "clean"}
    for srv, case, r in sorted(results, key=lambda x: (x[2]["round"], CASES.index(x[1]), x[0].label)):
        ratio = r["p99_us"] / clean.get((srv.label, r["round"]), math.nan)
        errs = ",".join(f"{k}:{v}" for k, v in r["errors"].items()) or "0"
        hfail = sum(r["health_errors"].values())
        print(
            f"{srv.label[:16]:<16} {r['round']:>3} {case:<11} {fmt(r['p50_us']):>8} {fmt(r['p99_us']):>8} {fmt(r['max_us']):>8} {ratio:>8.2f}x {fmt(r['svc_p50_us']) + '/' + fmt(r['svc_p99_us']):>16} {errs[:8]:<8} "
            f"{fmt(r['health_p50_us']) + '/' + fmt(r['health_max_us']):>16} {hfail:>4} {r['server_cpu_pct']:>5.0f} {r['redis_cpu_pct']:>6.0f} {r.get('hostile_cpu_pct', 0.0):>5.0f} {r['server_rss_max_mib']:>7.0f} {r['server_log_lines']:>4}  "
            f"{hostile_summary(case, r.get('hostile', {}), r['header_timeout'])}"
        )
    for srv in dict.fromkeys(s for s, _, _ in results):
        print(f"  {srv.label}: {srv.where} {srv.commit}; head timeout {srv.header_timeout}")


if __name__ == "__main__":
    main()
