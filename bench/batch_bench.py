"""Batch point-in-time joins: featureline's DuckDB engine against a hand-written DuckDB ASOF JOIN and Feast.

    .venv/bin/python bench/batch_bench.py [--no-feast] [--repeat 3] [--keep] [--workdir DIR]

Data: the generator's history (2M transactions, 20k users, 300 merchants, 300 days), a spine of
random users (about 5% ids that never pay plus the generator's idle users) at uniform random
times in the data's range, fixed seeds. The bench writes its own featureline project in a temp dir
(contract = copy of contracts/transactions.yaml, source path = the generated parquet).

Cases, each run in a fresh subprocess (own timings, own peak RSS):
  latest    5 latest-value features (merchant_id, amount, currency, status, channel; ttl 30d),
            200k spine rows. ours = import + compile + source load/validation + historical().
            baselines: a hand-written DuckDB ASOF LEFT JOIN reading the same parquet (same
            output rows), and Feast's get_historical_features(...).to_df() with the file (dask)
            and the DuckDB offline stores, run from bench/feast_side.py in .venv-bench.
  window    count/sum/mean/max of amount over 1h, 24h, 7d (12 features) at 50k, 200k, 1M
            spine rows: seconds, rows/s, peak RSS.
Afterwards the outputs are compared row by row (ours vs the ASOF baseline vs Feast) and the
windowed values of a sample of rows are checked against a plain numpy evaluation of
docs/semantics.md.

Feast lives in its own venv (it pins pydantic/pyarrow/duckdb versions of its own):
    python3 -m venv .venv-bench && .venv-bench/bin/pip install 'feast[duckdb]==0.67.*' pyarrow pandas
or `--setup-feast` to have this script do it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FEAST_PY = ROOT / ".venv-bench" / "bin" / "python"
FEAST_SIDE = ROOT / "bench" / "feast_side.py"
FEAST_PIP = ["feast[duckdb]==0.67.*", "pyarrow", "pandas"]
LATEST = ("merchant_id", "amount", "currency", "status", "channel")
WINDOWS = (("1h", 3600, 300), ("24h", 86400, 3600), ("7d", 7 * 86400, 3600))  # name, seconds, default hop (s)
WINDOW_FUNCS = ("count", "sum", "mean", "max")
GiB = 1 << 30

FEATURES_YAML = """\
entities:
  - name: user
    join_keys: [user_id]

sources:
  - name: transactions
    contract: transactions
    batch:
      path: {path}

feature_views:
  - name: user_latest
    entity: user
    source: transactions
    ttl: 30d
    features: [merchant_id, amount, currency, status, channel]

  - name: user_amount
    entity: user
    source: transactions
    aggregations:
      - column: amount              # -> amount_count_1h, amount_sum_1h, ... amount_max_7d
        functions: [count, sum, mean, max]
        windows: [1h, 24h, 7d]

feature_services:
  - name: latest
    features: [user_latest:*]
  - name: windowed
    features: [user_amount:*]
"""


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- workers: one case per fresh process; print one JSON line -------------------------------------


def worker_ours(a) -> dict:
    import pyarrow.parquet as pq

    spine = pq.read_table(a.spine)
    t0 = time.perf_counter()
    from featureline import FeatureStore

    ti = time.perf_counter()
    fs = FeatureStore(a.project, memory_limit=a.memory_limit, cache=not a.no_cache)
    engine = fs.batch  # connects DuckDB (imports it)
    t1 = time.perf_counter()
    engine.source("transactions")
    t2 = time.perf_counter()
    out = fs.get_historical_features(spine, a.service, at_column="timestamp")
    t3 = time.perf_counter()
    rep = fs.source_reports()["transactions"]
    res = {
        "import_s": ti - t0,
        "compile_s": t1 - ti,
        "load_s": t2 - t1,
        "historical_s": t3 - t2,
        "total_s": t3 - t0,
        "rows": out.num_rows,
        "spine_rows": spine.num_rows,
        "columns": out.column_names,
        "non_null": {c: out.num_rows - out.column(c).null_count for c in out.column_names},
        "source": {"rows": rep.rows, "valid": rep.valid, "by_rule": {f"{f}/{r}": n for (f, r), n in rep.by_rule.items()}},
        "order_kept": out.column("spine_row").equals(spine.column("spine_row")),
        "max_rss_mib": max_rss_mib(),
    }
    if a.out:
        pq.write_table(out, a.out)
    return res


def baseline_sql(data_glob: str) -> str:
    """The hand-written point-in-time join: latest event strictly before t, null if older than 30 days."""
    vals = ", ".join(f"CASE WHEN e.event_time >= s.timestamp - INTERVAL 30 DAY THEN e.{c} END AS {c}" for c in LATEST)
    return f"""
        SELECT s.user_id, s.timestamp, s.spine_row, {vals}
        FROM spine s
        ASOF LEFT JOIN (SELECT user_id, event_time, {", ".join(LATEST)} FROM read_parquet('{data_glob}')) e
          ON s.user_id = e.user_id AND s.timestamp > e.event_time
        ORDER BY s.spine_row
    """


def worker_asof(a) -> dict:
    import pyarrow.parquet as pq

    spine = pq.read_table(a.spine)
    t0 = time.perf_counter()
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if a.memory_limit:
        con.execute(f"SET memory_limit = '{a.memory_limit}'")
    con.register("spine", spine)
    out = con.sql(baseline_sql(a.data_glob)).to_arrow_table()
    t1 = time.perf_counter()
    res = {
        "total_s": t1 - t0,
        "rows": out.num_rows,
        "spine_rows": spine.num_rows,
        "non_null": {c: out.num_rows - out.column(c).null_count for c in out.column_names},
        "max_rss_mib": max_rss_mib(),
    }
    if a.out:
        pq.write_table(out, a.out)
    return res


def worker_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=("ours", "asof"), required=True)
    ap.add_argument("--no-cache", action="store_true", help="check the source again (no .featureline/cache.duckdb)")
    ap.add_argument("--spine", required=True)
    ap.add_argument("--project")
    ap.add_argument("--service")
    ap.add_argument("--data-glob")
    ap.add_argument("--memory-limit")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    res = worker_ours(a) if a.worker == "ours" else worker_asof(a)
    print(json.dumps(res, default=str), flush=True)


def run_json(cmd: list[str], label: str, timeout: float = 3600) -> dict:
    """Run a worker; its last stdout line is JSON. On failure: {'ok': False, 'error': ...}."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        log(f"{label}: FAILED (exit {p.returncode}): {err}")
        return {"ok": False, "error": err, "stderr_tail": p.stderr[-3000:], "wall_s": wall}
    res = json.loads(lines[-1])
    res.setdefault("ok", True)
    res["wall_s"] = wall
    res["load_before"] = load
    return res


# --- setup --------------------------------------------------------------------------------------


def make_spine(path: Path, n: int, users: int, start_us: int, end_us: int, seed: int) -> None:
    """n rows: user ids uniform over 1..1.05*users (ids above `users` never pay), times uniform in [start, end)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng([seed, n])
    uid = rng.integers(1, int(users * 1.05) + 1, size=n)
    t = rng.integers(start_us, end_us, size=n)
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array(uid, pa.int64()),
                "timestamp": pa.array(t, pa.timestamp("us", tz="UTC")),
                "spine_row": pa.array(np.arange(n), pa.int64()),
            }
        ),
        path,
    )


def write_project(proj: Path, data_dir: Path) -> None:
    (proj / "contracts").mkdir(parents=True, exist_ok=True)
    (proj / "features").mkdir(parents=True, exist_ok=True)
    (proj / "featureline.yaml").write_text("project: batch_bench\n")
    shutil.copy(ROOT / "contracts" / "transactions.yaml", proj / "contracts" / "transactions.yaml")
    (proj / "features" / "bench.yaml").write_text(FEATURES_YAML.format(path=str(data_dir / "*.parquet")))


def feast_env(py: Path) -> dict:
    code = (
        "import json, sys, importlib.metadata as m\n"
        "v = {'python': sys.version.split()[0]}\n"
        "for p in ('feast', 'duckdb', 'pyarrow', 'pandas', 'dask', 'ibis-framework', 'pydantic'):\n"
        "    try: v[p] = m.version(p)\n"
        "    except Exception: v[p] = None\n"
        "import feast\n"
        "print(json.dumps(v))\n"
    )
    p = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError((p.stderr.strip().splitlines() or ["import failed"])[-1])
    return json.loads(p.stdout.strip().splitlines()[-1])


def setup_feast(py: Path) -> None:
    venv = py.parents[1]
    log(f"creating {venv} and installing {' '.join(FEAST_PIP)}")
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", *FEAST_PIP], check=True)


# --- checks on the outputs ------------------------------------------------------------------------


def compare_latest(ours: Path, other: Path, data_glob: str, name: str) -> dict:
    """Rows of `other` (keyed by spine_row) whose values differ from ours, and for those: whether the
    user has several events at the matched event time (a tie: the ASOF baseline and Feast pick any of
    them; docs/semantics.md picks the last by arrival order) and whether ours is that last one."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    diff = " OR ".join(f"o.{c} IS DISTINCT FROM b.{c}" for c in LATEST)
    con.execute(
        f"CREATE TEMP TABLE d AS SELECT o.* FROM read_parquet('{ours}') o JOIN read_parquet('{other}') b USING (spine_row) WHERE {diff}"
    )
    n_common = con.execute(f"SELECT count(*) FROM read_parquet('{ours}') o JOIN read_parquet('{other}') b USING (spine_row)").fetchone()[0]
    n_diff = con.execute("SELECT count(*) FROM d").fetchone()[0]
    if not n_diff:
        return {"vs": name, "common_rows": n_common, "differ": 0, "ties": 0, "ours_last_arrival": 0}
    # events of the differing users, in arrival order (file order, then row order)
    con.execute(
        f"CREATE TEMP TABLE ev AS SELECT user_id, event_time, {', '.join(LATEST)}, "
        f"row_number() OVER (ORDER BY filename, file_row_number) AS arr "
        f"FROM read_parquet('{data_glob}', filename=true, file_row_number=true) WHERE user_id IN (SELECT user_id FROM d)"
    )
    same = " AND ".join(f"d.{c} IS NOT DISTINCT FROM l.{c}" for c in LATEST)
    r = con.execute(
        f"""
        WITH m AS (SELECT d.spine_row, d.user_id, max(e.event_time) AS et FROM d JOIN ev e ON e.user_id = d.user_id AND e.event_time < d.timestamp GROUP BY ALL),
        l AS (SELECT m.spine_row, count(*) AS n, {", ".join(f"arg_max(e.{c}, e.arr) AS {c}" for c in LATEST)}
              FROM m JOIN ev e ON e.user_id = m.user_id AND e.event_time = m.et GROUP BY m.spine_row)
        SELECT count(*) FILTER (WHERE l.n > 1), count(*) FILTER (WHERE l.n > 1 AND {same}) FROM d JOIN l USING (spine_row)
        """
    ).fetchone()
    return {"vs": name, "common_rows": n_common, "differ": n_diff, "ties": r[0], "ours_last_arrival": r[1]}


def missing_rows(spine: Path, other: Path, ours: Path, data_glob: str) -> dict:
    """Spine rows absent from `other`'s output, by what ours has for them."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(
        f"""
        WITH ev AS (SELECT user_id, min(event_time) AS first_t FROM read_parquet('{data_glob}') GROUP BY user_id)
        SELECT CASE WHEN ev.user_id IS NULL THEN 'user has no events'
                    WHEN ev.first_t >= s.timestamp THEN 'no event before t'
                    WHEN o.merchant_id IS NULL THEN 'only events older than ttl (ours: nulls)'
                    ELSE 'has a value (ours)' END AS kind, count(*)
        FROM read_parquet('{spine}') s LEFT JOIN ev USING (user_id) JOIN read_parquet('{ours}') o USING (spine_row)
        WHERE s.spine_row NOT IN (SELECT spine_row FROM read_parquet('{other}'))
        GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    return dict(rows)


def check_windowed(out_path: Path, data_glob: str, sample: int, seed: int) -> dict:
    """Recompute the 12 windowed features of `sample` spine rows with numpy from docs/semantics.md:
    AGG over events with floor(t - W, H) <= event_time < t; empty window: count/sum 0, mean/max null."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ev = pq.read_table(data_glob.rsplit("/", 1)[0], columns=["user_id", "event_time", "amount"])
    u = ev.column("user_id").to_numpy()
    t = pc.cast(ev.column("event_time"), "int64").to_numpy()
    amt = ev.column("amount").to_numpy(zero_copy_only=False)
    order = np.lexsort((t, u))
    u, t, amt = u[order], t[order], amt[order]
    out = pq.read_table(out_path)
    rng = np.random.default_rng(seed)
    rows = rng.choice(out.num_rows, size=min(sample, out.num_rows), replace=False)
    su = out.column("user_id").to_numpy()
    st = pc.cast(out.column("timestamp"), "int64").to_numpy()
    cols = {c: out.column(c).to_pylist() for c in out.column_names if c.startswith("amount_")}
    bad = []
    checked = 0
    for r in rows.tolist():
        a, b = np.searchsorted(u, su[r], "left"), np.searchsorted(u, su[r], "right")
        tu, au = t[a:b], amt[a:b]
        hi = np.searchsorted(tu, st[r], "left")
        for wname, wsec, hsec in WINDOWS:
            w, h = wsec * 1_000_000, hsec * 1_000_000
            start = (st[r] - w) - (st[r] - w) % h  # numpy %: sign of the divisor, so exact floor
            lo = np.searchsorted(tu, start, "left")
            vals = au[lo:hi]
            want = {
                "count": len(vals),
                "sum": math.fsum(vals.tolist()),
                "mean": (math.fsum(vals.tolist()) / len(vals)) if len(vals) else None,
                "max": float(vals.max()) if len(vals) else None,
            }
            for fn in WINDOW_FUNCS:
                got = cols[f"amount_{fn}_{wname}"][r]
                exp = want[fn]
                checked += 1
                ok = (got is None and exp is None) or (
                    got is not None and exp is not None and math.isclose(float(got), float(exp), rel_tol=1e-9, abs_tol=1e-9)
                )
                if not ok:
                    bad.append({"spine_row": r, "feature": f"amount_{fn}_{wname}", "ours": got, "expected": exp})
    return {"rows": len(rows), "values": checked, "mismatches": len(bad), "first": bad[:5]}


# --- main -----------------------------------------------------------------------------------------


def fmt_s(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main() -> None:
    if "--worker" in sys.argv:
        worker_main(sys.argv[1:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--merchants", type=int, default=300)
    ap.add_argument("--days", type=int, default=300)
    ap.add_argument("--spine", type=int, default=200_000, help="spine rows of the latest-value case")
    ap.add_argument("--window-spines", default="50000,200000,1000000", help="spine sizes of the windowed case")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of each latest-value case (ours, ASOF), interleaved; the median is reported"
    )
    ap.add_argument("--window-repeat", type=int, default=3, help="runs of each windowed case; the median is reported")
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for ours and the ASOF baseline (default: DuckDB's)")
    ap.add_argument("--no-feast", action="store_true", help="skip Feast")
    ap.add_argument("--feast-python", default=str(FEAST_PY))
    ap.add_argument("--setup-feast", action="store_true", help="create .venv-bench with Feast if missing")
    ap.add_argument("--feast-stores", default="file,duckdb")
    ap.add_argument("--check-sample", type=int, default=2000, help="windowed rows checked against numpy")
    ap.add_argument("--workdir", default=None, help="default: a temp dir, removed at the end unless --keep")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()

    import duckdb
    import pyarrow

    import featureline
    from featureline.generator import DEFAULT_END, write_history
    from featureline.timeutil import to_us

    cmd = " ".join(
        shlex.quote(x)
        for x in [os.path.relpath(sys.executable, Path.cwd()) if sys.executable.startswith(str(Path.cwd())) else sys.executable, *sys.argv]
    )
    print(f"command: {cmd}")
    print(f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    try:
        import psutil

        psv = psutil.__version__
        avail = f", {psutil.virtual_memory().available / GiB:.1f} GiB available, {psutil.cpu_count(logical=False)} physical cores"
    except ImportError:
        psv, avail = None, ""
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, {mem:.1f} GiB RAM{avail}, {platform.platform()}")
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine skews every number below; the per-case figures include this bench's own previous case)"
    )
    print(
        f"ours (main venv): python {platform.python_version()}, featureline {getattr(featureline, '__version__', '?')}, "
        f"duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}, psutil {psv}"
    )
    feast_py = Path(a.feast_python)
    feast_reason = None
    if a.no_feast:
        feast_reason = "skipped (--no-feast)"
    else:
        if not feast_py.exists() and a.setup_feast:
            try:
                setup_feast(feast_py)
            except subprocess.CalledProcessError as e:
                feast_reason = f"install failed: {e}"
        if feast_reason is None and not feast_py.exists():
            feast_reason = f"no {feast_py} (create it: python3 -m venv .venv-bench && .venv-bench/bin/pip install {' '.join(shlex.quote(x) for x in FEAST_PIP)}; or pass --setup-feast)"
        if feast_reason is None:
            try:
                fv = feast_env(feast_py)
                print("feast (.venv-bench): " + ", ".join(f"{k} {v}" for k, v in fv.items()))
            except Exception as e:  # noqa: BLE001
                feast_reason = f"feast does not import in {feast_py}: {e}"
    if feast_reason:
        print(f"feast: {feast_reason}")
    print(flush=True)

    t_start = time.perf_counter()
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="featureline-batch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        info = write_history(work, events=a.events, users=a.users, merchants=a.merchants, days=a.days, end=DEFAULT_END, seed=a.seed)
        log(f"generated {a.events:,} events, {a.users:,} users, {a.days} days in {time.perf_counter() - t0:.1f}s ({work})")
        data_dir = work / "data" / "history" / "transactions"
        data_glob = str(data_dir / "*.parquet")
        proj = work / "project"
        write_project(proj, data_dir)
        start_us, end_us = to_us(info["start"]), to_us(info["end"])
        spine_latest = work / f"spine_{a.spine}.parquet"
        make_spine(spine_latest, a.spine, a.users, start_us, end_us, a.seed)
        wsizes = [int(x) for x in a.window_spines.split(",") if x]
        for n in wsizes:
            if not (work / f"spine_{n}.parquet").exists():
                make_spine(work / f"spine_{n}.parquet", n, a.users, start_us, end_us, a.seed)

        me = [sys.executable, str(Path(__file__).resolve()), "--worker"]
        mem_arg = ["--memory-limit", a.memory_limit] if a.memory_limit else []
        ours_out, asof_out = work / "ours_latest.parquet", work / "asof_latest.parquet"

        # latest-value, cold: ours checks all source rows against the contract (no cache)
        cold_runs = []
        for i in range(a.repeat):
            log(f"latest, ours cold (source checked, no cache), run {i + 1}/{a.repeat}")
            cold_runs.append(run_json(me + ["ours", "--no-cache", "--spine", str(spine_latest), "--project", str(proj), "--service", "latest", *mem_arg], "ours cold"))
        # prime the checked-source cache once (not timed); the runs below reuse it
        run_json(me + ["ours", "--spine", str(spine_latest), "--project", str(proj), "--service", "latest", *mem_arg], "ours prime")
        a.cold_runs = cold_runs
        # latest-value: ours (warm: checked source cached) and the ASOF baseline, interleaved
        ours_runs, asof_runs = [], []
        for i in range(a.repeat):
            log(f"latest, ours, run {i + 1}/{a.repeat}")
            ours_runs.append(
                run_json(
                    me
                    + [
                        "ours",
                        "--spine",
                        str(spine_latest),
                        "--project",
                        str(proj),
                        "--service",
                        "latest",
                        "--out",
                        str(ours_out),
                        *mem_arg,
                    ],
                    "ours latest",
                )
            )
            log(f"latest, DuckDB ASOF baseline, run {i + 1}/{a.repeat}")
            asof_runs.append(
                run_json(me + ["asof", "--spine", str(spine_latest), "--data-glob", data_glob, "--out", str(asof_out), *mem_arg], "asof")
            )

        # Feast, in its own venv
        feast_runs: dict[str, dict] = {}
        if feast_reason is None:
            for store in [s for s in a.feast_stores.split(",") if s]:
                for unit in ("ns", "us") if store == "duckdb" else ("ns",):
                    label = f"{store}/{unit}"
                    log(f"latest, Feast {store} offline store (entity timestamps datetime64[{unit}])")
                    res = run_json(
                        [str(feast_py), str(FEAST_SIDE), "--data", str(data_dir), "--spine", str(spine_latest), "--store", store,
                         "--ts-unit", unit, "--workdir", str(work / f"feast_{store}_{unit}"), "--out", str(work / f"feast_{store}_{unit}.parquet")],
                        f"feast {label}",
                    )  # fmt: skip
                    feast_runs[label] = res
                    if not res.get("ok"):
                        log(f"feast {label}: {res.get('error')}")
                    if store == "duckdb" and res.get("ok"):
                        break  # ns ran: no need for the us variant

        # windowed
        win_runs: dict[int, list[dict]] = {}
        for n in wsizes:
            win_runs[n] = []
            for i in range(a.window_repeat):
                log(f"windowed, ours, {n:,} spine rows, run {i + 1}/{a.window_repeat}")
                out = ["--out", str(work / f"ours_window_{n}.parquet")] if n == min(wsizes) and i == 0 else []
                win_runs[n].append(
                    run_json(
                        me
                        + [
                            "ours",
                            "--spine",
                            str(work / f"spine_{n}.parquet"),
                            "--project",
                            str(proj),
                            "--service",
                            "windowed",
                            *out,
                            *mem_arg,
                        ],
                        f"ours window {n}",
                    )
                )

        # correctness cross-checks
        log("comparing outputs")
        checks = []
        if ours_out.exists() and asof_out.exists():
            checks.append(compare_latest(ours_out, asof_out, data_glob, "DuckDB ASOF baseline"))
        for label, res in feast_runs.items():
            p = work / f"feast_{label.replace('/', '_')}.parquet"
            if res.get("ok") and p.exists():
                checks.append(compare_latest(ours_out, p, data_glob, f"Feast {label}"))
                if res["rows"] != res["spine_rows"]:
                    checks[-1]["missing"] = missing_rows(spine_latest, p, ours_out, data_glob)
        wcheck = None
        wout = work / f"ours_window_{min(wsizes)}.parquet" if wsizes else None
        if wout is not None and wout.exists():
            wcheck = check_windowed(wout, data_glob, a.check_sample, a.seed)

        print_report(a, ours_runs, asof_runs, feast_runs, feast_reason, win_runs, checks, wcheck)
        print(
            f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; bench wall time {time.perf_counter() - t_start:.0f}s"
        )
    finally:
        if a.keep or a.workdir:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def print_report(a, ours_runs, asof_runs, feast_runs, feast_reason, win_runs, checks, wcheck) -> None:
    ok_ours = [r for r in ours_runs if r.get("ok")]
    ok_asof = [r for r in asof_runs if r.get("ok")]
    o_total = median([r["total_s"] for r in ok_ours])
    o_rows = ok_ours[0]["rows"] if ok_ours else None
    o_rss = max((r["max_rss_mib"] for r in ok_ours), default=None)
    rows_out = []  # case, ours, baseline, ratio, rows ours/baseline, RSS ours/baseline, note

    def rss(x):
        return "-" if x is None else f"{x:,.0f}"

    b_total = median([r["total_s"] for r in ok_asof])
    rows_out.append(
        (
            f"latest 5 cols, {a.spine // 1000}k spine: vs DuckDB ASOF JOIN",
            fmt_s(o_total),
            fmt_s(b_total),
            f"{o_total / b_total:.2f}" if o_total and b_total else "-",
            f"{o_rows:,} / {ok_asof[0]['rows']:,}" if ok_ours and ok_asof else "-",
            f"{rss(o_rss)} / {rss(max((r['max_rss_mib'] for r in ok_asof), default=None))}",
            f"median of {a.repeat}; best {min(r['total_s'] for r in ok_ours):.2f} / {min(r['total_s'] for r in ok_asof):.2f}; target ratio <= 1.5"
            if ok_ours and ok_asof
            else "failed",
        )
    )
    ok_cold = [r for r in getattr(a, "cold_runs", []) if r.get("ok")]
    if ok_cold and ok_asof:
        c_total = median([r["total_s"] for r in ok_cold])
        rows_out.insert(
            0,
            (
                f"latest 5 cols, {a.spine // 1000}k spine, cold: vs DuckDB ASOF",
                fmt_s(c_total),
                fmt_s(b_total),
                f"{c_total / b_total:.2f}",
                f"{ok_cold[0]['rows']:,} / {ok_asof[0]['rows']:,}",
                f"{rss(max(r['max_rss_mib'] for r in ok_cold))} / -",
                f"cold = reads and checks all {ok_cold[0]['source']['rows']:,} source rows against the contract "
                f"({median([r['load_s'] for r in ok_cold]):.2f}s of it); the rows below reuse the checked source",
            ),
        )
    for label, res in feast_runs.items():
        if res.get("ok"):
            f = res["historical_s"]
            rows_out.append(
                (
                    f"latest 5 cols, {a.spine // 1000}k spine: vs Feast {label}",
                    fmt_s(o_total),
                    fmt_s(f),
                    f"{o_total / f:.3f} ({f / o_total:.1f}x faster)" if o_total else "-",
                    f"{o_rows:,} / {res['rows']:,}" if o_rows is not None else f"- / {res['rows']:,}",
                    f"{rss(o_rss)} / {rss(res.get('max_rss_mib'))}",
                    f"feast apply {res['apply_s']:.2f}s, import {res['import_s']:.1f}s (not timed)"
                    + ("; target >= 5x faster" if label.startswith("file") else ""),
                )
            )
        else:
            rows_out.append((f"latest 5 cols: vs Feast {label}", fmt_s(o_total), "FAILED", "-", "-", "-", res.get("error", "")[:160]))
    if feast_reason:
        rows_out.append(("latest 5 cols: vs Feast", fmt_s(o_total), "-", "-", "-", "-", feast_reason[:160]))
    for n, runs in win_runs.items():
        ok = [r for r in runs if r.get("ok")]
        if not ok:
            rows_out.append((f"windowed 12 feats, {n:,} spine", "FAILED", "-", "-", "-", "-", runs[0].get("error", "")[:160]))
            continue
        t = median([r["total_s"] for r in ok])
        h = median([r["historical_s"] for r in ok])
        rows_out.append(
            (
                f"windowed 12 feats, {n:,} spine",
                fmt_s(t),
                "-",
                "-",
                f"{ok[0]['rows']:,}",
                rss(max(r["max_rss_mib"] for r in ok)),
                f"{n / t:,.0f} rows/s total, {n / h:,.0f} rows/s historical() alone",
            )
        )

    head = ("case", "ours s", "baseline s", "ratio ours/base", "rows ours / base", "peak RSS MiB ours / base", "note")
    widths = [max(len(str(r[i])) for r in [head, *rows_out]) for i in range(len(head))]
    print("\n== results (seconds; ours = import + compile + source load & contract check + historical(); same run) ==")
    print("  ".join(str(h).ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows_out:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))

    print("\n== ours, split (median) ==")
    for name, runs in [("latest", ok_ours)] + [(f"windowed {n:,}", [r for r in rs if r.get("ok")]) for n, rs in win_runs.items()]:
        if runs:
            print(
                f"  {name:18s} import {median([r['import_s'] for r in runs]):.2f}s  compile+connect {median([r['compile_s'] for r in runs]):.2f}s  source load+check {median([r['load_s'] for r in runs]):.2f}s  "
                f"historical {median([r['historical_s'] for r in runs]):.2f}s  total {median([r['total_s'] for r in runs]):.2f}s  "
                f"runs: {', '.join(format(r['total_s'], '.2f') for r in runs)} (1-min load avg before each: {', '.join(format(r['load_before'], '.1f') for r in runs)})"
            )
    if ok_asof:
        print(
            f"  DuckDB ASOF runs: {', '.join(format(r['total_s'], '.2f') for r in ok_asof)} (load avg before each: {', '.join(format(r['load_before'], '.1f') for r in ok_asof)})"
        )
    if ok_ours:
        s = ok_ours[0]["source"]
        print(
            f"  source check: {s['rows']:,} rows, {s['valid']:,} valid {s['by_rule'] or ''}; spine order kept: {all(r['order_kept'] for r in ok_ours)}"
        )
        print(f"  non-null latest values, ours: {ok_ours[0]['non_null'].get('merchant_id'):,} of {o_rows:,}; "
              f"ASOF: {ok_asof[0]['non_null'].get('merchant_id'):,}" if ok_asof else "")  # fmt: skip
    for label, res in feast_runs.items():
        if res.get("ok"):
            print(f"  Feast {label}: {res['rows']:,} rows for {res['spine_rows']:,} spine rows, non-null merchant_id {res['non_null'].get('merchant_id'):,}; "
                  f"entity ts {res['entity_ts_dtype']}; get_historical_features+to_df {res['historical_s']:.2f}s, apply {res['apply_s']:.2f}s; "
                  f"load avg before {res['load_before']:.1f}")  # fmt: skip
        else:
            print(f"  Feast {label} error: {res.get('error')}")

    print("\n== cross-checks ==")
    for c in checks:
        print(
            f"  ours vs {c['vs']}: {c['common_rows']:,} common rows, {c['differ']:,} differ; of those {c['ties']:,} are ties "
            f"(several events of the user at the matched event time), and ours is the last of them by arrival in {c['ours_last_arrival']:,}"
        )
        if c.get("missing"):
            print(f"    spine rows missing from {c['vs']}'s output: " + ", ".join(f"{k}: {v:,}" for k, v in c["missing"].items()))
    if wcheck:
        print(
            f"  windowed vs numpy (docs/semantics.md): {wcheck['rows']:,} rows, {wcheck['values']:,} values, {wcheck['mismatches']} mismatches {wcheck['first'] or ''}"
        )

    print("\n== targets ==")
    verdicts = []
    if o_total and b_total:
        verdicts.append(("latest within 1.5x of DuckDB ASOF", o_total / b_total <= 1.5, f"{o_total / b_total:.2f}x"))
    fr = feast_runs.get("file/ns")
    if o_total and fr and fr.get("ok"):
        verdicts.append(
            ("latest >= 5x faster than Feast file store", fr["historical_s"] / o_total >= 5, f"{fr['historical_s'] / o_total:.1f}x")
        )
    if ok_ours:
        verdicts.append(
            (
                "latest keeps every spine row, in order",
                all(r["rows"] == r["spine_rows"] and r["order_kept"] for r in ok_ours),
                f"{o_rows:,}",
            )
        )
    all_win = [r for rs in win_runs.values() for r in rs]
    if all_win:
        peak = max((r.get("max_rss_mib", 0) for r in all_win if r.get("ok")), default=0)
        verdicts.append(("windowed peak RSS < 4 GiB", all(r.get("ok") for r in all_win) and peak < 4096, f"{peak:,.0f} MiB"))
        ns = sorted(win_runs)
        ok_w = {n: [r for r in win_runs[n] if r.get("ok")] for n in ns}
        if len(ns) >= 2 and ok_w[ns[0]] and ok_w[ns[-1]]:
            r0 = ns[0] / median([r["historical_s"] for r in ok_w[ns[0]]])
            r1 = ns[-1] / median([r["historical_s"] for r in ok_w[ns[-1]]])
            verdicts.append(
                (
                    f"windowed scaling {ns[0]:,} -> {ns[-1]:,} (historical rows/s kept >= 50%)",
                    r1 >= 0.5 * r0,
                    f"{r1 / r0:.2f} of the small case's rows/s",
                )
            )
    for name, ok, val in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {val}")


if __name__ == "__main__":
    main()
